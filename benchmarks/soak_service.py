"""Soak test of the web service: 32 HTTP clients and 50 WebSocket clients for 10 minutes, with a mix of
good, bad and huge images.

Starts ``python -m facial_emotion serve`` (its own process) and runs every client in this one:
- HTTP: each client posts, one after the other, a good photo (70 %: justin.jpg, two_people.jpg),
  a bad one (20 %: truncated, noise, text, a forged PNG header of 100,000 x 100,000) or a huge one
  (10 %: an 8000 px JPEG of about 1 MB). Good and huge must answer 200, bad a JSON 4xx; anything else
  (a 5xx, a 503 or 504, a dropped connection) is an unexpected error.
- WebSocket: each client streams frames of woman2.mp4 to /v1/stream at 5 frames/s and reads replies.
Every second the server's RSS is sampled. Reports unexpected errors (must be 0), p50/p99 latency per
kind, and RSS over time; the growth after warm-up (median of the last 10 % of the run over the median
of the 10 % right after the first quarter) must be <= 10 %. Writes benchmarks/results/soak_service.json
and a plot beside it (soak_service.png).

    python benchmarks/soak_service.py                 # the full soak: 10 minutes
    python benchmarks/soak_service.py --duration 60   # a quick check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import httpx
from bench_machine import describe_machine, write_results
from load_service import SHARED, free_port, percentile, rss_mb, start_server, stop_server
from memory_service import huge_jpeg

REPO = Path(__file__).resolve().parents[1]
GROWTH_LIMIT = 0.10
BAD_STATUSES = {400, 413, 415, 422}


def bomb_png_header() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def inputs() -> dict[str, list[tuple[str, bytes]]]:
    media = SHARED / "media"
    good = [(n, (media / n).read_bytes()) for n in ("justin.jpg", "two_people.jpg")]
    justin = good[0][1]
    rng = random.Random(0)
    bad = [
        ("truncated.jpg", justin[: len(justin) // 3]),
        ("noise.jpg", b"\xff\xd8\xff" + rng.randbytes(20_000)),
        ("text.txt", b"hello, world " * 100),
        ("bomb.png", bomb_png_header()),
        ("empty.jpg", b""),
    ]
    return {"good": good, "bad": bad, "huge": [("huge.jpg", huge_jpeg())]}


def video_frames(n: int = 60) -> list[bytes]:
    cap = cv2.VideoCapture(str(SHARED / "media" / "woman2.mp4"))
    frames = []
    while len(frames) < n:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
    cap.release()
    return frames


class Soak:
    def __init__(self, port: int, duration: float, pid: int):
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/v1/stream"
        self.pid = pid
        self.t0 = time.perf_counter()
        self.end = self.t0 + duration
        self.latency: dict[str, list[float]] = {"good": [], "bad": [], "huge": [], "ws": []}
        self.statuses: Counter = Counter()
        self.unexpected: list[str] = []
        self.rss: list[tuple[float, float]] = []
        self.ws_replies: Counter = Counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    async def http_client(self, seed: int, data: dict[str, list[tuple[str, bytes]]]) -> None:
        rng = random.Random(seed)
        async with httpx.AsyncClient(base_url=self.url, timeout=120) as http:
            while time.perf_counter() < self.end:
                roll = rng.random()
                kind = "good" if roll < 0.7 else "bad" if roll < 0.9 else "huge"
                name, body = rng.choice(data[kind])
                t = time.perf_counter()
                try:
                    if rng.random() < 0.5:
                        r = await http.post("/v1/analyze", files={"file": (name, body, "image/jpeg")})
                    else:
                        r = await http.post(
                            "/v1/analyze", content=body, headers={"content-type": "image/jpeg"}
                        )
                except httpx.HTTPError as e:
                    self.unexpected.append(f"{kind} {name}: {type(e).__name__}: {e}")
                    continue
                self.latency[kind].append(time.perf_counter() - t)
                self.statuses[f"{kind} {r.status_code}"] += 1
                expected = r.status_code in BAD_STATUSES if kind == "bad" else r.status_code == 200
                if not expected or not r.headers.get("content-type", "").startswith("application/json"):
                    self.unexpected.append(f"{kind} {name}: HTTP {r.status_code} {r.text[:200]}")

    async def ws_client(self, seed: int, frames: list[bytes]) -> None:
        import websockets

        rng = random.Random(seed)
        await asyncio.sleep(rng.random())  # not all at the same instant
        try:
            async with websockets.connect(self.ws_url, max_size=None) as ws:
                i = rng.randrange(len(frames))

                async def receive() -> None:
                    async for message in ws:
                        reply = json.loads(message)
                        self.ws_replies[reply.get("type", "?")] += 1
                        if reply.get("type") == "result":
                            self.latency["ws"].append(reply["latency_ms"] / 1000)
                        elif reply.get("type") != "event":  # events: a face's emotion changed
                            self.unexpected.append(f"ws: {reply}")

                reader = asyncio.create_task(receive())
                while time.perf_counter() < self.end and not reader.done():
                    await ws.send(frames[i % len(frames)])
                    i += 1
                    await asyncio.sleep(0.2)
                reader.cancel()
        except Exception as e:  # a refused or dropped connection
            self.unexpected.append(f"ws: {type(e).__name__}: {e}")

    async def sample_rss(self) -> None:
        while time.perf_counter() < self.end:
            self.rss.append((round(self.elapsed(), 1), round(rss_mb(self.pid), 1)))
            await asyncio.sleep(1.0)

    async def run(
        self,
        http_clients: int,
        ws_clients: int,
        data: dict[str, list[tuple[str, bytes]]],
        frames: list[bytes],
    ) -> None:
        await asyncio.gather(
            self.sample_rss(),
            *(self.http_client(i, data) for i in range(http_clients)),
            *(self.ws_client(1000 + i, frames) for i in range(ws_clients)),
        )


def rss_growth(rss: list[tuple[float, float]], duration: float) -> tuple[float, float, float]:
    """(baseline: median RSS just after warm-up, end: median of the last 10 %, growth)."""
    warm = [m for t, m in rss if 0.25 * duration <= t < 0.35 * duration] or [rss[len(rss) // 4][1]]
    last = [m for t, m in rss if t >= 0.9 * duration] or [rss[-1][1]]
    base, end = statistics.median(warm), statistics.median(last)
    return base, end, end / base - 1


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    t, mb = zip(*result["rss_mb_over_time"], strict=True)
    ax.plot(t, mb, color="#1f77b4", label="server RSS (MB)")
    ax.axvspan(0, 0.25 * result["duration_s"], color="#dddddd", label="warm-up")
    ax.axhline(result["rss_mb_baseline"] * (1 + GROWTH_LIMIT), color="#d62728", ls="--", lw=1, label="+10 %")
    ax.set_xlabel("seconds")
    ax.set_ylabel("MB")
    ax.set_ylim(0, max(mb) * 1.3)
    lat = result["latency_ms"]
    ax.set_title(
        f"soak: {result['http_clients']} HTTP + {result['ws_clients']} WebSocket clients, "
        f"{result['requests']} requests, {result['unexpected_errors']} unexpected errors\n"
        f"p50/p99 ms: good {lat['good']['p50']:.0f}/{lat['good']['p99']:.0f}, "
        f"huge {lat['huge']['p50']:.0f}/{lat['huge']['p99']:.0f}, ws {lat['ws']['p50']:.0f}/{lat['ws']['p99']:.0f}",
        fontsize=9,
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print(f"wrote {path}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=600, help="seconds (default 600 = 10 minutes)")
    ap.add_argument("--http-clients", type=int, default=32)
    ap.add_argument("--ws-clients", type=int, default=50)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "soak_service.json")
    args = ap.parse_args()
    if not (SHARED / "media" / "justin.jpg").is_file():
        raise SystemExit(f"no media in {SHARED / 'media'} (set FACIAL_EMOTION_SHARED)")
    data, frames = inputs(), video_frames()  # made before the clock starts
    port = free_port()
    proc = start_server(port)
    try:
        soak = Soak(port, args.duration, proc.pid)
        asyncio.run(soak.run(args.http_clients, args.ws_clients, data, frames))
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).json()
    finally:
        stop_server(proc)
    base, end, growth = rss_growth(soak.rss, args.duration)

    def stats(values: list[float]) -> dict[str, float | int]:
        if not values:
            return {"n": 0, "p50": float("nan"), "p99": float("nan")}
        return {
            "n": len(values),
            "p50": round(percentile(values, 50) * 1000, 1),
            "p99": round(percentile(values, 99) * 1000, 1),
        }

    result = {
        "duration_s": args.duration,
        "http_clients": args.http_clients,
        "ws_clients": args.ws_clients,
        "requests": sum(len(v) for k, v in soak.latency.items() if k != "ws"),
        "ws_replies": dict(soak.ws_replies),
        "statuses": dict(sorted(soak.statuses.items())),
        "unexpected_errors": len(soak.unexpected),
        "unexpected_samples": soak.unexpected[:10],
        "latency_ms": {k: stats(v) for k, v in soak.latency.items()},
        "rss_mb_baseline": base,
        "rss_mb_end": end,
        "rss_growth_after_warmup": round(growth, 4),
        "rss_flat": growth <= GROWTH_LIMIT,
        "rss_mb_max": max(m for _, m in soak.rss),
        "rss_mb_over_time": soak.rss,
        "healthy_after": health.get("status") == "ok",
        "machine": describe_machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    lat = result["latency_ms"]
    print(
        f"{args.duration:g} s, {args.http_clients} HTTP + {args.ws_clients} WebSocket clients: "
        f"{result['requests']} requests ({result['statuses']}), {sum(soak.ws_replies.values())} stream replies; "
        f"unexpected errors {result['unexpected_errors']}; p50/p99 ms good {lat['good']['p50']}/{lat['good']['p99']}, "
        f"bad {lat['bad']['p50']}/{lat['bad']['p99']}, huge {lat['huge']['p50']}/{lat['huge']['p99']}, "
        f"ws {lat['ws']['p50']}/{lat['ws']['p99']}; RSS {base:.0f} -> {end:.0f} MB after warm-up "
        f"({growth:+.1%}), max {result['rss_mb_max']:.0f} MB"
    )
    for e in result["unexpected_samples"]:
        print("  unexpected:", e)
    write_results(args.out, result)
    plot(result, args.out.with_suffix(".png"))
    return 0 if result["unexpected_errors"] == 0 and result["rss_flat"] and result["healthy_after"] else 1


if __name__ == "__main__":
    sys.exit(main())
