"""Stage B: compose the reply from Stage A's facts and the team's projects."""

from dataclasses import dataclass
from typing import Any

from composer.llm import LLMClient
from composer.output_schemas import response_format, stage_b_schema
from composer.projects import Project, projects_context
from composer.prompts import PromptTemplate
from composer.settings import ComposerSettings
from technoshare_common.schemas import Evidence, GateResult, StageAFacts, TokenUsage


@dataclass
class StageBOutput:
    content: str
    usage: TokenUsage
    model: str
    messages: list[dict[str, Any]]


def facts_text(facts: StageAFacts) -> str:
    lines = [f"What it is: {facts.what_it_is}", "Key facts:"]
    lines += [f"- {fact}" for fact in facts.key_facts]
    if facts.limitations:
        lines += ["Limitations:"] + [f"- {item}" for item in facts.limitations]
    return "\n".join(lines)


class StageB:
    persona = "stage_b"

    def __init__(self, settings: ComposerSettings, llm: LLMClient, projects: list[Project]) -> None:
        self.settings = settings
        self.llm = llm
        self.projects = projects
        self.themes = sorted({p.theme for p in projects})

    async def compose(
        self, prompt: PromptTemplate, evidence: Evidence, facts: StageAFacts, slack_text: str
    ) -> StageBOutput:
        messages: list[dict[str, Any]] = prompt.render(
            title=evidence.title,
            url=evidence.url,
            slack_text=slack_text or "(no comment)",
            facts=facts_text(facts),
            projects=projects_context(self.projects),
            tldr_sentences=str(self.settings.tldr_sentences),
            summary_min=str(self.settings.summary_min_sentences),
            summary_max=str(self.settings.summary_max_sentences),
        )
        return await self._call(prompt, messages, stage="stage_b")

    async def repair(self, prompt: PromptTemplate, previous: StageBOutput, failures: list[GateResult]) -> StageBOutput:
        feedback = "\n".join(f"- {g.name}: {g.detail}" for g in failures)
        messages = [
            *previous.messages,
            {"role": "assistant", "content": previous.content[:6000]},
            {
                "role": "user",
                "content": "Your reply failed these quality checks:\n"
                f"{feedback}\nAnswer again with the same JSON schema, fixing every failed check.",
            },
        ]
        return await self._call(prompt, messages, stage="repair")

    async def _call(self, prompt: PromptTemplate, messages: list[dict[str, Any]], stage: str) -> StageBOutput:
        result = await self.llm.chat(
            persona=self.persona,
            stage=stage,
            model=self.settings.stage_b_model,
            messages=messages,
            parameters=prompt.parameters,
            response_format=response_format("stage_b_reply", stage_b_schema(self.settings, self.themes)),
        )
        return StageBOutput(result.content, result.usage, result.model, messages)
