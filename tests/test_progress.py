"""Heartbeats: a blocking call that cannot report on its own is still heard to be alive."""

from __future__ import annotations

import time

from cedargate.progress import heartbeat, no_progress


def test_a_heartbeat_reports_the_time_so_far_while_the_block_runs_and_stops_with_it() -> None:
    heard: list[tuple[float, float | None, str]] = []
    with heartbeat(lambda done, total, message: heard.append((done, total, message)), "AWS `x:Y`", every_s=0.05):
        time.sleep(0.32)
    count = len(heard)
    time.sleep(0.15)
    assert len(heard) == count >= 3  # nothing after the block ended
    elapsed = [done for done, _, _ in heard]
    assert elapsed == sorted(elapsed) and elapsed[0] >= 0.05
    assert all(total is None and message.startswith("waiting for AWS `x:Y`: ") for _, total, message in heard)


def test_nobody_listening_starts_no_thread(heartbeat_threads: list[str]) -> None:
    with heartbeat(no_progress, "AWS `x:Y`", every_s=0.01):
        time.sleep(0.03)
    assert heartbeat_threads == []
    with heartbeat(lambda done, total, message: None, "AWS `x:Y`", every_s=0.01):
        pass
    assert heartbeat_threads == ["cedargate-heartbeat"]  # the recorder sees a listener's heartbeat
