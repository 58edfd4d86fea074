"""A posted reply's scores are the trace's extras: MLflow refusing them never costs the job's run its trace link."""

from typing import Any

import pytest
from mlflow.exceptions import MlflowException, RestException

from composer.tracking import JobTracker
from technoshare_common.schemas import ReplyQuality

QUALITY = ReplyQuality(
    passed=True, gates={"grounded": True}, grounding_mean=0.9, grounding_min=0.8, unsupported_sentences=0
)


class RefusingClient:
    """The tracing client's calls the link makes; scoring is refused as MLflow's auth refuses a write (HTTP 4xx)."""

    def __init__(self, error: MlflowException) -> None:
        self.error = error
        self.tags: dict[str, str] = {}

    def set_trace_tags(self, trace_id: str, tags: dict[str, str]) -> None:
        self.tags |= tags

    def get_trace_info(self, trace_id: str) -> Any:
        raise self.error


def test_a_refused_score_leaves_the_link_and_an_unreachable_mlflow_retries() -> None:
    refused = RefusingClient(RestException({"error_code": "PERMISSION_DENIED", "message": "Permission denied"}))
    JobTracker._scores_quietly(JobTracker._score_trace, refused, "tr-1", QUALITY)  # refused: logged, not raised
    down = RefusingClient(MlflowException("API request failed with exception ConnectionError"))
    with pytest.raises(MlflowException):  # down (a 500): the spool keeps the record and tries again
        JobTracker._scores_quietly(JobTracker._score_trace, down, "tr-1", QUALITY)
