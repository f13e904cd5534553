"""The midtraining task mixture: conversation records from files and from built-in generators.

A task is a sized, indexable collection of conversation records (`{"id", "messages", "meta"}` with
`meta["task"]` naming the task). Built-in tasks are generated offline and item `i` depends only on
`(seed, i)`, like the generator's per-index seeding, so any item can be rebuilt and checked alone.
Their tool parts are computed by `kit.training.calculator` and never typed in by hand: the python_output part
is what the python part evaluates to.

`Mixture` puts tasks together with a weight per task (the number of passes over it; a fraction takes
a seeded subset) and shuffles the result with a seed. The public sets nanochat mixed in (SmolTalk,
MMLU, GSM8K) and the memory-benchmark dialogues are read by `kit.training.datasets` and join the same way.

The mixture follows nanochat's midtraining recipe in kind (general chat, multiple choice, math with
a calculator tool, spelling, identity) but the built-in prompts and replies are this kit's own.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path
from typing import Iterator, Sequence

from kit.paths import knowledge_dir
from kit.quality.validation import validate_file
from kit.records import read_records
from kit.training import datasets
from kit.training.calculator import evaluate, format_result
from kit.training.datasets import Task, record


# ---------------------------------------------------------------------------------------------------
# Identity conversations (the generated data)

class IdentityTask(Task):
    """Conversations from a JSONL file (kit format or nanochat CustomJSON), `epochs` passes over it.

    A bad line raises `kit.records.RecordError` naming file and line, and a conversation that
    `kit.rules` calls an error (an empty message, roles out of order, a reply cut off) raises
    ValueError naming file, line and message: training data is not guessed at.
    """

    name = "identity"

    def __init__(self, path: str | os.PathLike, epochs: int = 1):
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        self.path = Path(path)
        self.records = read_records(self.path, strict=True).records
        if not self.records:
            raise ValueError(f"{self.path}: no conversations in the file")
        _, found = validate_file(self.path)
        errors = [(lineno, problem) for lineno, problem in found if problem.severity == "error"]
        if errors:
            lineno, problem = errors[0]
            more = f" (and {len(errors) - 1} more; `python -m kit validate {self.path}` lists them)" if len(errors) > 1 else ""
            raise ValueError(f"{self.path}:{lineno}: {problem}{more}")
        self.epochs = epochs

    def __len__(self) -> int:
        return len(self.records) * self.epochs

    def get(self, index: int) -> dict:
        source = self.records[index % len(self.records)]
        meta = {**source.get("meta", {}), "task": self.name, "source_id": source["id"],
                "epoch": index // len(self.records)}
        return {"id": f"{self.name}:{index}", "messages": source["messages"], "meta": meta}


# ---------------------------------------------------------------------------------------------------
# Spelling: the words come from knowledge/words.txt, shipped with the project

def load_words(path: str | os.PathLike | None = None) -> list[str]:
    """Lowercase a-z words, one per line; '#' lines are comments."""
    path = Path(path) if path else knowledge_dir() / "words.txt"
    words = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        word = line.strip()
        if not word or word.startswith("#"):
            continue
        if not (word.isascii() and word.isalpha() and word.islower()):
            raise ValueError(f"{path}:{lineno}: not a lowercase a-z word: {word!r}")
        words.append(word)
    if not words:
        raise ValueError(f"{path}: no words")
    return words


class _GeneratedTask(Task):
    """n items, item i drawn from random.Random(f"{name}:{seed}:{i}")."""

    def __init__(self, n: int, seed: int = 0):
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.n, self.seed = n, seed

    def __len__(self) -> int:
        return self.n

    def rng(self, index: int) -> random.Random:
        return random.Random(f"{self.name}:{self.seed}:{index}")


class SimpleSpelling(_GeneratedTask):
    """'Spell the word: apple' -> 'apple:a,p,p,l,e' (teaches the model to see letters in tokens)."""

    name = "spelling"

    def __init__(self, n: int, seed: int = 0, words: list[str] | None = None):
        super().__init__(n, seed)
        self.words = words or load_words()

    def get(self, index: int) -> dict:
        word = self.rng(index).choice(self.words)
        return record(self.name, index, [
            {"role": "user", "content": f"Spell the word: {word}"},
            {"role": "assistant", "content": f"{word}:{','.join(word)}"},
        ], word=word)


_BEE_QUESTIONS = (
    "How many {letter} are in the word {word}?",
    "How many times does the letter '{letter}' appear in \"{word}\"?",
    "Count the letter {letter} in {word}.",
    "In the word '{word}', how many {letter}'s are there?",
    "how many {letter}s in {word}",
)


class SpellingBee(_GeneratedTask):
    """Count a letter in a word: spell it out, count by hand, check with a python tool call."""

    name = "spelling_bee"

    def __init__(self, n: int, seed: int = 0, words: list[str] | None = None):
        super().__init__(n, seed)
        self.words = words or load_words()

    def get(self, index: int) -> dict:
        rng = self.rng(index)
        word = rng.choice(self.words)
        # mostly letters of the word, sometimes one it lacks, so "0" is a possible answer
        letter = rng.choice(word) if rng.random() < 0.8 else rng.choice("abcdefghijklmnopqrstuvwxyz")
        question = rng.choice(_BEE_QUESTIONS).format(letter=letter, word=word)

        lines, count = [], 0
        for position, char in enumerate(word, start=1):
            if char == letter:
                count += 1
                lines.append(f"{position}:{char} yes, count={count}")
            else:
                lines.append(f"{position}:{char}")
        expression = f"'{word}'.count('{letter}')"
        output = format_result(evaluate(expression))
        manual = (f"I'll spell '{word}' and count the letter '{letter}'.\n\n{word}:{','.join(word)}\n\n"
                  + "\n".join(lines) + f"\n\nBy hand I count {count}. Let me check with Python:\n\n")
        return record(self.name, index, [
            {"role": "user", "content": question},
            {"role": "assistant", "content": [
                {"type": "text", "text": manual},
                {"type": "python", "text": expression},
                {"type": "python_output", "text": output},
                {"type": "text", "text": f"\n\nPython agrees.\n\n#### {output}"},
            ]},
        ], word=word, letter=letter, answer=count)


# ---------------------------------------------------------------------------------------------------
# Arithmetic word problems with calculator tool calls

_NAMES = ("Ava", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Iris", "Jonas", "Kemi", "Liam",
          "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Victor", "Wen", "Yusuf")
_ITEMS = ("notebooks", "apples", "pencils", "tickets", "stickers", "candles", "mugs", "plants", "books", "socks")


class Arithmetic(_GeneratedTask):
    """Short word problems; every computation is a python part whose output the calculator produced."""

    name = "arithmetic"

    def get(self, index: int) -> dict:
        rng = self.rng(index)
        template = rng.choice(_TEMPLATES)
        question, steps, closing = template(rng)
        parts, answer = [], ""
        for lead, expression_of in steps:
            expression = expression_of(answer)
            answer = format_result(evaluate(expression))
            parts += [{"type": "text", "text": lead},
                      {"type": "python", "text": expression},
                      {"type": "python_output", "text": answer}]
        parts.append({"type": "text", "text": closing.format(answer=answer) + f"\n#### {answer}"})
        return record(self.name, index, [
            {"role": "user", "content": question},
            {"role": "assistant", "content": parts},
        ], template=template.__name__, answer=answer)


# A template returns (question, [(text before the call, previous_answer -> expression)], closing text).

def _change(rng: random.Random):
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    count, price = rng.randint(2, 9), rng.randint(2, 12)
    bill = next(b for b in (20, 50, 100, 200) if b > count * price)
    question = f"{name} buys {count} {item} at ${price} each and pays with a ${bill} bill. How much change is there?"
    return question, [
        (f"The {item} cost {count} x ${price} = ", lambda _: f"{count}*{price}"),
        (" dollars. The change is ", lambda cost: f"{bill}-{cost}"),
    ], " dollars."


def _leftover(rng: random.Random):
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    friends = rng.randint(3, 8)
    total = friends * rng.randint(2, 12) + rng.randint(1, friends - 1)
    question = (f"{name} has {total} {item} and shares them equally among {friends} friends, giving each "
                f"as many as possible. How many {item} are left over?")
    return question, [
        (f"Each friend gets {total} // {friends} = ", lambda _: f"{total}//{friends}"),
        (f" {item}. What is left over is the remainder: ", lambda _: f"{total}%{friends}"),
    ], f" {item} are left."


def _distance(rng: random.Random):
    speed, hours, extra = rng.choice((40, 50, 60, 75, 80, 90)), rng.randint(2, 6), rng.randint(5, 95)
    question = (f"A train travels at {speed} km per hour for {hours} hours and then {extra} km more. "
                f"How far does it travel in total?")
    return question, [
        (f"In {hours} hours it covers ", lambda _: f"{speed}*{hours}"),
        (" km. Adding the last stretch gives ", lambda first: f"{first}+{extra}"),
    ], " km in total."


def _savings(rng: random.Random):
    name = rng.choice(_NAMES)
    weekly, weeks = rng.randint(5, 30), rng.randint(3, 12)
    spend = rng.randint(1, weekly * weeks - 1)
    question = (f"{name} saves ${weekly} every week. After {weeks} weeks, {name} spends ${spend} on a gift. "
                f"How much money is left?")
    return question, [
        (f"After {weeks} weeks the savings are ", lambda _: f"{weekly}*{weeks}"),
        (" dollars. After the gift, ", lambda saved: f"{saved}-{spend}"),
    ], " dollars are left."


def _discount(rng: random.Random):
    item = rng.choice(("jacket", "lamp", "bicycle", "backpack", "guitar", "camera"))
    price, percent = rng.choice((20, 40, 60, 80, 120, 150, 200, 250)), rng.choice((10, 15, 20, 25, 30, 50))
    question = f"A {item} costs ${price}. It is on sale for {percent}% off. What is the sale price?"
    return question, [
        (f"The discount is {percent}% of ${price}: ", lambda _: f"{price}*{percent}/100"),
        (" dollars. The sale price is ", lambda discount: f"{price}-{discount}"),
    ], " dollars."


def _fence(rng: random.Random):
    length, width = rng.randint(4, 40), rng.randint(3, 30)
    question = (f"A rectangular garden is {length} meters long and {width} meters wide. "
                f"How many meters of fence go all the way around it?")
    return question, [
        ("One length plus one width is ", lambda _: f"{length}+{width}"),
        (" meters, and the fence goes around twice that: ", lambda half: f"2*{half}"),
    ], " meters of fence."


def _reading(rng: random.Random):
    name = rng.choice(_NAMES)
    per_day, days = rng.randint(5, 40), rng.randint(3, 20)
    pages = per_day * days
    question = f"A book has {pages} pages. {name} reads {per_day} pages a day. How many days does the book take?"
    return question, [
        (f"{pages} pages at {per_day} pages a day takes ", lambda _: f"{pages}/{per_day}"),
    ], " days."


_TEMPLATES = (_change, _leftover, _distance, _savings, _discount, _fence, _reading)


# ---------------------------------------------------------------------------------------------------
# Mixing

class Mixture(Sequence):
    """Tasks with weights, shuffled by a seed.

    A weight is the number of passes over a task: 2 repeats it twice, 0.5 takes a seeded half.
    The order depends only on the tasks' items and the seed, so the same inputs give the same stream.
    """

    def __init__(self, tasks: list[tuple[Task, float]], seed: int = 0):
        self.tasks = [task for task, _ in tasks]
        self.weights = [float(weight) for _, weight in tasks]
        self.seed = seed
        entries: list[tuple[int, int]] = []
        for t, (task, weight) in enumerate(zip(self.tasks, self.weights)):
            if weight < 0:
                raise ValueError(f"{task.name}: weight must be >= 0, got {weight}")
            passes, fraction = int(weight), weight - int(weight)
            entries += [(t, i) for _ in range(passes) for i in range(len(task))]
            if fraction:
                k = round(fraction * len(task))
                entries += [(t, i) for i in sorted(random.Random(f"mixture:{seed}:{t}").sample(range(len(task)), k))]
        random.Random(f"mixture:{seed}").shuffle(entries)
        self.entries = entries

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        t, i = self.entries[index]
        return self.tasks[t][i]

    def __iter__(self) -> Iterator[dict]:
        return (self.tasks[t][i] for t, i in self.entries)

    def counts(self) -> dict[str, int]:
        """Conversations per task name, in the order the tasks were given."""
        counter = Counter(self.tasks[t].name for t, _ in self.entries)
        return {task.name: counter[task.name] for task in self.tasks}

    def __repr__(self) -> str:
        return f"Mixture({self.counts()}, seed={self.seed})"


def default_mixture(identity_path: str | os.PathLike | list | None = None, seed: int = 0, size: int = 1000, *,
                    identity_epochs: int = 2, smoltalk: str | None = None, mmlu: str | None = None,
                    gsm8k: str | None = None, memory: str | None = None) -> Mixture:
    """The offline mixture: built-in tasks sized by `size`, identity conversations if a file (or a list
    of files) is given (`identity_epochs` passes, as nanochat repeats its identity set), and any public set
    or memory file given.

    Built-in shares follow nanochat's emphasis: spelling 40%, arithmetic 40%, spelling bee 20% of `size`.
    """
    tasks: list[tuple[Task, float]] = [
        (SimpleSpelling(size * 2 // 5, seed), 1),
        (SpellingBee(size // 5, seed), 1),
        (Arithmetic(size * 2 // 5, seed), 1),
    ]
    identity_paths = identity_path if isinstance(identity_path, (list, tuple)) else [identity_path] if identity_path else []
    for path in identity_paths:
        tasks.append((IdentityTask(path, epochs=identity_epochs), 1))
    if smoltalk:
        tasks.append((datasets.SmolTalk(smoltalk), 1))
    if mmlu:
        tasks.append((datasets.MMLU(mmlu), 1))
    if gsm8k:
        tasks.append((datasets.GSM8K(gsm8k), 1))
    if memory:
        tasks.append((datasets.MemoryDialogues(memory), 1))
    return Mixture(tasks, seed=seed)


def conversation_texts(records) -> Iterator[str]:
    """Every message's text (parts joined), e.g. to train a tokenizer on what the model will read."""
    from kit.records import message_text

    for rec in records:
        for message in rec["messages"]:
            yield message_text(message["content"])


def sample_texts(n: int = 1000, seed: int = 0) -> Iterator[str]:
    """Text of the built-in tasks (kit.tokens.tokenizer.default_corpus adds it to a tokenizer's corpus)."""
    return conversation_texts(default_mixture(seed=seed, size=n))
