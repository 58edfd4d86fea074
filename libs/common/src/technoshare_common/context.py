"""Per-request context carried across service hops (job id, W3C trace context)."""

from contextvars import ContextVar

job_id_var: ContextVar[str | None] = ContextVar("job_id", default=None)
traceparent_var: ContextVar[str | None] = ContextVar("traceparent", default=None)
channel_id_var: ContextVar[str | None] = ContextVar("channel_id", default=None)

JOB_ID_HEADER = "X-Job-Id"
TRACEPARENT_HEADER = "traceparent"

# Who an LLM call is for, sent to llm-gateway with every call.
PERSONA_HEADER = "X-Technoshare-Persona"
STAGE_HEADER = "X-Technoshare-Stage"
CHANNEL_HEADER = "X-Technoshare-Channel"
