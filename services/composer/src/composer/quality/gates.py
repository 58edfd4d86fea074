"""Quality gates: the reply is judged as Slack will show it, and each check says what to fix.

The names are the evaluation suite's hard scorers, so offline and live quality are the same checks: the layout
gates (composer.quality.layout), then the content gates (composer.quality.content), which judge what the reply
says against the evidence.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import ValidationError

from composer.llm import parse_json_object
from composer.quality.content import CONTENT_GATES, ContentGateConfig, GateContext, check_content
from composer.quality.layout import LAYOUT_GATES, check_text
from composer.settings import ComposerSettings
from technoshare_common.schemas import ComposedReply, GateResult
from technoshare_common.slack_format import render_text

GATE_NAMES = ("schema_validity", *LAYOUT_GATES, *CONTENT_GATES)


@dataclass(frozen=True)
class GateConfig:
    tldr_sentences: int
    summary_min: int
    summary_max: int
    themes: tuple[str, ...]
    content: ContentGateConfig = field(default_factory=ContentGateConfig)

    @classmethod
    def from_settings(cls, settings: ComposerSettings, themes: Iterable[str]) -> "GateConfig":
        """The gates the pipeline runs, and the evaluation suite's hard scorers with them."""
        return cls(
            tldr_sentences=settings.tldr_sentences,
            summary_min=settings.summary_min_sentences,
            summary_max=settings.summary_max_sentences,
            themes=tuple(sorted(set(themes))),
            content=ContentGateConfig.from_settings(settings),
        )

    @property
    def gate_names(self) -> tuple[str, ...]:
        """The gates this configuration reports: the layout gates and the enabled content gates, in order."""
        return tuple(n for n in GATE_NAMES if n not in CONTENT_GATES or n in self.content.enabled)


@dataclass
class GateReport:
    reply: ComposedReply | None
    text: str | None
    results: list[GateResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[GateResult]:
        return [r for r in self.results if not r.passed]


def parse_reply(content: str, config: GateConfig) -> tuple[ComposedReply | None, str]:
    try:
        reply = ComposedReply.model_validate(parse_json_object(content))
    except (ValueError, ValidationError) as exc:
        return None, f"the answer is not valid JSON for the reply schema: {str(exc)[:400]}"
    empty = [name for name in ("tldr", "summary") if not getattr(reply, name)]
    if empty:
        return None, f"empty sections: {', '.join(empty)}"
    # Notes are code's to add (e.g. why a reply is quoted); a model's would be ungated text under the reply.
    reply = reply.model_copy(update={"notes": []})
    unknown = sorted({p.theme for p in reply.projects} - set(config.themes))
    if unknown:
        return None, f"unknown project themes {unknown}; use one of {list(config.themes)}"
    return reply, ""


def check_reply(reply: ComposedReply, text: str, config: GateConfig, context: GateContext) -> list[GateResult]:
    """Every gate after schema_validity, in GATE_NAMES order: the layout gates on the rendered text, then the
    enabled content gates on the reply (the evaluation suite's scorers call this on a recorded reply)."""
    return [*check_text(text, config), *check_content(reply, context, config.content)]


def run_gates(content: str, config: GateConfig, context: GateContext) -> GateReport:
    reply, problem = parse_reply(content, config)
    if reply is None:
        not_checked = [
            GateResult(name=n, passed=False, detail="not checked: no valid reply") for n in config.gate_names[1:]
        ]
        return GateReport(None, None, [GateResult(name="schema_validity", passed=False, detail=problem), *not_checked])
    text = render_text(reply)
    schema = GateResult(name="schema_validity", passed=True, detail="valid reply JSON with known themes")
    return GateReport(reply, text, [schema, *check_reply(reply, text, config, context)])
