"""`kit generate` end to end against a bare AsyncOpenAI + semaphore loop, at concurrency C.

A loopback server in its own process answers every request after a fixed latency L with a hand-written
reference conversation that passes generate's checks (tests/fake_openai.py --reply conversation), so
each item is one request, accepted at the first ask. The limit is C / L requests per second.

In the same run, at C = 16 and 64, each round times:
- the real command, `python -m kit generate --num N --workers C --endpoint URL` in a subprocess, with
  its defaults: reply cache on (a fresh folder each round, so every reply is asked for), progress bar
  on (to a file), journal, content rules, scrubbing, the output rewritten at the end, the manifest;
- the bare loop (this file run as a script), what anyone would write by hand: the same N request
  bodies, AsyncOpenAI's `chat.completions.create` under an asyncio.Semaphore(C), each reply's JSON
  parsed and written as one line to a JSONL file.

Start-up is left out the same way for both: a run is timed from its first request reaching the
server (the server lists arrival times on time.monotonic(), one clock for all processes) to its
process's exit, so interpreter start, imports and building the requests do not count, while
everything after the first request does (for generate: the final rewrite and manifest; for both: the
connections opened, exit). N = 20*C (4 s at the limit). Each figure is the best of a few rounds, the
two kinds taking turns (the machine is shared; the best round is the one least disturbed).

Run: make bench   (or: python -m pytest tests/bench/test_bench_generate.py -s)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LATENCY = 0.2
CONCURRENCIES = (16, 64)
ITEMS_PER_SLOT = 20
ROUNDS = 3
MODEL = "fake-model"


@pytest.fixture(scope="module")
def server_url():
    script = ROOT / "tests" / "fake_openai.py"
    proc = subprocess.Popen([sys.executable, str(script), "--latency", str(LATENCY), "--reply", "conversation"],
                            stdout=subprocess.PIPE, text=True)
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def first_arrival(url: str, since: float, expected: int) -> float:
    """When the first chat request after `since` reached the server; checks that `expected` did."""
    with urllib.request.urlopen(f"{url}/fake/arrivals") as response:
        arrivals = [t for t in json.load(response)["monotonic"] if t >= since]
    assert len(arrivals) == expected, f"{len(arrivals)} requests reached the server, expected {expected}"
    return min(arrivals)


def generate_round(url: str, concurrency: int, n: int, folder: Path) -> float:
    out = folder / "conversations.jsonl"
    command = [sys.executable, "-m", "kit", "generate", "--num", str(n), "--workers", str(concurrency),
               "--output", str(out), "--endpoint", url, "--model", MODEL]
    env = {**os.environ, "KIT_CACHE_DIR": str(folder / "cache"), "KIT_NO_DOTENV": "1"}
    since = time.monotonic()
    with open(folder / "progress.txt", "w") as progress:
        done = subprocess.run(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=progress, text=True,
                              timeout=600)
    end = time.monotonic()
    assert done.returncode == 0, (folder / "progress.txt").read_text()[-2000:]
    assert done.stdout.startswith(f"complete: {n} accepted, 0 rejected"), done.stdout
    return end - first_arrival(url, since, n)


def bare_round(url: str, concurrency: int, n: int, folder: Path) -> float:
    out = folder / "bare.jsonl"
    since = time.monotonic()
    subprocess.run([sys.executable, __file__, url, str(concurrency), str(n), str(out)], cwd=ROOT, check=True,
                   timeout=600)
    end = time.monotonic()
    assert sum(1 for _ in open(out, encoding="utf-8")) == n
    return end - first_arrival(url, since, n)


def request_bodies(n: int) -> list[dict]:
    """What a generate run (seed 0, recipe v2, default settings) sends for indices 0..n-1 at the first ask."""
    from kit.generation.generate import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, api_seed
    from kit.generation.prompts import SCHEMA_NAME, conversation_schema, render_prompt
    from kit.generation.sampling import load_dimensions, sample_elements
    from kit.llm.client import response_format

    dims = load_dimensions()
    form = response_format(conversation_schema(grammar=False), SCHEMA_NAME, "openai")
    return [{"messages": [{"role": "user", "content": render_prompt(sample_elements("v2", 0, i, dims))}],
             "response_format": form, "temperature": DEFAULT_TEMPERATURE, "max_tokens": DEFAULT_MAX_TOKENS,
             "seed": api_seed(0, i, 0)} for i in range(n)]


async def bare_loop(url: str, concurrency: int, bodies: list[dict], out: Path) -> None:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="no-key", max_retries=0)
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int, body: dict) -> None:
        async with gate:
            reply = await client.chat.completions.create(model=MODEL, **body)
        messages = json.loads(reply.choices[0].message.content)["messages"]
        fh.write(json.dumps({"index": index, "messages": messages}, ensure_ascii=False) + "\n")

    with open(out, "w", encoding="utf-8") as fh:
        try:
            await asyncio.gather(*(one(i, body) for i, body in enumerate(bodies)))
        finally:
            await client.close()


def test_generate_throughput(server_url, tmp_path):
    rows = []
    for c in CONCURRENCIES:
        n = ITEMS_PER_SLOT * c
        times = {"generate": [], "bare": []}
        for r in range(ROUNDS):
            for kind, run in (("generate", generate_round), ("bare", bare_round)):
                folder = tmp_path / f"c{c}-{kind}-{r}"
                folder.mkdir()
                times[kind].append(run(server_url, c, n, folder))
        rows.append((c, c / LATENCY, n / min(times["generate"]), n / min(times["bare"])))

    print(f"\nkit generate end to end, loopback server latency L = {LATENCY * 1000:.0f} ms, one request per item "
          f"(best of {ROUNDS} rounds, {ITEMS_PER_SLOT}*C items each, first request to process exit)")
    print(f"{'C':>4} {'limit C/L':>10} {'generate items/s':>18} {'bare loop items/s':>19} {'generate/bare':>14}")
    for c, limit, gen_rate, bare_rate in rows:
        print(f"{c:>4} {limit:>10.1f} {gen_rate:>10.1f} ({gen_rate / limit:4.0%}) {bare_rate:>11.1f} ({bare_rate / limit:4.0%})"
              f" {gen_rate / bare_rate:>13.2f}x   (needs >= 1.00x)")
    for c, limit, gen_rate, bare_rate in rows:
        assert gen_rate >= bare_rate, f"generate slower than the bare loop at C={c}: {gen_rate:.1f} < {bare_rate:.1f} items/s"


def main() -> None:
    """The bare loop, in its own process as generate is: URL C N OUT."""
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("concurrency", type=int)
    parser.add_argument("n", type=int)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    bodies = request_bodies(args.n)
    asyncio.run(bare_loop(args.url, args.concurrency, bodies, args.out))


if __name__ == "__main__":
    main()
