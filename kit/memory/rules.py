"""The rules every turn of a memory session must pass, whoever wrote it (a template, a small or a large model).

A turn goes into a dialogue that a model under test later reads, so a turn that leaks the writing
prompt ("Respond to the user's request with..."), carries JSON or markup fragments (`}}`,
`"role":`), stops mid-sentence, copies an earlier turn, or claims another identity would teach the
benchmark's reader noise. `turn_problems` lists every problem of one turn (never raises);
`trim_to_sentence` keeps the complete sentences of a reply cut at its token limit.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher

from kit.facts import foreign_identity_claims

MIN_WORDS = 3
MAX_WORDS = 60
COPY_SIMILARITY = 0.8
# JSON and markup fragments, and a model's chat or code syntax leaking into a turn.
_MARKUP = re.compile(r'[{}\[\]<>|`#*\\]|"(?:role|content|dialogue|transactions)"\s*:|\bhttps?://|<\|')
# Words of the writing prompt that a reply to the user has no reason to say.
_LEAK = re.compile(r"\b(?:the user|user's|users?:|assistant|respond(?:ing)? to|reply with|instruction|prompt|"
                   r"one or two (?:short )?sentences|as an ai|warm and|encouraging|practical|no need for numbers|"
                   r"(?:any|use) numbers|this message)\b", re.I)
# An assistant that opens by refusing or contradicting a user who shared a plan or a worry, or that
# talks about "my budget" as if it were the user: the 135M model does both, and no reader keeps it.
_DISMISSIVE = re.compile(r"^(?:no\b|not true|sorry|i'?m (?:really |so )?sorry|i don'?t (?:think|have)|i'?m not sure|"
                         r"i can'?t|(?:lad|dad|darlin'?|ladies and gentlemen|dude|buddy|mate)\b)", re.I)
_AS_USER = re.compile(r"\bmy (?:budget|expenses|spending|income|wallet|money|rent|bills?|savings)\b", re.I)
_SENTENCE_END = re.compile(r'[.!?]["\')]?$')
_LETTERS = re.compile(r"[A-Za-z]")


def trim_to_sentence(text: str) -> str:
    """`text` up to its last complete sentence ('' when it has none)."""
    text = " ".join(text.split())
    if _SENTENCE_END.search(text):
        return text
    ends = [m.end() for m in re.finditer(r'[.!?]["\')]?(?=\s)', text)]
    return text[:ends[-1]] if ends else ""


def turn_problems(text: str, earlier: list[str], *, numbers: bool = True, leak_check: bool = True,
                  reply: bool = False) -> list[str]:
    """Every rule `text` breaks, given the session's earlier turns. `numbers=False` also refuses any
    digit (a small-talk turn must not invent an amount the ledger does not hold); `reply=True` adds
    the rules for a model's reply to the user: not dismissive, not speaking as the user, not echoing
    the user's message (the last of `earlier`)."""
    problems = []
    words = text.split()
    if len(words) < MIN_WORDS or not _LETTERS.search(text):
        problems.append(f"too_short: {len(words)} words")
    if len(words) > MAX_WORDS:
        problems.append(f"too_long: {len(words)} words")
    if _MARKUP.search(text):
        problems.append(f"markup: {_MARKUP.search(text).group()!r}")
    if leak_check and _LEAK.search(text):
        problems.append(f"prompt_leak: {_LEAK.search(text).group()!r}")
    if not _SENTENCE_END.search(text):
        problems.append("cut: does not end a sentence")
    if not numbers and re.search(r"\d", text):
        problems.append("number: states a number the ledger does not hold")
    folded = text.casefold()
    if any(SequenceMatcher(None, folded, e.casefold()).ratio() >= COPY_SIMILARITY for e in earlier):
        problems.append("copy: repeats an earlier turn")
    if reply:
        if _DISMISSIVE.search(text):
            problems.append(f"dismissive: opens with {_DISMISSIVE.search(text).group()!r}")
        if _AS_USER.search(text):
            problems.append(f"as_user: {_AS_USER.search(text).group()!r}")
        if earlier and _echoes(text, earlier[-1]):
            problems.append("echo: restates the user's message")
    claims = foreign_identity_claims(text)
    if claims:
        problems.append(f"identity: claims to be {claims[0]}")
    return problems


def _echoes(reply: str, message: str) -> bool:
    """Does the reply open with the message's first three words, or hold most of its words?"""
    r, m = reply.casefold().split(), message.casefold().split()
    if len(m) >= 3 and r[:3] == m[:3]:
        return True
    words = {w.strip(".,!?'\"") for w in m if len(w) > 3}
    return len(words) >= 4 and len(words & {w.strip(".,!?'\"") for w in r}) >= 0.7 * len(words)


def rule_name(problem: str) -> str:
    """'markup: "}}"' -> 'markup': funnels count problems by rule."""
    return problem.split(":", 1)[0]
