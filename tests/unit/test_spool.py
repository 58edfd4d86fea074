"""The disk spool's contract: order, follow-up steps, records that must wait, refused and unreadable records."""

import json
import os
import time
from pathlib import Path

from mlflow.exceptions import ERROR_CODE_TO_HTTP_STATUS, MlflowException
from mlflow.protos.databricks_pb2 import (
    INTERNAL_ERROR,
    INVALID_PARAMETER_VALUE,
    PERMISSION_DENIED,
    REQUEST_LIMIT_EXCEEDED,
    UNAUTHENTICATED,
    ErrorCode,
)
from prometheus_client import REGISTRY

from technoshare_common.spool import (
    REJECTION_STATUSES,
    Deferred,
    DiskSpool,
    Record,
    SpoolVolume,
    rejected_by_mlflow,
)


class Receiver:
    def __init__(self) -> None:
        self.down = False
        self.sent: list[Record] = []

    def __call__(self, record: Record) -> Record | None:
        if self.down:
            raise ConnectionError("MLflow is down")
        if record.get("refuse"):
            raise MlflowException("bad record", error_code=INVALID_PARAMETER_VALUE)
        if record.get("wait_for") and record["wait_for"] not in {sent["name"] for sent in self.sent}:
            raise Deferred
        self.sent.append(record)
        return record.get("then")


def test_records_wait_while_mlflow_is_down_and_go_in_order_when_it_is_back(tmp_path: Path) -> None:
    receiver = Receiver()
    spool = DiskSpool(tmp_path, "test", receiver)
    receiver.down = True
    for name in ("a", "b", "c"):
        assert spool.put({"name": name})
    assert spool.drain_once() is False
    assert spool.backlog() == 3 and not spool.available
    receiver.down = False
    assert spool.drain_once() is True
    assert [record["name"] for record in receiver.sent] == ["a", "b", "c"]
    assert spool.backlog() == 0 and spool.available


def test_a_follow_up_step_replaces_its_record_and_a_deferred_one_lets_the_others_go(tmp_path: Path) -> None:
    receiver = Receiver()
    spool = DiskSpool(tmp_path, "test", receiver)
    spool.put({"name": "run", "then": {"name": "link", "wait_for": "trace"}})
    spool.put({"name": "other"})
    assert spool.drain_once() is False  # the run went; its link step now waits in its place
    assert [record["name"] for record in receiver.sent] == ["run", "other"]
    assert spool.backlog() == 1
    assert spool.drain_once() is False  # still no trace
    spool.put({"name": "trace"})
    assert spool.drain_once() is False  # the link is older than the trace: it goes on the next pass
    assert spool.drain_once() is True
    assert spool.backlog() == 0
    assert [record["name"] for record in receiver.sent] == ["run", "other", "trace", "link"]


def test_refused_and_unreadable_records_are_set_aside_not_retried(tmp_path: Path) -> None:
    receiver = Receiver()
    spool = DiskSpool(tmp_path, "test", receiver)
    spool.put({"name": "bad", "refuse": True})
    (tmp_path / "0.json").write_text("{not json")
    spool.put({"name": "good"})
    assert spool.drain_once() is True
    assert [record["name"] for record in receiver.sent] == ["good"]
    assert len(list(tmp_path.glob("*.rejected"))) == 1 and len(list(tmp_path.glob("*.bad"))) == 1


def test_only_client_errors_count_as_refusals() -> None:
    assert rejected_by_mlflow(MlflowException("bad", error_code=INVALID_PARAMETER_VALUE))
    assert not rejected_by_mlflow(MlflowException("down", error_code=INTERNAL_ERROR))
    assert not rejected_by_mlflow(MlflowException("slow down", error_code=REQUEST_LIMIT_EXCEEDED))
    assert not rejected_by_mlflow(ConnectionError("refused"))


def test_unknown_credentials_wait_and_a_denied_permission_is_a_refusal() -> None:
    """401 (the caller's MLflow user not set up yet, or its password rotated) is true of every record: they wait
    until it is fixed. 403 is this record's: set aside."""
    assert not rejected_by_mlflow(MlflowException("who are you", error_code=UNAUTHENTICATED))
    assert rejected_by_mlflow(MlflowException("not yours", error_code=PERMISSION_DENIED))


def test_a_started_spool_shows_no_refusals_at_zero_then_counts_one_by_status(tmp_path: Path) -> None:
    """Series at 0 from the start: the alert's increase() sees the first refusal, the dashboard shows a line."""
    spool = DiskSpool(tmp_path, "unit-refusals", Receiver())
    spool.start()
    spool.stop()

    def refused(status: str) -> float | None:
        labels = {"kind": "unit-refusals", "status": status}
        return REGISTRY.get_sample_value("technoshare_mlflow_spool_rejected_total", labels)

    assert [refused(status) for status in REJECTION_STATUSES] == [0.0] * len(REJECTION_STATUSES)
    spool.put({"name": "bad", "refuse": True})
    assert spool.drain_once() is True
    assert refused("400") == 1.0
    assert REGISTRY.get_sample_value("technoshare_mlflow_spool_set_aside", {"kind": "unit-refusals"}) == 1.0


def test_the_statuses_started_at_zero_are_every_refusal_mlflow_reports() -> None:
    refusals = {
        str(status)
        for name, status in ERROR_CODE_TO_HTTP_STATUS.items()
        if rejected_by_mlflow(MlflowException("refused", error_code=ErrorCode.Value(name)))
    }
    assert refusals == set(REJECTION_STATUSES)


def _dropped(kind: str) -> float:
    return REGISTRY.get_sample_value("technoshare_mlflow_spool_dropped_total", {"kind": kind}) or 0.0


def _bytes_under(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def test_the_spools_of_a_volume_stay_under_its_budget_by_dropping_the_oldest_records(tmp_path: Path) -> None:
    SpoolVolume.configure(tmp_path, max_bytes=4000, keep_set_aside_hours=1)
    receiver = Receiver()
    receiver.down = True  # MLflow is away for long: everything waits
    runs, traces = DiskSpool(tmp_path / "job-runs", "run", receiver), DiskSpool(tmp_path / "traces", "span", receiver)
    for spool in (runs, traces):
        spool.start()
        spool.stop()  # the sender thread is not needed: nothing can be sent
    before = _dropped("run"), _dropped("span")
    for number in range(20):
        spool = runs if number % 2 == 0 else traces
        assert spool.put({"name": f"record-{number:02d}", "padding": "x" * 400})
        assert _bytes_under(tmp_path) <= 4000
    size = len(json.dumps({"name": "record-00", "padding": "x" * 400}))  # 436 bytes: 9 fit in 4000
    kept = sorted(json.loads(p.read_text())["name"] for p in tmp_path.rglob("*.json"))
    # The newest, whichever spool; a drop makes a tenth of the budget spare, so 8 or 9 of them are left.
    assert kept == [f"record-{number:02d}" for number in range(20 - len(kept), 20)]
    assert 3600 // size <= len(kept) <= 4000 // size
    dropped = range(20 - len(kept))
    run_dropped, span_dropped = sum(1 for n in dropped if n % 2 == 0), sum(1 for n in dropped if n % 2 == 1)
    assert (_dropped("run") - before[0], _dropped("span") - before[1]) == (run_dropped, span_dropped)


def test_set_aside_records_are_pruned_after_their_keep_time(tmp_path: Path) -> None:
    SpoolVolume.configure(tmp_path, max_bytes=10**6, keep_set_aside_hours=24)
    spool = DiskSpool(tmp_path / "job-runs", "test", Receiver())
    spool.start()
    spool.stop()
    old, recent = tmp_path / "job-runs" / "1.rejected", tmp_path / "job-runs" / "2.bad"
    for path in (old, recent):
        path.write_text("{}")
    two_days_ago = time.time() - 48 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    assert spool.drain_once() is True
    assert not old.exists() and recent.exists() and spool.set_aside() == 1
