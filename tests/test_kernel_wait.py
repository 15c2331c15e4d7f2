"""book/_ext/kernel_wait.py: kernel messages are awaited in short slices, so a lost wake-up costs
at most one slice, with the same messages and the same Empty at the same deadline."""
from __future__ import annotations

import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from queue import Empty

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "book" / "_ext"))
import kernel_wait  # noqa: E402


class FakeSocket:
    """poll() misses its wake-up until `lost_until`, as an edge-triggered fd can: every poll waits
    its whole timeout and only its final check finds the queued message."""

    def __init__(self, ready_at: float | None, lost: bool):
        self.ready_at, self.lost, self.polls = ready_at, lost, []

    async def poll(self, timeout_ms: int) -> int:
        self.polls.append(timeout_ms)
        now = time.monotonic()
        ready = self.ready_at is not None and now >= self.ready_at
        if not ready and not self.lost and self.ready_at is not None and self.ready_at - now < timeout_ms / 1000:
            await asyncio.sleep(self.ready_at - now)        # a working fd wakes us when it arrives
            return 1
        await asyncio.sleep(timeout_ms / 1000)               # a lost wake-up sleeps the slice out
        return int(self.ready_at is not None and time.monotonic() >= self.ready_at)


class FakeChannel:
    def __init__(self, socket: FakeSocket, sent: datetime):
        self.socket, self.sent = socket, sent

    async def _recv(self) -> dict:
        return {"header": {"date": self.sent, "msg_type": "execute_reply"}}

    get_msg = kernel_wait._sliced_get_msg


def run(coro):
    """asyncio.run in a thread of its own: other tests (pytest-playwright) may leave a loop running
    in the main thread, where asyncio.run refuses to start."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(autouse=True)
def fast_slices(monkeypatch):
    monkeypatch.setattr(kernel_wait, "SLICE_S", 0.1)
    monkeypatch.setattr(kernel_wait, "LATE", [])


def test_a_lost_wake_up_costs_one_slice_not_the_timeout():
    now = datetime.now(timezone.utc)
    chan = FakeChannel(FakeSocket(ready_at=time.monotonic() + 0.05, lost=True), sent=now)
    t0 = time.monotonic()
    msg = run(chan.get_msg(timeout=30))
    took = time.monotonic() - t0
    assert msg["header"]["msg_type"] == "execute_reply"
    assert took < 1.0, took                                      # not the 30 s timeout
    assert max(chan.socket.polls) <= 100                         # slices of SLICE_S
    assert len(kernel_wait.LATE) == 0                            # sent 0.1 s ago: under the 0.25 s mark


def test_a_message_left_waiting_is_counted_as_a_lost_wake_up():
    sent = datetime.now(timezone.utc) - timedelta(seconds=2)     # queued long before we looked
    chan = FakeChannel(FakeSocket(ready_at=time.monotonic(), lost=True), sent=sent)
    run(chan.get_msg(timeout=30))
    assert len(kernel_wait.LATE) == 1 and kernel_wait.LATE[0] >= 2


def test_a_normal_wake_up_is_immediate_and_not_counted():
    chan = FakeChannel(FakeSocket(ready_at=time.monotonic() + 0.03, lost=False), sent=datetime.now(timezone.utc))
    t0 = time.monotonic()
    run(chan.get_msg(timeout=5))
    assert time.monotonic() - t0 < 0.09 and kernel_wait.LATE == []


def test_empty_at_the_same_deadline():
    chan = FakeChannel(FakeSocket(ready_at=None, lost=False), sent=datetime.now(timezone.utc))
    t0 = time.monotonic()
    with pytest.raises(Empty):
        run(chan.get_msg(timeout=0.35))
    assert 0.33 <= time.monotonic() - t0 < 0.6
    assert len(chan.socket.polls) >= 4                           # 0.1 + 0.1 + 0.1 + 0.05


def test_the_book_build_loads_it():
    import yaml
    cfg = yaml.safe_load((Path(__file__).resolve().parent.parent / "book" / "_config.yml").read_text())
    assert cfg["sphinx"]["local_extensions"]["kernel_wait"] == "_ext"
    from jupyter_client.channels import AsyncZMQSocketChannel
    original = AsyncZMQSocketChannel.get_msg
    try:
        kernel_wait.patch()
        assert AsyncZMQSocketChannel.get_msg is kernel_wait._sliced_get_msg
    finally:
        AsyncZMQSocketChannel.get_msg = original
