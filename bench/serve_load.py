"""Load on `sportsdet serve` against `sportsdet predict` on the same photos, in the same run.

    python bench/serve_load.py            # full: 60 s per rate, 30 s per closed-loop level, 10 min soak
    python bench/serve_load.py --quick    # a few seconds each (for development; say so in results)

1. Reference: `Predictor.predict_sources` (what `sportsdet predict` runs) over the photos, model
   loaded once: images/s; measured at the start and again right before each closed-loop level.
2. The server in its own process (`python -m sportsdet serve`, built-in model, 127.0.0.1) and a
   lean asyncio HTTP/1.1 client here (keep-alive connections, pre-built requests with raw JPEG
   bodies, so the client costs little of the 2 shared cores). Like a well-behaved HTTP client
   (httpcore, browsers) it never sends on a kept-alive connection the server has already closed
   (uvicorn closes one idle for 5 s); sending there fails in the client, not in the service:
   a. open loop: single-photo requests arriving at fixed rates, whatever the answers do; latency
      counted from the scheduled arrival (no coordinated omission): p50/p99, errors by status;
   b. closed loop: 1, 8, 32 clients sending photos back to back: throughput and latency;
   c. the server's peak memory (VmHWM) and a soak (8 clients) sampling its RSS for growth.
Writes bench/results/serve_load.json and its section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from results_file import write_results  # noqa: E402

START, END = "<!-- serve-load:start -->", "<!-- serve-load:end -->"
# ../shared/data/sports100 beside the checkout (or beside a folder above it, for worktrees).
DATA = next(
    (d / "shared/data/sports100" for d in ROOT.parents if (d / "shared/data/sports100").is_dir()),
    ROOT.parent / "shared/data/sports100",
)


def log(message: str) -> None:
    print(
        f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {message}", file=sys.stderr, flush=True
    )


def photos(limit: int) -> list[Path]:
    folder = DATA / "test"
    if not folder.is_dir():
        folder = Path(os.environ.get("SPORTSDET_SPORTS100", "")) / "test"
    found = sorted(folder.glob("*/*.jpg"))
    if not found:
        sys.exit(f"no sports100 test photos under {folder}; set SPORTSDET_SPORTS100")
    return found[:limit]


# ----------------------------------------------------------------------------- reference


def predict_reference(paths: list[Path], seconds: float) -> dict[str, Any]:
    """`sportsdet predict`'s pipeline over the photos, repeated for at least `seconds`."""
    from sportsdet.bundle import builtin_bundle_path
    from sportsdet.predict import Predictor, to_jsonl

    predictor = Predictor(builtin_bundle_path())
    inputs = [str(p) for p in paths]
    for result in predictor.predict_sources(inputs[:16]):  # warm-up
        to_jsonl(result)
    done, start = 0, time.perf_counter()
    while True:
        for result in predictor.predict_sources(inputs):
            assert result.ok, result.error
            to_jsonl(result)
            done += 1
        if time.perf_counter() - start >= seconds:
            break
    elapsed = time.perf_counter() - start
    return {"images_per_s": done / elapsed, "images": done, "seconds": elapsed}


# ----------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, extra: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("SPORTSDET_API_KEY", None)
    command = [sys.executable, "-m", "sportsdet", "serve", "--port", str(port), *extra]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.1)
        if process.poll() is not None:
            sys.exit(f"server failed to start: {process.stderr.read().decode()[-2000:]}")
    sys.exit("server did not become ready in 60 s")


def memory_kb(pid: int) -> dict[str, int]:
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmRSS", "VmHWM")):
                key, value = line.split(":")
                values[key] = int(value.split()[0])
    return values


# ----------------------------------------------------------------------------- a lean client


def build_requests(paths: list[Path], port: int) -> list[bytes]:
    out = []
    for path in paths:
        body = path.read_bytes()
        head = (
            f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        out.append(head + body)
    return out


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> int:
        """Send one pre-built request; the response status (body read and dropped)."""
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()

    @property
    def alive(self) -> bool:
        """False once the server has closed its end (its idle keep-alive timeout)."""
        return not (self.reader.at_eof() or self.writer.is_closing())


def take_idle(idle: list[Connection]) -> Connection | None:
    """The most recently used idle connection that is still open; closed ones are dropped."""
    while idle:
        conn = idle.pop()
        if conn.alive:
            return conn
        conn.close()
    return None


def summary(latencies: list[float], statuses: Counter, seconds: float) -> dict[str, Any]:
    values = sorted(lat for lat, _ in latencies) or [float("nan")]
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) >= 2 else values * 99
    return {
        "requests": len(latencies),
        "per_s": len(latencies) / seconds,
        "ok_per_s": statuses.get(200, 0) / seconds,
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))},
    }


async def open_loop(port: int, requests: list[bytes], rate: float, seconds: float) -> dict[str, Any]:
    idle: list[Connection] = []
    latencies: list[tuple[float, int]] = []
    statuses: Counter = Counter()
    loop = asyncio.get_running_loop()
    start = loop.time()
    total = int(rate * seconds)

    async def one(index: int, due: float) -> None:
        conn = take_idle(idle) or await Connection.open(port)
        try:
            status = await conn.request(requests[index % len(requests)])
        except (OSError, asyncio.IncompleteReadError):
            statuses["conn-error"] += 1
            conn.close()
            return
        latencies.append((loop.time() - due, status))
        statuses[status] += 1
        idle.append(conn)

    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    for conn in idle:
        conn.close()
    return {"rate": rate, **summary(latencies, statuses, loop.time() - start)}


async def closed_loop(port: int, requests: list[bytes], clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[tuple[float, int]] = []
    statuses: Counter = Counter()
    loop = asyncio.get_running_loop()
    stop = loop.time() + seconds

    async def client(offset: int) -> None:
        conn = await Connection.open(port)
        i = offset
        while loop.time() < stop:
            sent = loop.time()
            status = await conn.request(requests[i % len(requests)])
            latencies.append((loop.time() - sent, status))
            statuses[status] += 1
            if status != 200:
                await asyncio.sleep(0.05)  # what a polite client does on 429/503
            i += clients
        conn.close()

    start = loop.time()
    await asyncio.gather(*(client(k) for k in range(clients)))
    return {"clients": clients, **summary(latencies, statuses, loop.time() - start)}


async def soak(port: int, requests: list[bytes], pid: int, seconds: float, every: float) -> dict[str, Any]:
    samples: list[tuple[float, int]] = []
    start = time.monotonic()

    async def sampler() -> None:
        while time.monotonic() - start < seconds:
            samples.append((time.monotonic() - start, memory_kb(pid)["VmRSS"]))
            await asyncio.sleep(every)

    result, _ = await asyncio.gather(closed_loop(port, requests, 8, seconds), sampler())
    rss = [kb for _, kb in samples]
    third = max(1, len(rss) // 3)
    first, last = statistics.median(rss[:third]), statistics.median(rss[-third:])
    return {
        **result,
        "seconds": seconds,
        "rss_first_mb": first / 1024,
        "rss_last_mb": last / 1024,
        "growth_pct": (last - first) / first * 100,
        "samples": samples,
    }


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="seconds instead of minutes (development)")
    parser.add_argument("--photos", type=int, default=499, help="sports100 test photos to use")
    parser.add_argument("--rates", default="25,50,75", help="open-loop arrival rates, requests/s")
    parser.add_argument("--clients", default="1,8,32", help="closed-loop concurrency levels")
    parser.add_argument("--open-seconds", type=float, default=None)
    parser.add_argument("--closed-seconds", type=float, default=None)
    parser.add_argument("--soak-seconds", type=float, default=None)
    parser.add_argument(
        "--server-args", default="", help="extra `sportsdet serve` options, e.g. '--max-batch 4'"
    )
    args = parser.parse_args()
    open_s = args.open_seconds or (6 if args.quick else 60)
    closed_s = args.closed_seconds or (6 if args.quick else 30)
    soak_s = args.soak_seconds or (20 if args.quick else 600)
    load_before = os.getloadavg()
    paths = photos(args.photos)
    log(f"{len(paths)} photos; reference: sportsdet predict's pipeline")
    reference = predict_reference(paths, closed_s)
    log(f"predict: {reference['images_per_s']:.1f} images/s")

    port = free_port()
    server_args = args.server_args.split()
    server = start_server(port, server_args)
    requests = build_requests(paths, port)
    try:
        asyncio.run(closed_loop(port, requests, 4, 2))  # warm-up
        opened = []
        for rate in (float(r) for r in args.rates.split(",")):
            opened.append(asyncio.run(open_loop(port, requests, rate, open_s)))
            log(
                f"open {rate:g}/s: p50 {opened[-1]['p50_ms']:.1f} ms p99 {opened[-1]['p99_ms']:.1f} ms "
                f"{opened[-1]['statuses']}"
            )
        closed = []
        for clients in (int(c) for c in args.clients.split(",")):
            # predict again right before each level: the shared machine's load drifts, and a
            # reference from minutes earlier would compare different conditions.
            before = predict_reference(paths, closed_s)["images_per_s"]
            closed.append({**asyncio.run(closed_loop(port, requests, clients, closed_s)), "predict": before})
            log(f"predict just before: {before:.1f} images/s")
            log(
                f"closed {clients}: {closed[-1]['ok_per_s']:.1f}/s p99 {closed[-1]['p99_ms']:.1f} ms "
                f"{closed[-1]['statuses']}"
            )
        peak = memory_kb(server.pid)["VmHWM"] / 1024
        soaked = asyncio.run(soak(port, requests, server.pid, soak_s, max(1.0, soak_s / 60)))
        log(
            f"soak {soak_s:g} s: RSS {soaked['rss_first_mb']:.0f} -> {soaked['rss_last_mb']:.0f} MB "
            f"({soaked['growth_pct']:+.1f}%)"
        )
        peak = max(peak, memory_kb(server.pid)["VmHWM"] / 1024)
    finally:
        server.terminate()
        server.wait(30)
    from sportsdet.bundle import builtin_bundle_path, load_bundle

    bundle = load_bundle(builtin_bundle_path(), verify_weights=False)
    payload = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "model": f"{bundle.model_name}, {bundle.preprocessing.input_size} px",
        "quick": args.quick,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "photos": len(paths),
        "server_args": server_args,
        "reference": reference,
        "open_loop": opened,
        "closed_loop": closed,
        "peak_rss_mb": peak,
        "soak": soaked,
    }
    section = render(payload, open_s, closed_s, soak_s)
    print(section)
    write_results(payload, ROOT / "bench" / "results" / "serve_load.json", section, START, END)


QUICK_NOTE = " - QUICK run (short durations, development only; the full run is pending)"


def _fmt_statuses(statuses: dict[str, int]) -> str:
    bad = {k: v for k, v in statuses.items() if k != "200"}
    return ", ".join(f"{v} x {k}" for k, v in bad.items()) or "none"


def render(p: dict[str, Any], open_s: float, closed_s: float, soak_s: float) -> str:
    ref = p["reference"]["images_per_s"]
    lines = [
        START,
        "## HTTP service under load (bench/serve_load.py)",
        "",
        f"Run {p['when']} on {p['machine']}{QUICK_NOTE if p['quick'] else ''}; "
        f"load average (1, 5, 15 min) before: {[round(x, 2) for x in p['load_before']]}, "
        f"after: {[round(x, 2) for x in p['load_after']]}.",
        f"Built-in model of the time ({p.get('model', 'not recorded')}), {p['photos']} sports100 test "
        "photos, one photo per request as raw JPEG bytes; "
        f"server `sportsdet serve {' '.join(p['server_args'])}` in its own process on 127.0.0.1, "
        "client a lean asyncio HTTP/1.1 client with keep-alive in the benchmark process (same 2 cores).",
        "Reference in the same run: `sportsdet predict`'s pipeline (Predictor.predict_sources, model "
        f"loaded once) on the same photos: **{ref:.1f} images/s** at the start, and again right before "
        "each closed-loop level (the % column compares with that one).",
        "",
        f"Open loop ({open_s:g} s per rate; latency from the scheduled arrival):",
        "",
        "| arrivals/s | answered/s | p50 ms | p99 ms | errors |",
        "|---:|---:|---:|---:|---|",
    ]
    for row in p["open_loop"]:
        lines.append(
            f"| {row['rate']:g} | {row['ok_per_s']:.1f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
            f"{_fmt_statuses(row['statuses'])} |"
        )
    lines += [
        "",
        f"Closed loop ({closed_s:g} s per level; clients send back to back):",
        "",
        "| clients | images/s | predict just before, images/s | % of predict | p50 ms | p99 ms | errors |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in p["closed_loop"]:
        lines.append(
            f"| {row['clients']} | {row['ok_per_s']:.1f} | {row['predict']:.1f} | "
            f"{row['ok_per_s'] / row['predict'] * 100:.0f}% | "
            f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {_fmt_statuses(row['statuses'])} |"
        )
    s = p["soak"]
    lines += [
        "",
        f"Server peak memory (VmHWM): {p['peak_rss_mb']:.0f} MB. Soak ({soak_s:g} s, 8 clients, "
        f"{s['ok_per_s']:.1f} images/s, errors: {_fmt_statuses(s['statuses'])}): "
        f"RSS {s['rss_first_mb']:.0f} MB "
        f"(first third, median) -> {s['rss_last_mb']:.0f} MB (last third): {s['growth_pct']:+.1f}%.",
        "",
        "Goals (issue 14): p99 <= 50 ms at 50/s open loop; 32 clients >= 80% of predict; no errors "
        "below saturation, only 429/503 above; soak growth < 5%.",
        END,
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
