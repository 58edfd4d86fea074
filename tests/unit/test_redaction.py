"""What never reaches MLflow: each secret shape and email address is redacted, and ordinary text is left alone."""

import json

import pytest

from technoshare_common.redaction import redact, redact_value, user_pseudonym

# Shapes as their issuers document them (made-up values).
PLANTED = {
    "slack_token": "xoxb-2712345678901-2723456789012-AbCdEfGhIjKlMnOpQrStUvWx",
    "slack_app_token": "xapp-1-A0123456789-1234567890123-abcdef0123456789abcdef0123456789",
    "slack_webhook": "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "openai_key": "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    "aws_access_key": "AKIAIOSFODNN7EXAMPLE",
    "github_token": "ghp_0123456789abcdefghijABCDEFGHIJ012345",
    "huggingface_token": "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
    "google_api_key": "AIzaSyA-0123456789abcdefghijklmnopqrstu",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "bearer": "Bearer 0123456789abcdefABCDEF.ghij",
    "email": "jane.doe+slack@example.co.uk",
    "private_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
    "stripe_key": "sk_live_0123456789abcdefABCDEF",
    "aws_secret_key": "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "gitlab_token": "glpat-0123456789abcdefABCD",
    "npm_token": "npm_0123456789abcdefghijABCDEFGHIJ012345",
    "sendgrid_key": "SG.0123456789abcdefAB.0123456789abcdefABCDEFGH",
    "url_credentials": "postgres://admin:hunter2secret@db.internal:5432/jobs",
    "secret": "password=correct-horse-battery",
}


@pytest.mark.parametrize("kind", PLANTED)
def test_each_secret_shape_is_replaced_by_its_kind(kind: str) -> None:
    text = f"see {PLANTED[kind]} for the demo"
    redacted = redact(text)
    assert PLANTED[kind] not in redacted
    assert f"[redacted {kind}]" in redacted and redacted.startswith("see ") and redacted.endswith(" for the demo")


@pytest.mark.parametrize("kind", [k for k in PLANTED if k not in ("private_key", "url_credentials", "secret")])
def test_a_secret_after_a_newline_is_redacted_in_serialised_json_too(kind: str) -> None:
    """Prompts, span attributes and artifacts are redacted serialised, where a newline is the characters `\\n`."""
    serialised = json.dumps({"content": f"for the demo:\n{PLANTED[kind]}\tthanks"})
    redacted = redact(serialised)
    assert PLANTED[kind] not in redacted
    assert "[redacted " in json.loads(redacted)["content"]  # and still valid JSON


@pytest.mark.parametrize(
    "text",
    [
        "LoRA reduces trainable parameters by 10,000x on GPT-3 175B.",
        "pip install scikit-learn; the task-based runtime and the risk-free path",
        "https://arxiv.org/abs/2106.09685 and https://github.com/sharkdp/bat",
        "AKIA is a prefix; xoxb- alone is not a token; sk-short",
        "github.com/sk-telecom/sk-llm-foundation-models and sk-video-tools-for-python",
        "git clone git@github.com:org/repo.git",
        "y = x@self.weight.T + b",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_nested_values_are_redacted_and_other_types_kept() -> None:
    value = {"messages": [{"role": "user", "content": f"token {PLANTED['slack_token']}"}], "n": 3, "ok": True}
    assert redact_value(value) == {
        "messages": [{"role": "user", "content": "token [redacted slack_token]"}],
        "n": 3,
        "ok": True,
    }


@pytest.mark.parametrize(
    "text",
    [
        'psycopg2.connect("host=db password=hunter2hunter2")',
        'password=abcd1234\nx"y',
        "mail me: jane@example.com\\n and -----BEGIN PRIVATE KEY-----\nabc",
        "redis://:p4ssw0rdlong@redis:6379 and postgres://u:p4ss@db/x",
    ],
)
def test_redacting_serialised_json_keeps_it_json(text: str) -> None:
    serialised = json.dumps({"text": text, "list": [text]})
    assert json.loads(redact(serialised))["text"] == redact(text)


def test_prose_about_passwords_is_not_a_secret_and_a_colon_after_an_address_is_punctuation() -> None:
    assert (
        redact("The password: required, and the api_key: optional")
        == "The password: required, and the api_key: optional"
    )
    assert redact("cc bob@example.com: can you look") == "cc [redacted email]: can you look"
    assert "p4ssw0rdlong" not in redact("redis://:p4ssw0rdlong@redis:6379")


def test_a_slack_mention_keeps_that_someone_was_mentioned_not_who() -> None:
    assert redact("thanks <@U0123ABCD> and <@W0123ABCD|jane>!") == "thanks <@user> and <@user>!"


def test_a_user_pseudonym_is_stable_keyed_and_names_no_one() -> None:
    first = user_pseudonym("U0HUMAN", "key-one")
    assert first == user_pseudonym("U0HUMAN", "key-one") and "U0HUMAN" not in first
    assert first != user_pseudonym("U0HUMAN", "key-two") and first != user_pseudonym("U0OTHER", "key-one")
    assert user_pseudonym("", "key-one") == ""
