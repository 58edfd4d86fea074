"""The HTTP contracts between services, shared by every client and server."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, Field, StringConstraints, TypeAdapter, ValidationError, model_validator


class Coverage(StrEnum):
    full = "full"
    partial = "partial"
    metadata_only = "metadata_only"


class Outcome(StrEnum):
    success = "success"
    gate_failed = "gate_failed"
    error = "error"
    # A reply posted without the language model (sentences quoted from the source, labelled as such).
    degraded = "degraded"
    # The link could not be read (dead, blocked, unsupported): a notice was delivered, or deliberately not.
    unreadable = "unreadable"


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    done = "done"


# --- retrieval ---------------------------------------------------------------------------------


class Source(BaseModel):
    url: str
    title: str = ""
    role: Literal["primary", "search"] = "primary"


class Snippet(BaseModel):
    text: str
    source_url: str
    heading: str = Field("", description="The section the text sits under, when the source has sections.")


class Evidence(BaseModel):
    url: str = Field(description="The link as shared in Slack.")
    final_url: str = Field(description="Where the content was actually read from.")
    adapter_name: str
    coverage: Coverage
    title: str = ""
    authors: list[str] = Field(default_factory=list)
    text: str = ""
    snippets: list[Snippet] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)
    truncated: bool = False


class EvidenceRequest(BaseModel):
    url: AnyHttpUrl


class SearchRequest(BaseModel):
    """Stage A's search tool: read one more link, or search arXiv for a query."""

    query: str | None = Field(None, min_length=2, max_length=300)
    url: AnyHttpUrl | None = None
    max_results: int = Field(3, ge=1, le=10)

    @model_validator(mode="after")
    def _one_of(self) -> "SearchRequest":
        if (self.query is None) == (self.url is None):
            raise ValueError("give exactly one of 'query' or 'url'")
        return self


class SearchResponse(BaseModel):
    sources: list[Source]
    snippets: list[Snippet]


# --- composer ----------------------------------------------------------------------------------


class StageAFacts(BaseModel):
    """What Stage A extracts from the evidence, the only facts Stage B may use."""

    what_it_is: str
    key_facts: list[str]
    limitations: list[str] = Field(default_factory=list)


class ProjectLink(BaseModel):
    theme: str
    relevance: str


# One line of a reply's notes: rendered as a single italic line, so no line breaks.
ReplyNote = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\n]+$")]


class ComposedReply(BaseModel):
    """Stage B's structured reply; code, not the model, turns it into Slack layout."""

    tldr: list[str]
    summary: list[str]
    projects: list[ProjectLink]
    notes: list[ReplyNote] = Field(
        default_factory=list,
        max_length=3,
        description="Short lines shown in italics under the reply, added by code (e.g. why it is quoted).",
    )


class GateResult(BaseModel):
    name: str
    passed: bool
    detail: str = ""


class TokenUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    estimated: bool = False
    # Calls to a model missing from the price table: their cost is unknown, not part of cost_usd.
    unpriced_calls: int = 0

    def __add__(self, other: "TokenUsage") -> "TokenUsage":
        return TokenUsage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
            estimated=self.estimated or other.estimated,
            unpriced_calls=self.unpriced_calls + other.unpriced_calls,
        )


class ComposeRequest(BaseModel):
    """A dry run of the pipeline (the evaluation suite's door): never posts."""

    url: AnyHttpUrl
    slack_text: str = ""
    evidence: Evidence | None = Field(
        None, description="A recorded evidence snapshot; skips retrieval so inputs stay pinned."
    )


MAX_LINK_CHARS = 2048  # ingest's job store keeps a link in String(2048)
_LINK = TypeAdapter(AnyHttpUrl)


def link_problem(url: str) -> str | None:
    """Why a shared link can never become a job (JobRunRequest would refuse it, or the store could not keep it);
    None for a link that can. ingest checks it before it stores a job, so no job fails the same way forever."""
    if len(url) > MAX_LINK_CHARS:
        return f"longer than {MAX_LINK_CHARS} characters"
    try:
        _LINK.validate_python(url)
    except ValidationError as exc:
        return exc.errors()[0]["msg"]
    return None


class JobRunRequest(BaseModel):
    """ingest hands a durable job to composer; the same job may arrive again after a failure."""

    job_id: str
    channel_id: str
    message_ts: str
    thread_ts: str
    url: Annotated[AnyHttpUrl, Field(max_length=MAX_LINK_CHARS)]
    slack_text: str = ""
    attempt: int = 1
    final_attempt: bool = Field(
        False,
        description="ingest will not retry this job: a link or an LLM that is down for now gets its short "
        "notice or quoted reply instead of silence.",
    )
    checkpoints: "JobCheckpoints | None" = Field(
        None, description="What earlier attempts finished; composer resumes after it and never pays for it again."
    )


class NoticeRunRequest(BaseModel):
    """ingest hands over a link it refused (link_problem): composer answers it with the unreadable notice, as
    UNREADABLE_LINK_REPLY says, so a malformed link is not left in silence."""

    job_id: str
    channel_id: str
    message_ts: str
    thread_ts: str
    url: str = Field(max_length=MAX_LINK_CHARS, description="The link as stored: cut to the store's length.")
    problem: str = Field(max_length=200, description="Why ingest refused it (link_problem).")
    attempt: int = 1


class ReplyQuality(BaseModel):
    """The gates' measures of one reply, as live traffic is scored on its trace and in Prometheus."""

    passed: bool = Field(description="The reply passed every gate.")
    gates: dict[str, bool] = Field(default_factory=dict, description="Each gate's verdict, by gate name.")
    grounding_mean: float = Field(description="Mean support of the TL;DR and summary sentences in the evidence.")
    grounding_min: float = Field(description="The least supported sentence's support.")
    unsupported_sentences: int = Field(description="Sentences under the grounded gate's GATE_MIN_SUPPORT.")
    theme_strength: float | None = Field(
        None, description="How strongly the evidence earns the first project line's theme; None with no project."
    )


class ComposeResult(BaseModel):
    job_id: str | None = None
    url: str
    outcome: Outcome
    reply: ComposedReply | None = None
    text: str | None = Field(None, description="The Slack mrkdwn text the gates judged.")
    gates: list[GateResult] = Field(default_factory=list)
    repaired: bool = False
    evidence: Evidence | None = None
    facts: StageAFacts | None = None
    tool_calls: int = 0
    timings: dict[str, float] = Field(default_factory=dict)
    usage: TokenUsage = Field(default_factory=TokenUsage)
    models: dict[str, str] = Field(default_factory=dict)
    prompt_versions: dict[str, str] = Field(default_factory=dict)
    error: str | None = None
    post: "ReplyResult | None" = None
    trace_id: str | None = Field(None, description="The job's MLflow trace, when tracing is on.")
    app_version: str | None = Field(None, description="The configuration that made the reply (composer.app_version).")
    app_version_id: str | None = Field(None, description="That app version's MLflow LoggedModel, once registered.")
    compose_mode: str | None = Field(
        None,
        description="How the reply was composed: abstractive, extractive, degraded (the LLM was unavailable) or "
        "extractive_fallback (the abstractive draft failed its gates after repair).",
    )
    refused_gates: list[GateResult] = Field(
        default_factory=list,
        description="The abstractive draft's failed gates, when the extractive fallback answered instead of it.",
    )
    notice: "Notice | None" = Field(None, description="What an unreadable link got instead of a reply.")
    quality: ReplyQuality | None = Field(None, description="The posted reply's measures (composer.quality.live).")

    @property
    def gate_failures(self) -> list[GateResult]:
        return [g for g in self.gates if not g.passed]


STAGE_APP_VERSION = Field(
    None,
    description="The app version (prompts, models, gate settings, code) that made this stage: an attempt on another "
    "version makes it again rather than use it.",
)


class StageACheckpoint(BaseModel):
    facts: StageAFacts
    usage: TokenUsage
    model: str
    tool_calls: int = 0
    app_version: str | None = STAGE_APP_VERSION


class StageBCheckpoint(BaseModel):
    """Stage B's draft before the gates; its messages let a repair continue the conversation."""

    content: str
    usage: TokenUsage
    model: str
    messages: list[dict[str, Any]]
    app_version: str | None = STAGE_APP_VERSION


class JobCheckpoints(BaseModel):
    """A job's finished stage outputs, kept by ingest across attempts (each field set once its stage ends).

    `composed` is the gated reply ready to post (its evidence is the `evidence` field): a posting failure
    is retried from there, without composing again.
    """

    evidence: Evidence | None = None
    stage_a: StageACheckpoint | None = None
    stage_b: StageBCheckpoint | None = None
    composed: ComposeResult | None = None
    attempt: int | None = Field(
        None,
        description="The attempt (JobRunRequest.attempt) saving these stages: ingest refuses (409) a save from an "
        "attempt that no longer holds the job. Not stored; unset is not checked.",
    )

    def stages(self) -> list[str]:
        return [name for name, value in self if value is not None and name != "attempt"]


class CheckpointSaved(BaseModel):
    job_id: str
    stages: list[str] = Field(description="The stages the job has checkpoints for now.")


# --- poster ------------------------------------------------------------------------------------


class PostStatus(StrEnum):
    posted = "posted"
    already_posted = "already_posted"
    reacted = "reacted"
    skipped = "skipped"
    dry_run = "dry_run"
    failed = "failed"


class UnreadableKind(StrEnum):
    """Why a link could not be read: retrieval's 422 `kind`, and composer's own `too_little_text`."""

    not_found = "not_found"
    http_status = "http_status"
    server_error = "server_error"
    rate_limited = "rate_limited"
    timeout = "timeout"
    unreachable = "unreachable"
    dns = "dns"
    blocked = "blocked"
    content_type = "content_type"
    too_large = "too_large"
    redirects = "redirects"
    parse = "parse"
    unsupported = "unsupported"
    too_little_text = "too_little_text"  # read, but with fewer than two sentences that could be quoted
    malformed = "malformed"  # ingest refused the link itself (link_problem): never fetched

    @property
    def transient(self) -> bool:
        """The site may answer later: the job is retried, and only its final attempt gets the notice."""
        return self in TRANSIENT_UNREADABLE


TRANSIENT_UNREADABLE = frozenset(
    {UnreadableKind.server_error, UnreadableKind.rate_limited, UnreadableKind.timeout, UnreadableKind.unreachable}
)

# The one wording of each kind: the thread's notice says "I could not summarise this link: <reason>.", and
# retrieval's message defaults to "<Reason>." None names an address, a host or an internal URL.
UNREADABLE_REASONS: dict[UnreadableKind, str] = {
    UnreadableKind.not_found: "the page does not exist (HTTP 404 or 410)",
    UnreadableKind.http_status: "the site refused to serve it",
    UnreadableKind.server_error: "the site kept failing",
    UnreadableKind.rate_limited: "the site kept turning the bot away (rate limited)",
    UnreadableKind.timeout: "the site did not answer in time",
    UnreadableKind.unreachable: "the site could not be reached",
    UnreadableKind.dns: "its host name does not exist",
    UnreadableKind.blocked: "it points to an address the bot may not read",
    UnreadableKind.content_type: "it is not a page of text",
    UnreadableKind.too_large: "the page is too large to read",
    UnreadableKind.redirects: "it redirects too many times",
    UnreadableKind.parse: "the site's answer could not be read",
    UnreadableKind.unsupported: "it is not a kind of link that can be read",
    UnreadableKind.too_little_text: "it has too little text to summarise",
    UnreadableKind.malformed: "the link is malformed",
}


class UnreadableLink(BaseModel):
    """retrieval's 422 body (under FastAPI's `detail`): the link cannot be read."""

    kind: UnreadableKind
    message: str = Field(description="What happened, in words a thread reply may carry: it names no address.")
    transient: bool = Field(description="The site may answer later (5xx, 429, a timeout, unreachable).")
    detail: str = Field("", description="For operators; it may name addresses and hosts.")


class NoticeDelivery(StrEnum):
    """How an unreadable link is answered: a thread reply, a reaction on the shared message, or not at all."""

    reply = "reply"
    reaction = "reaction"
    none = "none"


class Notice(BaseModel):
    """A short answer instead of a summary, when the link could not be read."""

    text: str = Field(min_length=1, max_length=300, description="The thread reply's text (delivery `reply`).")
    delivery: NoticeDelivery
    reaction: str = Field(
        "warning",
        pattern=r"^[a-z0-9_+'-]{1,100}$",
        description="Emoji name without colons, added to the shared message (delivery `reaction`).",
    )


class ReplyRequest(BaseModel):
    """Post one job's answer: a composed reply, or a notice about a link that could not be read."""

    job_id: str
    channel_id: str
    thread_ts: str
    source_url: str
    reply: ComposedReply | None = None
    notice: Notice | None = None
    message_ts: str | None = Field(None, description="The shared message: where a notice's reaction goes.")
    coverage: Coverage | None = None

    @model_validator(mode="after")
    def _one_answer(self) -> "ReplyRequest":
        if (self.reply is None) == (self.notice is None):
            raise ValueError("give exactly one of 'reply' or 'notice'")
        if self.notice is not None and self.notice.delivery == NoticeDelivery.reaction and not self.message_ts:
            raise ValueError("a notice delivered as a reaction needs 'message_ts', the shared message")
        return self


class ReplyResult(BaseModel):
    job_id: str
    status: PostStatus
    channel_id: str
    message_ts: str | None = Field(
        None, description="The bot's message in the thread; none for a reaction, whose target is the user's message."
    )
    payload: dict[str, Any] | None = None
    error: str | None = None
    retryable: bool = False


# --- ingest ------------------------------------------------------------------------------------


class JobView(BaseModel):
    id: str
    state: JobState
    outcome: Outcome | None = None
    channel_id: str
    message_ts: str
    thread_ts: str
    url: str
    event_id: str | None = None
    attempts: int
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    reply_text: str | None = None
    gate_failures: list[str] = Field(default_factory=list)
    error: str | None = None
    slack_message_ts: str | None = None
    checkpoints: JobCheckpoints = Field(
        default_factory=JobCheckpoints, description="Per-stage results kept for the job's next attempt."
    )


class JobList(BaseModel):
    jobs: list[JobView]


ComposeResult.model_rebuild()
JobRunRequest.model_rebuild()
