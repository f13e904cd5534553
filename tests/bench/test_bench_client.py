"""Client throughput against a loopback server with fixed latency L, at concurrency C.

The limit is C / L requests per second. In the same run we measure three clients on the same server:
kit's LLMClient, the bare `openai` AsyncOpenAI client under an asyncio.Semaphore (what anyone would
write by hand), and the seeds' way (4 threads making blocking calls). The server runs in its own
process so its work does not share the clients' interpreter. Each round first sends C requests to
open the connections (a long generation run has them open), then times 4*C more. Each figure is the
best of a few rounds (the machine is shared; the best round is the one least disturbed).

Where the time goes (cProfile, C=64): with openai's default httpx transport most of a request's CPU
is spent in the HTTP stack (httpx, httpcore's pool re-checking every idle connection, anyio, h11)
and in building typed request/response objects; the kit posts the JSON body over aiohttp itself and
reads the JSON reply itself, which cuts CPU per request several times. The kit's own code is ~0.1 ms.

Run: make bench   (or: python -m pytest tests/bench/test_bench_client.py -s)
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from kit.llm.endpoints import Endpoint
from kit.llm.client import LLMClient

LATENCY = 0.2
CONCURRENCIES = (16, 64)
REQUESTS_PER_SLOT = 4
ROUNDS = 3
SEED_WORKERS = 4
MODEL = "fake-model"


@pytest.fixture(scope="module")
def server_url():
    script = Path(__file__).resolve().parents[1] / "fake_openai.py"
    proc = subprocess.Popen([sys.executable, str(script), "--latency", str(LATENCY)], stdout=subprocess.PIPE, text=True)
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def messages(i: int) -> list[dict]:
    return [{"role": "user", "content": f"question {i}"}]


def timed(run_batch) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one awaited batch."""

    async def main():
        wall, cpu = time.perf_counter(), time.process_time()
        await run_batch()
        return time.perf_counter() - wall, time.process_time() - cpu

    return main()


async def kit_round(url: str, concurrency: int, n: int) -> tuple[float, float]:
    client = LLMClient([Endpoint(url, MODEL)], concurrency=concurrency)

    async def batch(count: int):
        replies = await asyncio.gather(*(client.complete(messages(i)) for i in range(count)))
        assert all(r.text for r in replies)

    try:
        await batch(concurrency)  # warm-up: open the connections, as a long run has them open
        return await timed(lambda: batch(n))
    finally:
        await client.aclose()


async def bare_round(url: str, concurrency: int, n: int) -> tuple[float, float]:
    client = openai.AsyncOpenAI(base_url=url, api_key="no-key", max_retries=0)
    gate = asyncio.Semaphore(concurrency)

    async def one(i):
        async with gate:
            return await client.chat.completions.create(model=MODEL, messages=messages(i))

    async def batch(count: int):
        replies = await asyncio.gather(*(one(i) for i in range(count)))
        assert all(r.choices[0].message.content for r in replies)

    try:
        await batch(concurrency)
        return await timed(lambda: batch(n))
    finally:
        await client.close()


def seeds_round(url: str, n: int) -> tuple[float, float]:
    """The seed script's structure: a pool of 4 threads, each making one blocking POST per item."""
    with httpx.Client(timeout=30) as http:
        def one(i):
            response = http.post(f"{url}/chat/completions", json={"model": MODEL, "messages": messages(i)})
            return response.json()["choices"][0]["message"]["content"]

        with ThreadPoolExecutor(max_workers=SEED_WORKERS) as pool:
            assert all(pool.map(one, range(SEED_WORKERS)))  # warm-up
            wall, cpu = time.perf_counter(), time.process_time()
            assert all(pool.map(one, range(n)))
            return time.perf_counter() - wall, time.process_time() - cpu


def best(rounds: int, run, n: int) -> tuple[float, float]:
    """(requests/s, CPU ms per request) of the fastest round."""
    wall, cpu = min(run() for _ in range(rounds))
    return n / wall, 1000 * cpu / n


def test_client_throughput(server_url):
    rows = []
    for c in CONCURRENCIES:
        n = REQUESTS_PER_SLOT * c
        limit = c / LATENCY
        kit_rps, kit_cpu = best(ROUNDS, lambda: asyncio.run(kit_round(server_url, c, n)), n)
        bare_rps, bare_cpu = best(ROUNDS, lambda: asyncio.run(bare_round(server_url, c, n)), n)
        rows.append((c, limit, kit_rps, bare_rps, kit_cpu, bare_cpu))
    n_seed = 8 * SEED_WORKERS
    seeds_rps, _ = best(1, lambda: seeds_round(server_url, n_seed), n_seed)

    print(f"\nclient throughput, loopback server latency L = {LATENCY * 1000:.0f} ms "
          f"(best of {ROUNDS} rounds, {REQUESTS_PER_SLOT}*C requests each after C to warm up)")
    print(f"{'C':>4} {'limit C/L':>10} {'kit req/s':>16} {'bare openai':>16} {'kit CPU/req':>12} {'bare CPU/req':>13}")
    for c, limit, kit_rps, bare_rps, kit_cpu, bare_cpu in rows:
        print(f"{c:>4} {limit:>10.1f} {kit_rps:>9.1f} ({kit_rps / limit:4.0%}) {bare_rps:>9.1f} ({bare_rps / limit:4.0%})"
              f" {kit_cpu:>9.2f} ms {bare_cpu:>10.2f} ms")
    seed_limit = SEED_WORKERS / LATENCY
    print(f"seeds' way ({SEED_WORKERS} threads, blocking calls): {seeds_rps:.1f} req/s "
          f"(limit {seed_limit:.1f}, {seeds_rps / seed_limit:.0%})")

    c16 = rows[0]
    assert c16[2] >= 0.9 * c16[1], f"kit reached {c16[2]:.1f} req/s at C=16, under 90% of {c16[1]:.0f}"
    for c, limit, kit_rps, bare_rps, *_ in rows:
        assert kit_rps >= 0.95 * bare_rps, f"kit slower than the bare client at C={c}: {kit_rps:.1f} < {bare_rps:.1f}"
