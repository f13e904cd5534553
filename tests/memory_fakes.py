"""Scripted replies for the memory benchmark's tests: a fake model for both session recipes.

`session_reply(prompt, seed, mode)` answers a one-call session prompt with a dialogue that states
each planned expense; `turn_reply(request, mode)` answers one turn of the turns recipe. `mode` plants
the faults the checks must catch. Used with tests/fake_openai.py, so every test goes over a real
loopback HTTP server.
"""

from __future__ import annotations

import json
import random
import re

from fake_openai import Reply

EXPENSE_LINE = re.compile(r"^- ([\d.]+) for (.+) \(category: (.+)\)$", re.M)
# What a small model was seen to write, and what must never reach a dialogue.
PLANTED = {
    "json": 'Sure}}}\n\nThe user has a JSON response for "role": "assistant"',
    "amount": "That brings your coffee spending to 99.5 this week.",
    "leak": "Respond to the user's request with just one word: thank them again.",
    "cut": "Saving a little every week is a good way to start and you can",
}
# A reply the 135M model wrote to "It had been ages since I went to the movies.": fine alone, no answer.
OFF_TOPIC = "Yesterday was a memorable one."
GOOD_TURNS = ["That sounds like a sensible plan for this month.", "Small steps add up, you are doing well.",
              "I will keep everything organized for you.", "It helps to look at your spending each week.",
              "Let me know whenever you have more to add.", "A little planning goes a long way.",
              "Cooking at home can be fun and cheaper too.", "Setting a simple goal often makes saving easier.",
              "Treats are fine when they fit your plan.", "Writing things down is the hardest part, and you do it.",
              "Weekends tempt everyone, so plan something free.", "Emergency savings give real peace of mind.",
              "Your records are safe with me.", "Comparing prices before buying saves more than people expect.",
              "Bills feel lighter once they are tracked.", "Giving when you can is a lovely habit.",
              "Learning is an investment that keeps paying back.", "Health comes first, and it was worth it.",
              "Biking is good for you and your wallet.", "A shopping list keeps impulse buys away.",
              "Talk to me any time you want a summary.", "Every careful choice adds to your savings.",
              "Happy to help you stay on track.", "Good habits start with small wins like this."]


def planned_expenses(prompt: str) -> list[tuple[str, str, str]]:
    """(amount, item, category) of every expense a one-call session prompt asks for."""
    return EXPENSE_LINE.findall(prompt)


def session_reply(prompt: str, seed: int, mode: str = "valid") -> str:
    """A one-call session reply; mode "wrong_amount" says one amount differently, "extra_amount" adds an
    amount the plan does not hold, "json_fragment" leaves JSON in a turn, "not_json" is prose."""
    if mode == "not_json":
        return "Sure! Here is a lovely session about money."
    rng = random.Random(seed)
    dialogue = [{"role": "user", "content": "Hi, I want to record today's spending."},
                {"role": "assistant", "content": "Of course, tell me what you spent."}]
    for n, (amount, item, category) in enumerate(planned_expenses(prompt)):
        said = "12345.67" if mode == "wrong_amount" and n == 0 else amount
        dialogue += [{"role": "user", "content": f"I paid {said} for {item}, under {category}."},
                     {"role": "assistant", "content": f"Recorded {item}, {said}. {rng.choice(GOOD_TURNS)}"}]
    if mode == "extra_amount":
        dialogue += [{"role": "user", "content": "My friend paid 77 for hers."},
                     {"role": "assistant", "content": "That is kind of her."}]
    if mode == "json_fragment":
        dialogue[1]["content"] = PLANTED["json"]
    return json.dumps({"dialogue": dialogue})


def is_session_prompt(text: str) -> bool:
    return text.startswith("Write one session")


def is_turn_request(request: dict) -> bool:
    return request["messages"][0]["role"] == "system"


def turn_reply(request: dict, mode: str = "valid") -> Reply:
    """One assistant turn: a good sentence chosen by the request's seed and one on the longest word of
    the message it answers (so it answers it), or the planted fault `mode`."""
    if mode in PLANTED:
        return Reply(content=PLANTED[mode], finish_reason="length" if mode == "cut" else "stop")
    if mode == "off_topic":
        return Reply(content=OFF_TOPIC)
    rng = random.Random(request.get("seed", 0))
    topic = max(re.findall(r"[A-Za-z]+", request["messages"][-1]["content"]), key=len)
    return Reply(content=f"{rng.choice(GOOD_TURNS)} {topic.capitalize()} matters.")


def rephrase_reply(prompt: str) -> str:
    """Rewrites every question: odd ones keep their facts, even ones drop their dates (to be refused)."""
    questions = re.findall(r"^\d+\. (.+)$", prompt, re.M)
    out = []
    for i, q in enumerate(questions):
        out.append(f"Quick question: {q}" if i % 2 else re.sub(r"\d{4}-\d{2}-\d{2}", "that day", q))
    return json.dumps({"questions": out})


def model_responder(session_mode=lambda prompt, n_seen: "valid", turn_mode=lambda request, n_seen: "valid"):
    """A responder for generation: sessions or turns (fault chosen per request) and rephrasing."""
    def respond(request: dict, n_seen: int) -> Reply:
        if is_turn_request(request):
            return turn_reply(request, turn_mode(request, n_seen))
        prompt = request["messages"][-1]["content"]
        if is_session_prompt(prompt):
            return Reply(content=session_reply(prompt, request.get("seed", 0), session_mode(prompt, n_seen)))
        if prompt.startswith("Rewrite each"):
            return Reply(content=rephrase_reply(prompt))
        return Reply(status=400)
    return respond
