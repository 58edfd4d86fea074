"""Live quality: every reply's gate verdicts and measures, for its trace (composer.tracking) and Prometheus.

The gates already judged the reply; this keeps their numbers (per-sentence support, the first theme's strength)
so live traffic is scored at no model cost, and an operator can compare this week's grounding with last week's.
"""

from prometheus_client import Counter, Histogram

from composer.projects import Project
from composer.quality.evidence import EvidenceIndex
from composer.quality.terms import reply_sentences
from composer.quality.themes import theme_strengths
from technoshare_common.schemas import ComposedReply, GateResult, ReplyQuality

LIVE_REPLIES = Counter(
    "technoshare_live_replies_total",
    "Replies posted on live traffic, by channel, app version and whether they passed every gate.",
    ["channel", "app_version", "passed"],
)
LIVE_GATES = Counter(
    "technoshare_live_gate_results_total",
    "Each gate's verdict on the replies posted on live traffic.",
    ["gate", "app_version", "passed"],
)
LIVE_GROUNDING = Histogram(
    "technoshare_live_grounding",
    "Mean support of a posted reply's TL;DR and summary sentences in its evidence (0..1).",
    ["channel", "app_version"],
    buckets=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
)


def reply_quality(
    reply: ComposedReply, gates: list[GateResult], index: EvidenceIndex, projects: list[Project], min_support: float
) -> ReplyQuality:
    """The reply's measures, read off the evidence index the gates filled (its supports and strengths are memoised)."""
    sentences = reply_sentences(reply.tldr) + reply_sentences(reply.summary)
    supports = [index.support(sentence).score for sentence in sentences] or [0.0]
    strength = None
    if reply.projects:
        first = reply.projects[0].theme
        strength = max((s.score for s in theme_strengths(index, projects) if s.theme == first), default=0.0)
    return ReplyQuality(
        passed=all(gate.passed for gate in gates),
        gates={gate.name: gate.passed for gate in gates},
        grounding_mean=round(sum(supports) / len(supports), 4),
        grounding_min=round(min(supports), 4),
        unsupported_sentences=sum(score < min_support for score in supports),
        theme_strength=strength,
    )


def count_posted(quality: ReplyQuality, channel: str, app_version: str) -> None:
    """A posted reply's verdicts in Prometheus: the quality SLO's and the dashboard's live series."""
    version = app_version or "unknown"
    LIVE_REPLIES.labels(channel, version, str(quality.passed).lower()).inc()
    for gate, passed in quality.gates.items():
        LIVE_GATES.labels(gate, version, str(passed).lower()).inc()
    LIVE_GROUNDING.labels(channel, version).observe(quality.grounding_mean)
