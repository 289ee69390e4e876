"""Load test of the web service: N requests of a real face photo from 32 concurrent clients.

Starts ``python -m facial_emotion serve`` on 127.0.0.1 (the real entry point, in its own process so
the clients do not compete with it for the GIL), then reports errors (must be 0), p50/p99 latency,
requests/s and the server's memory before and after, and writes benchmarks/results/load_service.json.

    python benchmarks/load_service.py --requests 200   # quick check
    python benchmarks/load_service.py                  # 10000 requests
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from bench_machine import describe_machine, write_results

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACIAL_EMOTION_SHARED", REPO.parent / "shared"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def start_server(port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "facial_emotion", "serve", "--host", "127.0.0.1", "--port", str(port)]
    # stderr to a file, not a pipe: a pipe nobody reads would block the server once full.
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (open for the life of the server)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise SystemExit(f"the server exited: {log.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start within 60 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


async def load(
    url: str, image: bytes, requests: int, concurrency: int
) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    errors: list[str] = []
    remaining = requests

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            try:
                r = await http.post(url, content=image, headers={"content-type": "image/jpeg"})
                if r.status_code != 200 or "faces" not in r.json():
                    errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as e:
                errors.append(f"{type(e).__name__}: {e}")
            latencies.append(time.perf_counter() - t0)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        return latencies, errors, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--image", type=Path, default=SHARED / "media" / "justin.jpg", help="a real face photo")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "load_service.json")
    args = ap.parse_args()
    if not args.image.is_file():
        raise SystemExit(f"no image at {args.image} (set FACIAL_EMOTION_SHARED or --image)")
    image = args.image.read_bytes()

    port = free_port()
    proc = start_server(port)
    url = f"http://127.0.0.1:{port}/v1/analyze"
    try:
        warm = httpx.post(url, content=image, headers={"content-type": "image/jpeg"}, timeout=60)
        warm.raise_for_status()
        model = httpx.get(f"http://127.0.0.1:{port}/v1/model").json()
        rss_before = rss_mb(proc.pid)
        latencies, errors, wall = asyncio.run(load(url, image, args.requests, args.concurrency))
        rss_after = rss_mb(proc.pid)
    finally:
        stop_server(proc)

    result = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "image": args.image.name,
        "faces_per_image": len(warm.json()["faces"]),
        "errors": len(errors),
        "error_samples": errors[:5],
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "requests_per_s": round(len(latencies) / wall, 2),
        "wall_s": round(wall, 2),
        "server_rss_mb_before": round(rss_before, 1),
        "server_rss_mb_after": round(rss_after, 1),
        "model": {k: model.get(k) for k in ("name", "arch", "date", "detector")},
        "machine": describe_machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(
        f"{result['requests']} requests, {args.concurrency} clients, {args.image.name}: "
        f"errors {result['errors']}, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"{result['requests_per_s']} req/s, server RSS {result['server_rss_mb_before']} -> "
        f"{result['server_rss_mb_after']} MB"
    )
    for e in result["error_samples"]:
        print("  error:", e)
    write_results(args.out, result)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
