"""Scripted replies for the memory benchmark's tests: a fake model that writes consistent sessions.

`session_reply(prompt, seed)` reads the expenses a session prompt asks for and answers with a dialogue
that states each amount and transactions that match it; `mode` plants the faults the checker must
catch. Used with tests/fake_openai.py, so every test goes over a real loopback HTTP server.
"""

from __future__ import annotations

import json
import random
import re

from fake_openai import Reply

EXPENSE_LINE = re.compile(r"^- (.+?) / (.+?): [\d.]+$", re.M)


def planned_pairs(prompt: str) -> list[tuple[str, str]]:
    return EXPENSE_LINE.findall(prompt)


def session_reply(prompt: str, seed: int, mode: str = "valid") -> str:
    """A session reply; mode "mismatch" records one amount that the dialogue never says,
    "bad_scene" records a scene outside the catalogue, "not_json" is prose."""
    if mode == "not_json":
        return "Sure! Here is a lovely session about money."
    rng = random.Random(seed)
    dialogue, transactions = [], []
    for scene, sub in planned_pairs(prompt):
        amount = round(rng.uniform(1, 200), rng.choice([0, 1, 2]))
        dialogue += [{"role": "user", "content": f"I spent {amount:.2f} yuan on {sub.lower()} today."},
                     {"role": "assistant", "content": f"Recorded: {sub}, {amount} yuan."}]
        transactions.append({"scene": scene, "subscene": sub, "amount": amount, "description": sub.lower()})
    if mode == "mismatch":
        transactions[0]["amount"] = 12345.67
    if mode == "bad_scene":
        transactions[0]["scene"] = "Gambling"
    return json.dumps({"dialogue": dialogue, "transactions": transactions})


def is_session_prompt(text: str) -> bool:
    return text.startswith("Write one session")


def rephrase_reply(prompt: str) -> str:
    """Rewrites every question: odd ones keep their facts, even ones drop their dates (to be refused)."""
    questions = re.findall(r"^\d+\. (.+)$", prompt, re.M)
    out = []
    for i, q in enumerate(questions):
        out.append(f"Quick question: {q}" if i % 2 else re.sub(r"\d{4}-\d{2}-\d{2}", "that day", q))
    return json.dumps({"questions": out})


def model_responder(session_mode=lambda prompt, n_seen: "valid"):
    """A responder for generation: sessions (mode chosen per prompt and attempt) and rephrasing."""
    def respond(request: dict, n_seen: int) -> Reply:
        prompt = request["messages"][-1]["content"]
        if is_session_prompt(prompt):
            return Reply(content=session_reply(prompt, request.get("seed", 0), session_mode(prompt, n_seen)))
        if prompt.startswith("Rewrite each"):
            return Reply(content=rephrase_reply(prompt))
        return Reply(status=400)
    return respond
