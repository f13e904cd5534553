"""The rules every turn of a memory session must pass, whoever wrote it (a template, a small or a large model).

A turn goes into a dialogue that a model under test later reads, so a turn that leaks the writing
prompt ("Respond to the user's request with..."), carries JSON or markup fragments (`}}`,
`"role":`), stops mid-sentence, copies an earlier turn, or claims another identity would teach the
benchmark's reader noise. `turn_problems` lists every problem of one turn (never raises);
`trim_to_sentence` keeps the complete sentences of a reply cut at its token limit.

A reply must also answer the user's line (`off_topic`): the 135M model, shown "Some months are great
and some are really slow.", wrote "If you can't get rid of those few weeks, it's time to have a chat
with your bank". What counts as a subject is data (reply_topics in knowledge/memory_scenes.yaml); how
well this catches a non sequitur is measured on real replies, labelled by hand, in
tests/fixtures/memory_replies.jsonl (tests/test_memory_dialogue.py): about two flags in three are
right, and about one non sequitur in three is caught; a reply that takes up the line's words and
misreads them passes.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher

from kit.text import ENDS_SENTENCE, SENTENCE_END
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
_AS_USER = re.compile(r"\bmy (?:budget|expenses|spending|income|wallet|money|rent|bills?|savings)\b|\bit'?s me\b",
                      re.I)
_LETTERS = re.compile(r"[A-Za-z]")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
# Words that name no subject: a reply that shares only these with the user's line has not answered it
# ("That's a great idea, I think you should keep it up" shares "think" with almost any line).
_FILLER = frozenset("""
    a about after again all also always am an and any are as at be been before being but by can can't
    could did didn't do does doesn't don't each even ever every few for from get gets getting go goes going
    gone got great good had has have having how i i'd i'll i'm i've if in into is isn't it it's its just
    know let let's like little lot lots make makes many maybe me might more most much must my never new no
    not now of off on one only or other our out over own really right same should so some something still
    such sure than that that's the their them then there these they thing things think this those though
    through time to too up us very want wants was way we well were what when where which while who why will
    with would yes yet you you'd you'll you're you've your yours absolutely certainly definitely wonderful
    amazing awesome fantastic idea ideas sounds sound lovely okay ok oh bit won't wasn't aren't couldn't
    wouldn't shouldn't haven't hasn't there's here's what's hope hoping
    """.split())


def trim_to_sentence(text: str) -> str:
    """`text` up to its last complete sentence ('' when it has none)."""
    text = " ".join(text.split())
    ends = [m.end() for m in SENTENCE_END.finditer(text)]
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
    if not ENDS_SENTENCE.search(text):
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
        if earlier and _restates(text, earlier[-1]):
            problems.append("echo: restates the user's message")
    claims = foreign_identity_claims(text)
    if claims:
        problems.append(f"identity: claims to be {claims[0]}")
    return problems


def _restates(reply: str, message: str) -> bool:
    """Does the reply open with the message's first three words, or hold most of its words?"""
    # punctuation stripped: "Hello, it's me!" opens "Hello, it's me again." as much as a word-for-word copy
    r = [w.strip(".,!?'\"") for w in reply.casefold().split()]
    m = [w.strip(".,!?'\"") for w in message.casefold().split()]
    if len(m) >= 3 and r[:3] == m[:3]:
        return True
    words = {w for w in m if len(w) > 3}
    return len(words) >= 4 and len(words & set(r)) >= 0.7 * len(words)


def fold(word: str) -> str:
    """A word's crude stem, so "tracking", "tracked" and "track" (or "savings" and "save") meet."""
    word = word.casefold().split("'")[0]
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("es") and len(word) > 4 and word[-3] in "sxz":
        word = word[:-2]
    elif word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        word = word[:-1]
    for suffix, repl in (("ied", "y"), ("ing", ""), ("ed", ""), ("ly", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[:-len(suffix)] + repl
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def topic_index(topics: dict[str, tuple[str, ...]]) -> dict[str, frozenset[str]]:
    """Stem -> the topics it belongs to, from reply_topics (topic -> words)."""
    index: dict[str, set[str]] = {}
    for topic, words in topics.items():
        for word in words:
            index.setdefault(fold(word), set()).add(topic)
    return {stem: frozenset(names) for stem, names in index.items()}


def subjects(text: str, index: dict[str, frozenset[str]]) -> set[str]:
    """What `text` speaks of: each content word's stem, and the topic of each word (`topic_index`)."""
    found: set[str] = set()
    for word in _WORD.findall(text.casefold()):
        if word in _FILLER or len(word) < 3:
            continue
        stem = fold(word)
        found.add(stem)
        found.update(f"topic:{t}" for t in index.get(stem, ()))
    return found


def off_topic(reply: str, message: str, index: dict[str, frozenset[str]]) -> str | None:
    """Why `reply` does not answer the user's `message` (they share no subject), or None if it does."""
    if subjects(reply, index) & subjects(message, index):
        return None
    return "off_topic: shares no word or topic with the user's line"


def off_topic_agreement(rows: list[dict], index: dict[str, frozenset[str]]) -> dict[str, int]:
    """How `off_topic` agrees with hand labels: rows are {user, reply, label} with label "answers" or
    "non-sequitur" (tests/fixtures/memory_replies.jsonl holds real SmolLM2-135M replies labelled so).
    Returns the counts a precision and a recall are drawn from: `labelled`, `non_sequiturs`, `flagged`
    (replies off_topic refuses) and `caught` (refused non sequiturs)."""
    flagged = [off_topic(r["reply"], r["user"], index) is not None for r in rows]
    wrong = [r["label"] == "non-sequitur" for r in rows]
    return {"labelled": len(rows), "non_sequiturs": sum(wrong), "flagged": sum(flagged),
            "caught": sum(f and w for f, w in zip(flagged, wrong))}


def rule_name(problem: str) -> str:
    """'markup: "}}"' -> 'markup': funnels count problems by rule."""
    return problem.split(":", 1)[0]
