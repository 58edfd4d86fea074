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
        self,
        prompt: PromptTemplate,
        evidence: Evidence,
        facts: StageAFacts,
        slack_text: str,
        themes: list[str],
        lengths: tuple[int, int],
    ) -> StageBOutput:
        """`themes`: the ones the evidence earns, strongest first; `lengths`: the TL;DR's and the summary's minimum
        sentences, lowered for a short source."""
        messages: list[dict[str, Any]] = prompt.render(
            title=evidence.title,
            url=evidence.url,
            slack_text=slack_text or "(no comment)",
            facts=facts_text(facts),
            projects=projects_context([p for p in self.projects if p.theme in themes])
            or "(none: the link does not relate to the team's projects; give an empty projects list)",
            tldr_sentences=str(lengths[0]),
            summary_min=str(lengths[1]),
            summary_max=str(max(lengths[1], self.settings.summary_max_sentences)),
        )
        return await self._call(prompt, messages, "stage_b", themes, lengths)

    async def repair(
        self,
        prompt: PromptTemplate,
        previous: StageBOutput,
        failures: list[GateResult],
        themes: list[str],
        lengths: tuple[int, int],
    ) -> StageBOutput:
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
        return await self._call(prompt, messages, "repair", themes, lengths)

    async def _call(
        self,
        prompt: PromptTemplate,
        messages: list[dict[str, Any]],
        stage: str,
        themes: list[str],
        lengths: tuple[int, int],
    ) -> StageBOutput:
        schema = stage_b_schema(self.settings, themes, lengths)
        result = await self.llm.chat(
            persona=self.persona,
            stage=stage,
            model=self.settings.stage_b_model,
            messages=messages,
            parameters=prompt.parameters,
            response_format=response_format("stage_b_reply", schema),
        )
        return StageBOutput(result.content, result.usage, result.model, messages)
