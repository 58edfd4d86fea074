"""What never reaches MLflow: secrets and personal data in the texts that traces, runs and artifacts carry.

A Slack message may paste a token or an address, and it flows into prompts, spans and the job's artifacts. Every
MLflow writer passes its texts through `redact` (spans through `redact_span`, MLflow's span processor, before
export), and a Slack user is known there only by `user_pseudonym`.

The shapes are a fixed table rather than a secret scanner (detect-secrets scans lines and reports findings; here
each text is rewritten in place, on every span): each pattern is a token format its issuer documents, plus email
addresses. A test plants each one in a Slack message and reads MLflow's database and artifacts back.
"""

import hashlib
import hmac
import re
from typing import Any

# (what, pattern): the replacement names the kind, so a trace still shows that something was there.
SECRET_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("private_key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)")),
    ("slack_token", re.compile(r"\bxox[abeoprs]-[0-9A-Za-z-]{8,}")),
    ("slack_app_token", re.compile(r"\bxapp-[0-9A-Za-z-]{8,}")),
    ("slack_webhook", re.compile(r"hooks\.slack\.com/(?:services|workflows|triggers)/[0-9A-Za-z/_-]+")),
    ("openai_key", re.compile(r"\bsk-(?:proj-|svcacct-|admin-|ant-)?[0-9A-Za-z_-]{16,}")),
    ("aws_access_key", re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b")),
    ("github_token", re.compile(r"\b(?:gh[opsur]_[0-9A-Za-z]{30,}|github_pat_[0-9A-Za-z_]{22,})")),
    ("huggingface_token", re.compile(r"\bhf_[0-9A-Za-z]{30,}")),
    ("google_api_key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}")),
    ("jwt", re.compile(r"\beyJ[0-9A-Za-z_-]{8,}\.eyJ[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]{8,}")),
    ("bearer", re.compile(r"(?i)\bbearer\s+[0-9A-Za-z._~+/-]{16,}=*")),
    ("email", re.compile(r"\b[0-9A-Za-z._%+-]+@[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*\.[A-Za-z]{2,}\b")),
)


def redact(text: str) -> str:
    """The text with every secret and email address replaced by `[redacted <kind>]`."""
    for kind, pattern in SECRET_SHAPES:
        text = pattern.sub(f"[redacted {kind}]", text)
    return text


def redact_value(value: Any) -> Any:
    """A JSON-like value (span inputs, outputs, attributes) with every string in it redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(item) for item in value]
    return value


def redact_span(span: Any) -> None:
    """MLflow's span processor (mlflow.tracing.configure): runs as each span ends, before it is exported."""
    if span.inputs is not None and (clean := redact_value(span.inputs)) != span.inputs:
        span.set_inputs(clean)
    if span.outputs is not None and (clean := redact_value(span.outputs)) != span.outputs:
        span.set_outputs(clean)
    for key, value in (span.attributes or {}).items():
        if not key.startswith("mlflow.") and (clean := redact_value(value)) != value:
            span.set_attribute(key, clean)


def user_pseudonym(user_id: str, key: str) -> str:
    """A Slack user as MLflow knows them: a keyed hash, stable per install, that names no one (a plain hash of a
    Slack id could be reversed by trying a workspace's member ids)."""
    if not user_id:
        return ""
    return hmac.new(key.encode(), user_id.encode(), hashlib.sha256).hexdigest()[:20]
