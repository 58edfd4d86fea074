"""Live quality: every reply's gate verdicts and measures, for its trace (composer.tracking) and Prometheus.

The gates already judged the reply; this keeps their numbers (per-sentence support, the first theme's strength)
so live traffic is scored at no model cost, and an operator can compare this week's grounding with last week's.
"""

from prometheus_client import Counter, Histogram

from composer.projects import Project
from composer.quality.evidence import EvidenceIndex
from composer.quality.terms import reply_sentences
from composer.quality.themes import theme_strengths
from technoshare_common.schemas import ComposedReply, ComposeResult, GateResult, ReplyQuality

LIVE_REPLIES = Counter(
    "technoshare_live_replies_total",
    "Live jobs' replies, by channel, app version and whether their draft passed every gate (a reply the fallback "
    "answered, or that ended gate_failed, did not).",
    ["channel", "app_version", "passed"],
)
LIVE_GATES = Counter(
    "technoshare_live_gate_results_total",
    "Each gate's verdict on live jobs' replies (the refused draft's, where the fallback answered).",
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


def count_live(result: ComposeResult, channel: str) -> None:
    """A live job's reply in Prometheus, once: the quality SLO's and the dashboard's series. A reply passes when its
    first draft passed every gate: one the extractive fallback answered, or that ended gate_failed, counts as failing
    (with the gates that refused it), though what was posted passed."""
    quality = result.quality
    if quality is None:
        return
    version = result.app_version or "unknown"
    gates = quality.gates | {gate.name: False for gate in result.refused_gates}
    passed = all(gates.values())
    for value in ("true", "false"):  # both series exist from the first reply, so the first failure shows in rate()
        LIVE_REPLIES.labels(channel, version, value)
        for gate in gates:
            LIVE_GATES.labels(gate, version, value)
    LIVE_REPLIES.labels(channel, version, str(passed).lower()).inc()
    for gate, gate_passed in gates.items():
        LIVE_GATES.labels(gate, version, str(gate_passed).lower()).inc()
    if result.post is not None:  # a posted reply's grounding
        LIVE_GROUNDING.labels(channel, version).observe(quality.grounding_mean)
