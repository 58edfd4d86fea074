"""JSON logs on stdout, each line carrying the service name and the current job id."""

import logging
import re
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from technoshare_common.context import job_id_var


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.job_id = job_id_var.get()
        return True


# A link's query string may carry a token or a signed URL's signature: logs keep the link, not the query.
_QUERY = re.compile(r"(https?://[^\s?#\"'<>|]+)\?[^\s#\"'<>|]*")


def redact_queries(text: str) -> str:
    return _QUERY.sub(r"\1?[redacted]", text)


class _RedactingFormatter(JsonFormatter):
    """JSON lines whose string values carry no URL query string."""

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {key: redact_queries(value) if isinstance(value, str) else value for key, value in log_data.items()}


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route the root logger (and uvicorn's) through one JSON handler."""
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(_ContextFilter(service))
    handler.setFormatter(
        _RedactingFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(service)s %(job_id)s",
            rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv_logger = logging.getLogger(name)
        uv_logger.handlers[:] = []
        uv_logger.propagate = True
        # uvicorn sets INFO on its own loggers; left so, every request's access line was formatted and written
        # whatever LOG_LEVEL said, a measurable part of Slack's ack time under load.
        uv_logger.setLevel(logging.NOTSET)
    # httpx logs every request URL at INFO, which would leak query-string tokens.
    for noisy in ("httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
