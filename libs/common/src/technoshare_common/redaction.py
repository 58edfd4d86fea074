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

# Where a token may start: not inside a word, or right after a JSON escape (`\n`, `\t`, `\r`), since prompts,
# span attributes and artifacts are often redacted already serialised, where a newline is the two characters `\n`.
_START = r"(?:(?<![0-9A-Za-z_\\])|(?<=\\[nrt]))"

# (what, pattern): the replacement names the kind, so a trace still shows that something was there. Quantifiers are
# bounded, so a long paste of dots and letters costs milliseconds, not seconds.
SECRET_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "private_key",
        re.compile(
            r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----(?:(?!-----BEGIN)[\s\S]){0,20000}?"
            r"-----END [A-Z ]{0,40}PRIVATE KEY-----"
        ),
    ),
    ("private_key", re.compile(r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----(?:[0-9A-Za-z+/=\s]|\\[nrt]){0,20000}")),
    ("slack_token", re.compile(_START + r"xox[abeoprs]-[0-9A-Za-z-]{8,200}")),
    ("slack_app_token", re.compile(_START + r"xapp-[0-9A-Za-z-]{8,200}")),
    ("slack_webhook", re.compile(r"hooks\.slack\.com/(?:services|workflows|triggers)/[0-9A-Za-z/_-]{1,200}")),
    (
        "openai_key",
        re.compile(_START + r"sk-(?:proj-|svcacct-|admin-|ant-)?(?=[0-9A-Za-z_-]{0,200}\d)[0-9A-Za-z_-]{20,200}"),
    ),
    ("stripe_key", re.compile(_START + r"[rs]k_(?:live|test)_[0-9A-Za-z]{16,200}")),
    ("aws_access_key", re.compile(_START + r"(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?![0-9A-Za-z])")),
    ("aws_secret_key", re.compile(r"(?i)aws_secret_access_key\W{0,5}[0-9A-Za-z/+=]{40}")),
    ("github_token", re.compile(_START + r"(?:gh[opsur]_[0-9A-Za-z]{30,200}|github_pat_[0-9A-Za-z_]{22,200})")),
    ("gitlab_token", re.compile(_START + r"glpat-[0-9A-Za-z_-]{20,200}")),
    ("npm_token", re.compile(_START + r"npm_[0-9A-Za-z]{36}")),
    ("huggingface_token", re.compile(_START + r"hf_[0-9A-Za-z]{30,200}")),
    ("google_api_key", re.compile(_START + r"AIza[0-9A-Za-z_-]{35}")),
    ("sendgrid_key", re.compile(_START + r"SG\.[0-9A-Za-z_-]{16,100}\.[0-9A-Za-z_-]{16,100}")),
    ("jwt", re.compile(_START + r"eyJ[0-9A-Za-z_-]{8,4000}\.eyJ[0-9A-Za-z_-]{8,4000}\.[0-9A-Za-z_-]{8,4000}")),
    ("bearer", re.compile(_START + r"(?i:bearer)\s{1,5}[0-9A-Za-z._~+/-]{16,4000}=*")),
    ("url_credentials", re.compile(r"(?<=://)[^/\s:@\"'<>\\]{0,200}:[^/\s@\"'<>\\]{1,200}@")),
    (
        "secret",
        re.compile(
            _START
            + r"(?i:password|passwd|secret|api[_-]?key|access[_-]?token)\b\s{0,3}[:=]\s{0,3}['\"]?"
            # a value, not a word of prose ("the password: required"): a digit or a symbol in it, and no backslash,
            # so a JSON escape after it survives
            + r"(?=[^\s'\",;\\]{0,200}[0-9_+/=!@#$%^&*-])[^\s'\",;\\]{8,200}"
        ),
    ),
    (
        "email",
        re.compile(
            r"(?:(?<![0-9A-Za-z._%+\\-])|(?<=\\[nrt]))[0-9A-Za-z._%+-]{1,64}@[0-9A-Za-z-]{1,63}(?:\.[0-9A-Za-z-]{1,63}){0,8}"
            r"\.[A-Za-z]{2,24}(?![0-9A-Za-z-]|\.[0-9A-Za-z]|:\S)"
        ),
    ),
)
# A Slack mention names a user by id: MLflow sees that someone was mentioned, not who.
_MENTION = re.compile(r"<@[UW][0-9A-Z]{6,20}(?:\|[^>]{0,100})?>")


def redact(text: str) -> str:
    """The text with every secret and email address replaced by `[redacted <kind>]`, and user mentions anonymous."""
    for kind, pattern in SECRET_SHAPES:
        text = pattern.sub(f"[redacted {kind}]", text)
    return _MENTION.sub("<@user>", text)


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
