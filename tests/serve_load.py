"""Many raters voting at once against ``reelbench serve`` in its own process on loopback.

Shared by the load test (tests/test_serve_load.py) and the load benchmark
(benches/bench_serve.py). One step is "vote + next pair": the POST of a vote
and the judge page its redirect leads to.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx

__all__ = ["OUTCOMES", "load", "rater", "serve_process"]

OUTCOMES = ("left", "right", "tie", "both_bad")


def rater(base: str, experiment_id: int, n: int, votes: int, latencies: list[float],
          errors: list[str]) -> None:  # fmt: skip
    """One rater (own client) casting ``votes`` votes; latencies and errors appended."""
    with httpx.Client(base_url=base, follow_redirects=True, timeout=60) as client:
        who = {"rater": f"rater {n}", "next": f"/judge/{experiment_id}"}
        page = client.post("/rater", data=who)
        for k in range(votes):
            token = re.search(r'name="token" value="([^"]+)"', page.text)
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
            if page.status_code != 200 or token is None or csrf is None:
                errors.append(f"rater {n} vote {k}: HTTP {page.status_code}")
                return
            form = {"token": token[1], "csrf": csrf[1], "outcome": OUTCOMES[(n + k) % 4]}
            start = time.perf_counter()
            page = client.post(f"/judge/{experiment_id}/vote", data=form)
            latencies.append(time.perf_counter() - start)
            if page.status_code >= 500:
                errors.append(f"rater {n} vote {k}: HTTP {page.status_code}")


def serve_process(url: str) -> Iterator[str]:
    """``reelbench serve`` on a free loopback port, stopped afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "reelbench", "serve", "--db", url, "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, "reelbench serve exited"
            try:
                if httpx.get(base + "/static/app.css", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "reelbench serve did not start"
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(20)


def load(
    base: str, experiment_id: int, raters: int, votes: int
) -> tuple[list[float], list[str], float]:
    """``raters`` raters voting at once; (latencies, errors, wall seconds)."""
    latencies: list[float] = []
    errors: list[str] = []
    threads = [
        threading.Thread(target=rater, args=(base, experiment_id, n, votes, latencies, errors))
        for n in range(raters)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors, time.perf_counter() - start
