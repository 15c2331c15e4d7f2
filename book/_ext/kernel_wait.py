"""A local Sphinx extension: waits for kernel messages in short slices, so that a lost wake-up
costs at most a second instead of the whole cell timeout.

jupyter_client's asyncio channels wait for a message with one `socket.poll(timeout)`. pyzmq
implements that by watching the socket's file descriptor, which ZeroMQ signals edge-triggered;
now and then the edge is missed while a message is already queued. The poll then sleeps out the
entire timeout (300 s per cell in the book build), ends with its final non-blocking check, finds
the message and carries on as if nothing happened: a build that silently takes 5 minutes longer,
with the kernel and the client both idle. `benchmarks/stall_probe.py` counts these wake-ups.

Here `get_msg` polls in slices of at most SLICE_S seconds up to the same deadline. Every slice ends
with that same final check, so a queued message is picked up within one slice. Nothing else
changes: the same messages in the same order, and `Empty` at the same deadline.

Loaded through `sphinx.local_extensions` in book/_config.yml (notebooks execute in the Sphinx
process); nbval uses the blocking client, whose zmq poll is level-triggered and never misses.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from queue import Empty
from typing import Any

SLICE_S = 1.0
LATE: list[float] = []  # slices that ended by timeout with a message already queued (lost wake-ups)


async def _sliced_get_msg(self: Any, timeout: float | None = None) -> dict[str, Any]:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = SLICE_S if deadline is None else min(SLICE_S, max(0.0, deadline - time.monotonic()))
        t0 = time.monotonic()
        if await self.socket.poll(int(left * 1000)):
            msg = await self._recv()
            if left > 0.05 and time.monotonic() - t0 >= left * 0.98:  # woke by the timer, not the fd:
                _note_if_late(msg)                                   # was the message waiting?
            return msg
        if deadline is not None and time.monotonic() >= deadline:
            raise Empty


def _note_if_late(msg: dict[str, Any]) -> None:
    """A message sent well before the slice ended sat queued unseen: a lost wake-up."""
    sent = msg.get("header", {}).get("date")
    if isinstance(sent, datetime):
        waited = (datetime.now(timezone.utc) - sent).total_seconds()
        if waited > 0.25:
            LATE.append(waited)


def patch() -> None:
    from jupyter_client.channels import AsyncZMQSocketChannel
    if AsyncZMQSocketChannel.get_msg is not _sliced_get_msg:
        AsyncZMQSocketChannel.get_msg = _sliced_get_msg  # type: ignore[method-assign]


def setup(app: Any) -> dict[str, Any]:
    patch()
    return {"parallel_read_safe": True, "parallel_write_safe": True}
