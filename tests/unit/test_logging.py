"""LOG_LEVEL governs uvicorn's loggers too: at WARNING no access line is formatted and written per request, which
was a measurable part of Slack's ack time under load."""

import json
import logging
import logging.config
from collections.abc import Iterator

import pytest
from uvicorn.config import LOGGING_CONFIG

from technoshare_common.logging import configure_logging

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in UVICORN_LOGGERS)]
    saved = [(lg, lg.level, list(lg.handlers), lg.propagate) for lg in loggers]
    logging.config.dictConfig(LOGGING_CONFIG)  # what uvicorn does before it builds the app
    yield
    for lg, level, handlers, propagate in saved:
        lg.setLevel(level)
        lg.handlers[:] = handlers
        lg.propagate = propagate


def _access_line() -> None:
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "POST", "/slack/events", "1.1", 200
    )


def test_at_warning_uvicorn_writes_no_access_lines_but_keeps_its_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("ingest", "WARNING")
    _access_line()
    logging.getLogger("uvicorn.error").warning("server overloaded")

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["logger"], line["message"]) for line in lines] == [("uvicorn.error", "server overloaded")]


def test_at_info_access_lines_are_written_as_json_with_the_service(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("ingest", "INFO")
    _access_line()

    (line,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert line["logger"] == "uvicorn.access" and "/slack/events" in line["message"] and line["service"] == "ingest"


def test_query_strings_are_redacted_from_every_logged_url(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("ingest", "INFO")
    link = "https://x.example/report.pdf?X-Amz-Signature=abc123&token=s3cr3t"
    logging.getLogger("ingest").info(f"job accepted for {link}", extra={"url": link, "attempt": 2})

    (line,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert "s3cr3t" not in json.dumps(line) and "abc123" not in json.dumps(line)
    assert line["url"] == "https://x.example/report.pdf?[redacted]" and line["attempt"] == 2
    assert line["message"] == "job accepted for https://x.example/report.pdf?[redacted]"
