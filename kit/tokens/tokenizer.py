"""A byte-level BPE tokenizer with nanochat's nine special tokens.

rustbpe learns the merges (fast, parallel), tiktoken encodes with them (fast, exact); this is how
nanochat does it. On disk a tokenizer is two plain data files, so loading one never runs code:

    tokenizer.bpe    one line per mergeable token: base64(token bytes) <space> rank  (tiktoken's format)
    tokenizer.json   {"pattern": ..., "special_tokens": {name: id}, ...}

Vocabulary size counts everything an id can be: 256 byte tokens + the learned merges + the 9
specials, which take the ids right after the merges (nanochat's layout, so `vocab_size` is also the
embedding table size).
"""

from __future__ import annotations

import base64
import json
import os
import warnings
from pathlib import Path
from typing import Iterable, Iterator

import rustbpe
import tiktoken

from kit.paths import atomic_write

SPECIAL_TOKENS = (
    "<|bos|>",  # starts every document / conversation
    "<|user_start|>",
    "<|user_end|>",
    "<|assistant_start|>",
    "<|assistant_end|>",
    "<|python_start|>",  # the assistant calls the python tool
    "<|python_end|>",
    "<|output_start|>",  # the tool's output, fed back to the assistant
    "<|output_end|>",
)

# GPT-4's split pattern, except numbers split into groups of at most 2 digits (\p{N}{1,2}, as
# nanochat does): small vocabularies waste fewer slots on 3-digit numbers.
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)

RANKS_FILE = "tokenizer.bpe"
CONFIG_FILE = "tokenizer.json"
FORMAT_NAME = "kit-bpe"
FORMAT_VERSION = 1
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)


class Tokenizer:
    """tiktoken encoding + the special-token table. Build with `train` or `load`."""

    def __init__(self, mergeable_ranks: dict[bytes, int], pattern: str = SPLIT_PATTERN, name: str = "kit"):
        n = len(mergeable_ranks)
        self.special_ids = {token: n + i for i, token in enumerate(SPECIAL_TOKENS)}
        self.pattern = pattern
        self.encoding = tiktoken.Encoding(
            name=name, pat_str=pattern, mergeable_ranks=mergeable_ranks, special_tokens=self.special_ids
        )
        self.mergeable_ranks = mergeable_ranks
        self.special_names = {i: token for token, i in self.special_ids.items()}
        self.special_id_list = [self.special_ids[token] for token in SPECIAL_TOKENS]

    # ---- building -------------------------------------------------------------------------

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, progress: bool = True) -> "Tokenizer":
        """Learn merges from `texts` until the vocabulary (specials included) has `vocab_size` ids.

        A corpus too small to supply that many merges gives a smaller vocabulary; that is reported
        with a warning naming the actual size, and `tok.vocab_size` tells the truth.
        """
        if vocab_size < MIN_VOCAB_SIZE:
            raise ValueError(f"vocab_size must be at least {MIN_VOCAB_SIZE} (256 bytes + {len(SPECIAL_TOKENS)} specials), got {vocab_size}")
        seen_text = False

        def watched(texts: Iterable[str]) -> Iterator[str]:
            nonlocal seen_text
            for text in texts:
                seen_text = seen_text or bool(text.strip())  # strips only until the first real text
                yield text

        stream = watched(_with_progress(texts) if progress else texts)
        bpe = rustbpe.Tokenizer()
        bpe.train_from_iterator(stream, vocab_size - len(SPECIAL_TOKENS), pattern=SPLIT_PATTERN)
        if not seen_text:
            raise ValueError("no training text: the inputs hold no files, or only empty ones")
        ranks = {bytes(token): rank for token, rank in bpe.get_mergeable_ranks()}
        tokenizer = cls(ranks, bpe.get_pattern())
        if tokenizer.vocab_size < vocab_size:
            warnings.warn(
                f"corpus too small for vocab_size={vocab_size}: it supplied only {len(ranks) - 256} merges, "
                f"so the vocabulary has {tokenizer.vocab_size} ids (256 bytes + merges + {len(SPECIAL_TOKENS)} specials)",
                stacklevel=2,
            )
        return tokenizer

    def save(self, directory: str | os.PathLike) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        by_rank = sorted(self.mergeable_ranks.items(), key=lambda item: item[1])
        lines = "".join(f"{base64.b64encode(token).decode('ascii')} {rank}\n" for token, rank in by_rank)
        with atomic_write(directory / RANKS_FILE) as tmp:
            tmp.write_text(lines, encoding="utf-8")
        config = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "pattern": self.pattern,
            "special_tokens": self.special_ids,
            "vocab_size": self.vocab_size,
            "n_merges": len(self.mergeable_ranks) - 256,
        }
        with atomic_write(directory / CONFIG_FILE) as tmp:
            tmp.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Tokenizer":
        """Read the two data files written by `save`; checks them instead of trusting them."""
        directory = Path(directory)
        config_path, ranks_path = directory / CONFIG_FILE, directory / RANKS_FILE
        for path in (config_path, ranks_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing (a tokenizer folder holds {CONFIG_FILE} and {RANKS_FILE})")
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if config.get("format") != FORMAT_NAME:
            raise ValueError(f"{config_path}: not a {FORMAT_NAME} tokenizer config")
        ranks: dict[bytes, int] = {}
        with open(ranks_path, "r", encoding="ascii") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    token_b64, rank = line.split()
                    ranks[base64.b64decode(token_b64, validate=True)] = int(rank)
                except ValueError as exc:
                    raise ValueError(f"{ranks_path}:{lineno}: expected 'base64 rank', got {line.strip()[:60]!r} ({exc})") from None
        if sorted(ranks.values()) != list(range(len(ranks))):
            raise ValueError(f"{ranks_path}: ranks must be the distinct integers 0..{len(ranks) - 1}")
        tokenizer = cls(ranks, config["pattern"])
        if config.get("special_tokens") != tokenizer.special_ids:
            raise ValueError(f"{config_path}: special tokens do not match the kit's nine in order after {len(ranks)} ranks")
        return tokenizer

    # ---- encoding -------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.encoding.n_vocab

    @property
    def bos_id(self) -> int:
        return self.special_ids["<|bos|>"]

    def special_id(self, name: str) -> int:
        try:
            return self.special_ids[name]
        except KeyError:
            raise KeyError(f"{name!r} is not a special token; the specials are {', '.join(SPECIAL_TOKENS)}") from None

    def is_special(self, token_id: int) -> bool:
        return token_id in self.special_names

    def encode(self, text: str) -> list[int]:
        """Ordinary text: a special-token string inside it is encoded as the characters it is made of."""
        return self.encoding.encode_ordinary(text)

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        # A plain loop: tiktoken's threaded batch encoding is slower on short texts with few cores.
        encode = self.encoding.encode_ordinary
        return [encode(text) for text in texts]

    def decode(self, ids: Iterable[int]) -> str:
        return self.encoding.decode(list(ids), errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        return self.encoding.decode_single_token_bytes(token_id)

    def token_text(self, token_id: int) -> str:
        """One token for display: a special's name, else its text; bytes that are only part of a
        UTF-8 character are shown as escapes (\\xe2) rather than replacement marks."""
        if token_id in self.special_names:
            return self.special_names[token_id]
        return self.token_bytes(token_id).decode("utf-8", errors="backslashreplace")

    # ---- conversations (rules live in kit.tokens.render) --------------------------------------------

    def render_conversation(self, conversation, max_tokens: int | None = None):
        from kit.tokens.render import render_conversation

        return render_conversation(self, conversation, max_tokens=max_tokens)

    def render_for_completion(self, conversation) -> list[int]:
        from kit.tokens.render import render_for_completion

        return render_for_completion(self, conversation)

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self.mergeable_ranks) - 256})"


# ---- corpus -----------------------------------------------------------------------------------

TEXT_SUFFIXES = {".md", ".txt"}
DATA_SUFFIXES = {".json", ".yaml", ".yml"}


def texts_from_paths(paths: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Texts for training: every message of .jsonl conversation files (kit.records formats), whole
    .md/.txt files, and JSON/YAML data files as they are written. Folders are walked in name order."""
    from kit.records import iter_records, message_text

    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        if path.is_dir():
            yield from texts_from_paths(sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")))
        elif path.suffix == ".jsonl":
            for record in iter_records(path):
                for message in record["messages"]:
                    yield message_text(message["content"])
        elif path.suffix in TEXT_SUFFIXES | DATA_SUFFIXES:
            yield path.read_text(encoding="utf-8")
        else:
            raise ValueError(f"{path}: cannot read training text from a {path.suffix or 'suffix-less'} file (use .jsonl, .txt, .md)")


def default_corpus(extra_paths: Iterable[str | os.PathLike] = (), texts: Iterable[str] = ()) -> Iterator[str]:
    """The kit's own corpus: the knowledge folder (when present), the given conversation/text files, and
    `texts`. A tokenizer for midtraining should also see the built-in tasks' text: pass
    `kit.training.tasks.sample_texts()` as `texts` (the training stage sits above this one, so the
    tokenizer never reaches into it)."""
    from kit.paths import knowledge_dir

    if knowledge_dir().is_dir():
        yield from texts_from_paths([knowledge_dir()])
    yield from texts_from_paths(extra_paths)
    yield from texts


# ---- helpers ----------------------------------------------------------------------------------


def _with_progress(texts: Iterable[str]) -> Iterator[str]:
    from kit.progress import progress_bar

    yield from progress_bar(texts, desc="tokenizer corpus", unit=" texts", mininterval=1.0)
