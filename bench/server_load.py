"""The model server under load, against issue 24's targets, in one run of one ``retrain serve``.

Phases, on a 1,000-adapter release, every adapter loaded once first:

1. closed loop: 32 clients, single-text requests; requests/s against the engine's ceiling, p99;
2. closed loop: 16 clients, 16-row requests; rows/s (the capacity for them) against the ceiling;
3. open loop at 1.5x phase 1's rate (Poisson arrivals, latency counted from each request's
   scheduled time, 30 s client timeouts): answers on time (<= 500 ms) or prompt 503s (<= 100 ms),
   no timeouts, p99 of the accepted ones, goodput against the capacity;
4. the clients of phase 3 then leave at once, abandoning what they had in flight: seconds until the
   server's process is idle (< 5% of a core over 100 ms).

Clients are asyncio coroutines on keep-alive HTTP/1.1 connections (stdlib only), in this process,
on the same cores as the server: the figures are for the machine as a whole, and noisy when other
work shares it. Per-stage times come from the server's own /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import statistics
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from synthetic import synthetic_customer, synthetic_release

INFER = "/v2/models/retrain/infer"
CLIENT_TIMEOUT = 30.0
ON_TIME = 0.5  # seconds: an accepted answer later than this is late
PROMPT = 0.1  # seconds: a 503 later than this is not a prompt refusal


@dataclass
class Outcome:
    status: int  # 0: the client timed out
    seconds: float  # from the request's scheduled (open loop) or sending (closed loop) time


@dataclass
class Phase:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: int) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def latencies(self, status: int = 200) -> list[float]:
        return [o.seconds for o in self.outcomes if o.status == status]


class Connection:
    """One keep-alive HTTP/1.1 connection to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def post(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        headers = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.lower()] = value.strip()
        return status, headers, await self.reader.readexactly(int(headers.get("content-length", 0)))

    def close(self) -> None:
        self.writer.close()


def infer_body(texts: list[str], customers: list[str]) -> bytes:
    inputs = [("text", texts), ("customer_id", customers)]
    return json.dumps(
        {"inputs": [{"name": n, "shape": [len(v)], "datatype": "BYTES", "data": v} for n, v in inputs]}
    ).encode()


def run(work: Path, ceiling: float | None, options: list[str], serve: Path, texts: list[str]) -> None:
    """Start ``retrain serve`` on a 1,000-adapter release, run the four phases, print the figures."""
    release = synthetic_release(work, 1000)
    port, grpc_port = free_port(), free_port()
    log = work / "serve.log"  # a file, not a pipe nobody reads while the server runs
    with log.open("w") as output:
        ports = ["--http-port", str(port), "--grpc-port", str(grpc_port)]
        server = subprocess.Popen(
            [str(serve), "serve", "--release-dir", str(release), *ports, *options],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(port, server, log)
        print(
            f"(c) server under load ({' '.join(options) or 'default settings'}): 1,000 customers, "
            f"loopback; clients and server share this machine's {os.cpu_count()} cores (noisy when "
            "other work runs beside it)"
        )
        asyncio.run(phases(port, server.pid, ceiling, texts))
    finally:
        server.terminate()
        server.wait(timeout=30)


async def phases(port: int, pid: int, ceiling: float | None, texts: list[str]) -> None:
    customers = [synthetic_customer(i) for i in range(1000)]
    rng = random.Random(7)

    def single() -> bytes:
        return infer_body([rng.choice(texts)], [rng.choice(customers)])

    def sixteen() -> bytes:
        return infer_body([rng.choice(texts) for _ in range(16)], [rng.choice(customers) for _ in range(16)])

    warm = await Connection.open(port)
    for customer in customers:  # load every adapter once, as a server that has run a while has
        status, _, answer = await warm.post(INFER, infer_body([texts[0]], [customer]))
        if status != 200:
            raise SystemExit(f"infer for {customer} answered {status}: {answer[:300]!r}")
    warm.close()

    before = await scrape(port)
    closed = await closed_loop(port, 32, 20.0, single)
    stages = stage_split(before, await scrape(port))
    capacity = len(closed.latencies()) / closed.seconds
    print(
        f"  1. closed loop, 32 clients, single-text requests, {closed.seconds:.0f}s: "
        f"{capacity:.0f} requests/s, "
        f"p50 {ms(closed.latencies(), 50)}, p99 {ms(closed.latencies(), 99)} (target <= 250 ms); "
        f"{closed.count(503)} 503s"
        + (
            f"; {capacity / ceiling:.2f}x the ceiling of {ceiling:.0f} rows/s (target >= 0.7x)"
            if ceiling
            else ""
        )
    )
    print(f"     {stages}")

    before = await scrape(port)
    rows16 = await closed_loop(port, 16, 15.0, sixteen)
    rate16 = 16 * len(rows16.latencies()) / rows16.seconds
    print(
        f"  2. closed loop, 16 clients, 16-row requests, {rows16.seconds:.0f}s: {rate16:.0f} rows/s, "
        f"p99 {ms(rows16.latencies(), 99)}, {rows16.count(503)} 503s"
        + (f"; {rate16 / ceiling:.2f}x the ceiling (target >= 0.7x)" if ceiling else "")
    )
    print(f"     {stage_split(before, await scrape(port))}")

    rate = 1.5 * capacity
    before = await scrape(port)
    opened, stopped_at = await open_loop(port, rate, 20.0, single)
    idle = await seconds_until_idle(pid, stopped_at)
    accepted = opened.latencies(200)
    refused = opened.latencies(503)
    on_time = sum(1 for s in accepted if s <= ON_TIME)
    prompt = sum(1 for s in refused if s <= PROMPT)
    others = len(opened.outcomes) - len(accepted) - len(refused)
    print(
        f"  3. open loop at 1.5x = {rate:.0f} requests/s (Poisson), {opened.seconds:.0f}s, "
        f"{len(opened.outcomes):,} requests: {len(accepted):,} answered ({on_time:,} within "
        f"{ON_TIME * 1000:.0f} ms), {len(refused):,} refused with 503 ({prompt:,} within "
        f"{PROMPT * 1000:.0f} ms), {opened.count(0)} client timeouts, {others - opened.count(0)} other errors"
    )
    goodput = len(accepted) / opened.seconds
    print(
        f"     p99 of the accepted {ms(accepted, 99)} (target <= 500 ms); p99 of the 503s {ms(refused, 99)}; "
        f"goodput {goodput:.0f} requests/s = {goodput / capacity:.2f}x capacity (target >= 0.9x)"
    )
    print(f"     {stage_split(before, await scrape(port))}")
    print(
        "  4. after the open loop's clients left (abandoning their requests): the server idle in "
        + (f"{idle:.2f}s (target <= 1 s)" if idle is not None else "more than 5 s (target <= 1 s)")
    )


async def closed_loop(port: int, clients: int, seconds: float, body: Callable[[], bytes]) -> Phase:
    """Each client sends a request, waits for its answer, sends the next (after Retry-After on a 503)."""
    phase = Phase()
    stop_at = time.perf_counter() + seconds

    async def client() -> None:
        connection = await Connection.open(port)
        try:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                status, headers, _ = await asyncio.wait_for(connection.post(INFER, body()), CLIENT_TIMEOUT)
                phase.outcomes.append(Outcome(status, time.perf_counter() - started))
                if status == 503:
                    await asyncio.sleep(float(headers.get("retry-after", 1)))
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    phase.seconds = time.perf_counter() - started
    return phase


async def open_loop(port: int, rate: float, seconds: float, body: Callable[[], bytes]) -> tuple[Phase, float]:
    """Poisson arrivals at ``rate``; each request on an idle connection or a new one.

    When ``seconds`` are up, every request still in flight is abandoned (its connection closed),
    as clients that time out or go away do. Returns the phase and when the clients left.
    """
    phase = Phase()
    idle: list[Connection] = []
    in_flight: set[asyncio.Task[None]] = set()
    arrivals = random.Random(11)

    async def one(scheduled: float) -> None:
        connection = idle.pop() if idle else await Connection.open(port)
        try:
            status, _, _ = await asyncio.wait_for(connection.post(INFER, body()), CLIENT_TIMEOUT)
        except TimeoutError:
            connection.close()
            phase.outcomes.append(Outcome(0, time.perf_counter() - scheduled))
            return
        except asyncio.CancelledError:
            connection.close()  # the client leaves: the server sees the disconnect
            raise
        phase.outcomes.append(Outcome(status, time.perf_counter() - scheduled))
        idle.append(connection)

    started = time.perf_counter()
    next_at = started
    while next_at < started + seconds:
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        task = asyncio.ensure_future(one(next_at))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        next_at += arrivals.expovariate(rate)
    phase.seconds = time.perf_counter() - started
    stopped_at = time.perf_counter()
    for task in list(in_flight):
        task.cancel()
    await asyncio.gather(*in_flight, return_exceptions=True)
    for connection in idle:
        connection.close()
    return phase, stopped_at


async def seconds_until_idle(pid: int, since: float, window: float = 0.1, limit: float = 5.0) -> float | None:
    """Seconds from ``since`` to the end of the first ``window`` in which the server used < 5% of a core."""
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    used, at = cpu(), time.perf_counter()
    while at - since < limit:
        await asyncio.sleep(window)
        now_used, now = cpu(), time.perf_counter()
        if (now_used - used) / (now - at) < 0.05:
            return now - since
        used, at = now_used, now
    return None


async def scrape(port: int) -> dict[str, float]:
    """The server's /metrics, samples summed over labels other than ``reason``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    await writer.drain()
    text = (await reader.read()).decode().split("\r\n\r\n", 1)[1]
    writer.close()
    samples: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        found = re.match(r"^(\w+)(?:\{([^}]*)\})? (\S+)$", line)
        if found and found.group(1).startswith(("retrain_serving_", "request_predict_seconds")):
            reason = re.search(r'reason="(\w+)"', found.group(2) or "")
            key = found.group(1) + (f":{reason.group(1)}" if reason else "")
            samples[key] += float(found.group(3))
    return samples


def stage_split(before: dict[str, float], after: dict[str, float]) -> str:
    """Per-stage means over a phase, from the difference of two scrapes."""

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    def mean(name: str) -> float:
        count = delta(f"{name}_count")
        return delta(f"{name}_sum") / count if count else 0.0

    batches = delta("retrain_serving_batch_rows_count")
    dropped = {
        key.split(":", 1)[1]: delta(key) for key in after if key.startswith("retrain_serving_dropped_total:")
    }
    wait = mean("retrain_serving_queue_wait_seconds") * 1000
    scoring = mean("retrain_serving_scoring_seconds") * 1000
    return (
        f"server side: {batches:.0f} batches, {mean('retrain_serving_batch_requests'):.1f} requests and "
        f"{mean('retrain_serving_batch_rows'):.1f} rows per batch; queue wait {wait:.0f} ms per request, "
        f"scoring {scoring:.0f} ms per batch, "
        f"KServe predict {mean('request_predict_seconds') * 1000:.0f} ms per request; dropped: "
        + (", ".join(f"{k} {v:.0f}" for k, v in sorted(dropped.items()) if v) or "none")
    )


def ms(values: list[float], percentile: int) -> str:
    if len(values) < 2:
        return "n/a"
    return f"{statistics.quantiles(values, n=100)[percentile - 1] * 1000:.0f} ms"


def wait_ready(port: int, server: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    import http.client

    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"retrain serve exited with {server.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/v2/health/ready")
            if connection.getresponse().status == 200:
                return
        time.sleep(0.5)
    raise SystemExit(f"retrain serve was not ready after {timeout:.0f}s")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
