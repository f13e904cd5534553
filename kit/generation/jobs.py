"""The resumable LLM job loop: a stage that asks a model once per index of a work list, and must lose
nothing to a kill, runs its items through `JobLoop` (kit.generation.generate, kit.quality.judge).

    loop = JobLoop(journal, todo, rewrite=write_outputs, desc="judge", client=None)
    await loop.run(start, workers=4, endpoint=None, model=None, cache=True, timeout=120.0)
    loop.status, loop.counts, loop.usage()

The loop
- is handed the indices the journal lacks (`needs_work`: not finished, finished for another record at
  its position, or failed only because the API did; kit.generation.journal says which entry is which);
- runs `workers` of them at once (kit.llm.client.run_workers) on the client given, or on one it connects
  for the run (the embedded model when no endpoint is configured; the reply cache unless cache=False);
- records each finished item in the journal (written and flushed before the next is recorded, fsynced by
  group commit) and rewrites the stage's outputs from the journal, once it is synced, every
  FLUSH_EVERY_S seconds and when the run ends, whatever ends it;
- says how the run ended (`status`: complete; interrupted by Ctrl-C or cancellation; failed on a fatal
  API error; the exception goes on to the caller) and what the client did meanwhile (`usage`).

What is the stage's own it passes in: `start(client)` gives the coroutine that makes one index's journal
entry (returning the entry and how many times it re-asked), `rewrite()` rebuilds the outputs from the
journal, and `on_finish(entry)` counts or shows what it wants once an item is recorded. Running the same
command again asks only for what the journal still lacks: that is the resume.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from kit import paths
from kit.generation.journal import Journal
from kit.llm.client import FatalAPIError, LLMClient, connect, run_workers
from kit.progress import progress_bar

FLUSH_EVERY_S = 30.0
# what `usage` reports: the client's counters, this run's share only
USAGE_KEYS = ("requests", "completions", "retries", "rate_limited", "cache_hits", "prompt_tokens",
              "completion_tokens", "cost_usd")

Item = Callable[[int], Awaitable[tuple[dict, int]]]


def needs_work(journal: Journal, index: int, record_id: str | None = None) -> bool:
    """Not finished yet, finished for another record at this position (`record_id`: the input's id there),
    or failed only because the API did (worth another try)."""
    entry = journal.entries.get(index)
    return (entry is None or (record_id is not None and entry.get("id") != record_id)
            or journal.api_failed(entry))


class JobLoop:
    """One run over `todo` (indices), recorded in `journal`; `rewrite()` rebuilds the stage's outputs."""

    def __init__(self, journal: Journal, todo: list[int], *, rewrite: Callable[[], None], desc: str,
                 progress: bool = True, client: LLMClient | None = None,
                 on_finish: Callable[[dict], None] | None = None):
        self.journal, self.todo, self.desc, self.progress = journal, todo, desc, progress
        self._rewrite, self._on_finish = rewrite, on_finish
        self.client = client  # the one the items were asked of, once known
        self._stats_before = client.stats.as_dict() if client else {}
        self.counts: Counter = Counter()  # entries per status, and "reasks"
        self.status = "complete"
        self.bar = None
        self.ended = False  # the journal closed and the outputs rewritten from it: what a run ends with
        self._last_flush = time.monotonic()

    def usage(self) -> dict:
        """What the client did during this run (requests, retries, cache hits, tokens, cost)."""
        now = self.client.stats.as_dict() if self.client else {}
        return {k: now.get(k, 0) - self._stats_before.get(k, 0) for k in USAGE_KEYS}

    def flush(self) -> None:
        """The outputs rewritten from the journal, once it is on disk: an output never holds an item a
        power cut could take from the journal."""
        self.journal.sync()
        self._rewrite()
        self._last_flush = time.monotonic()

    async def run(self, start: Callable[[LLMClient], Item], *, workers: int, endpoint: str | list[str] | None = None,
                  model: str | None = None, cache: bool = True, **client_kwargs: Any) -> None:
        """Every index of `todo`, `workers` at a time; `client_kwargs` (timeout, item_timeout, prices) go to
        kit.llm.client.connect when no client was given. The journal is closed and the outputs rewritten
        however the run ends (then `ended` is True)."""
        self.bar = progress_bar(total=len(self.todo), desc=self.desc, unit="conv",
                                disable=not self.progress or not self.todo, dynamic_ncols=True)
        try:
            if self.todo and self.client is not None:
                await self._work(self.client, start, workers)
            elif self.todo:
                async with connect(endpoint, model, concurrency=workers,
                                   cache_dir=str(paths.cache_dir()) if cache else None, **client_kwargs) as client:
                    await self._work(client, start, workers)
        except FatalAPIError:
            self.status = "failed"
            raise
        except (asyncio.CancelledError, KeyboardInterrupt):
            self.status = "interrupted"
            raise
        finally:  # a failed write here (a full disk) goes on in place of what ended the run
            self.bar.close()
            self.journal.close()
            self.flush()
            self.ended = True

    async def _work(self, client: LLMClient, start: Callable[[LLMClient], Item], workers: int) -> None:
        self.client = client
        self._stats_before = self._stats_before or client.stats.as_dict()
        item = start(client)

        async def one(index: int) -> None:
            entry, reasks = await item(index)
            self.journal.add(entry)
            self.counts[entry["status"]] += 1
            self.counts["reasks"] += reasks
            if self._on_finish is not None:
                self._on_finish(entry)
            if time.monotonic() - self._last_flush > FLUSH_EVERY_S:
                self.flush()
            self.bar.update(1)

        await run_workers(self.todo, workers, one)
