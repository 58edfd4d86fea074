"""The background sender: callers never wait, a full queue drops and counts, a failing send is contained."""

import threading

from technoshare_common.background import BackgroundSender


def test_a_full_queue_drops_instead_of_blocking_and_failures_do_not_stop_the_worker() -> None:
    release = threading.Event()
    started = threading.Event()
    sent: list[int] = []

    def send(item: int) -> None:
        if item == 0:
            started.set()
            release.wait(5)
            raise RuntimeError("MLflow said no")
        sent.append(item)

    sender: BackgroundSender[int] = BackgroundSender("test", send, capacity=1)
    assert sender.submit(0)
    assert started.wait(5)  # the worker is busy with item 0
    assert sender.submit(1)  # fills the one slot
    assert not sender.submit(2)  # dropped, not waited for
    assert sender.dropped == 1
    release.set()
    sender.flush()
    assert sent == [1]
