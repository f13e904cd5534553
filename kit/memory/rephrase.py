"""Rephrasing questions with the model, batch by batch, keeping only rewrites that keep their meaning.

Templated questions all sound alike; a model rewrites them in batches of ten to sound like a user.
A model can also drop a date or swap a scene while doing so, which would silently change the
answer, so every rewrite goes through `questions.check_rewrite` and the original stays when it fails.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field

from kit.llm.client import LLMClient, RetriesExhausted
from kit.llm.reply import parse_json_reply
from kit.memory.questions import Question, check_rewrite
from kit.memory.sessions import fill, load_prompt

BATCH_SIZE = 10
TEMPERATURE = 0.7
SCHEMA_NAME = "rephrased_questions"


@dataclass
class RephraseReport:
    queries: list[str]
    rewritten: int = 0
    kept_original: int = 0
    reasons: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"rewritten": self.rewritten, "kept_original": self.kept_original,
                "reasons_kept_original": dict(self.reasons.most_common())}


def rephrase_prompt(batch: list[Question]) -> str:
    listed = "\n".join(f"{i}. {q.query}" for i, q in enumerate(batch, 1))
    return fill(load_prompt("memory_rephrase.txt"), "memory_rephrase.txt", questions=listed, count=len(batch))


def rephrase_schema(n: int) -> dict:
    return {"type": "object",
            "properties": {"questions": {"type": "array", "items": {"type": "string"},
                                         "minItems": n, "maxItems": n}},
            "required": ["questions"], "additionalProperties": False}


async def _rephrase_batch(client: LLMClient, batch: list[Question], all_scenes: list[str],
                          seed: int) -> list[tuple[str, str | None]]:
    """(query, reason it is the original or None) for each question of the batch."""
    try:
        completion = await client.complete([{"role": "user", "content": rephrase_prompt(batch)}],
                                           schema=rephrase_schema(len(batch)), schema_name=SCHEMA_NAME,
                                           temperature=TEMPERATURE, max_tokens=60 * len(batch) + 50, seed=seed)
    except RetriesExhausted:
        return [(q.query, "request failed") for q in batch]
    reply = parse_json_reply(completion.text)
    rewrites = reply.value.get("questions") if isinstance(reply.value, dict) else None
    if not isinstance(rewrites, list) or len(rewrites) != len(batch):
        return [(q.query, "reply did not hold one rewrite per question") for q in batch]
    out = []
    for question, rewrite in zip(batch, rewrites):
        reason = check_rewrite(question, rewrite, all_scenes)
        out.append((question.query, reason) if reason else (" ".join(rewrite.split()), None))
    return out


async def rephrase_questions(client: LLMClient, questions: list[Question], all_scenes: list[str],
                             seed: int | str) -> RephraseReport:
    """New query texts, in order: the vetted rewrite, or the original with the reason counted."""
    batches = [questions[i:i + BATCH_SIZE] for i in range(0, len(questions), BATCH_SIZE)]
    seeds = [random.Random(f"{seed}:rephrase:{b}").getrandbits(31) for b in range(len(batches))]
    results = await asyncio.gather(*(_rephrase_batch(client, batch, all_scenes, s)
                                     for batch, s in zip(batches, seeds)))
    report = RephraseReport([])
    for query, reason in (pair for batch in results for pair in batch):
        report.queries.append(query)
        if reason is None:
            report.rewritten += 1
        else:
            report.kept_original += 1
            report.reasons[_reason_kind(reason)] += 1
    return report


def _reason_kind(reason: str) -> str:
    """'drops the date 2024-01-05' -> 'drops the date': counts group by kind, not by value."""
    for kind in ("drops the date", "adds the date", "drops the scene", "adds the scene", "drops the word",
                 "drops the number", "adds the number"):
        if reason.startswith(kind):
            return kind
    return reason
