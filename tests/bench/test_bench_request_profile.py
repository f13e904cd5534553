"""Where the embedded model's time goes, per kind of request: prompt reading against writing, and what the
server's prompt cache saves.

One embedded server (one thread, as the kit starts them) answers the kit's real commands in turn: distill
generation, memory session turns, memory eval with the full context, identity probes. llama.cpp logs,
for every request, the prompt tokens it read (after the prefix it reused from the previous request)
and the tokens it wrote, each with its time; this reads that log. Printed per kind: the first request
(a cold cache), the later ones (median), and the reading and writing speeds. Run on idle cores: other
programs' threads are inside the figures. The README's "Where the time of a request goes" is this table.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

from kit.llm.local_server import DEFAULT_CONTEXT, serving

ROOT = Path(__file__).resolve().parents[2]
PROMPT = re.compile(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens")
WRITE = re.compile(r"\seval time =\s*([\d.]+) ms /\s*(\d+) runs")
REUSED = re.compile(r"Llama.generate: (\d+) prefix-match hit")


def _requests(log: str) -> list[dict]:
    """One row per request the log tells of: tokens reused, read and written, and seconds for each. A
    reuse is logged before its request's timings, and not at all when nothing was reused."""
    rows, reused = [], 0
    for line in log.splitlines():
        if hit := REUSED.search(line):
            reused = int(hit.group(1))
        elif read := PROMPT.search(line):
            rows.append({"reused": reused, "read": int(read.group(2)), "read_s": float(read.group(1)) / 1000,
                         "written": 0, "write_s": 0.0})
            reused = 0
        elif rows and (write := WRITE.search(line)):
            rows[-1].update(written=int(write.group(2)), write_s=float(write.group(1)) / 1000)
    return rows


def _kit(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "kit", *args], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_where_the_time_of_a_request_goes(tmp_path):
    kinds: dict[str, list[dict]] = {}
    with serving(None, None, None, DEFAULT_CONTEXT, 1, 120) as (endpoint, _, log_path):
        llm = ["--endpoint", endpoint.base_url, "--model", endpoint.model, "--no-cache", "--no-progress"]
        dataset = tmp_path / "memory.json"
        jobs = {
            "distill (generate --recipe distill)": ["generate", "--recipe", "distill", "--num", "6", "--candidates", "2",
                                                    "--output", str(tmp_path / "distill.jsonl"), *llm],
            "memory turn (memory generate)": ["memory", "generate", "--recipe", "turns", "--num-sessions", "2",
                                              "--num-questions", "4", "--min-turns", "20", "--max-turns", "22",
                                              "--min-scenes", "3", "--max-scenes", "4", "--no_diversify",
                                              "--out", str(dataset), *llm],  # notebook 06's sessions
            "memory eval, full context": ["memory", "eval", str(dataset), "--context", "full",
                                          "--out", str(tmp_path / "eval.json"), *llm],
            "identity probe (identity eval)": ["identity", "eval", "--limit", "8", "--out", str(tmp_path / "id.json"), *llm],
        }
        seen = 0
        for kind, args in jobs.items():
            _kit(*args)
            rows = _requests(log_path.read_text(errors="replace"))
            kinds[kind], seen = rows[seen:], len(rows)

    print(f"\n{'request':34} {'n':>3}  {'first: read tokens, s':>22}  {'later (median): reused, read, s':>32}  "
          f"{'written, s':>11}  {'read tok/s':>10}  {'write tok/s':>11}")
    for kind, rows in kinds.items():
        assert rows, f"no request of {kind} in the server's log"
        first, later = rows[0], rows[1:] or rows
        median = {k: statistics.median(r.get(k, 0) for r in later) for k in ("reused", "read", "read_s", "written", "write_s")}
        read_speed = sum(r["read"] for r in rows) / max(1e-9, sum(r["read_s"] for r in rows))
        write_speed = sum(r["written"] for r in rows) / max(1e-9, sum(r["write_s"] for r in rows))
        print(f"{kind:34} {len(rows):3d}  {first['read']:>13d}, {first['read_s']:5.2f} s  "
              f"{median['reused']:>14.0f}, {median['read']:5.0f}, {median['read_s']:5.2f} s  "
              f"{median['written']:>4.0f}, {median['write_s']:4.2f} s  {read_speed:10.0f}  {write_speed:11.1f}")
    print(json.dumps({k: len(v) for k, v in kinds.items()}))
