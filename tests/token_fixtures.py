"""A real tokenizer for tests: trained once per session (about a second) on the knowledge folder
plus a generated English-like corpus, so every test that needs token ids gets honest BPE ids.

Fixtures: `trained_tokenizer` (a kit.tokens.tokenizer.Tokenizer), `tokenizer_dir` (the same, saved),
`gsm8k_example` (seed 003's worked example: the conversation and nanochat's 92-token table).
"""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
TEST_VOCAB_SIZE = 768

_WORDS = (
    "the of and to in is you that it he was for on are as with his they at be this have from or one had by "
    "word but not what all were we when your can said there use an each which she do how their if will up "
    "other about out many then them these so some her would make like him into time has look two more write "
    "go see number no way could people my than first water been call who its now find long down day did get "
    "come made may part over new sound take only little work know place year live me back give most very after "
    "thing our just name good sentence man think say great where help through much before line right too mean "
    "old any same tell boy follow came want show also around form three small set put end does another well "
    "large must big even such because turn here why ask went men read need land different home us move try "
    "kind hand picture again change off play spell air away animal house point page letter mother answer found "
    "study still learn should world high every near add food between own below country plant last school father "
    "keep tree never start city earth eye light thought head under story saw left few while along might close "
    "something seem next hard open example begin life always those both paper together got group often run "
    "model token data train assistant user question python output answer earns hour minutes babysitting much "
    "dollars apples count letters spell strawberry conversation memory expense budget spent paid total"
).split()


def english_like_corpus(n_sentences: int = 6000, seed: int = 0) -> list[str]:
    """Deterministic sentences with numbers, arithmetic and punctuation, like chat and math data."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n_sentences):
        words = rng.choices(_WORDS, k=rng.randint(4, 16))
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 9999)))
        sentence = " ".join(words).capitalize() + rng.choice([".", ".", "?", "!", ":", ","])
        if rng.random() < 0.15:
            a, b = rng.randint(1, 99), rng.randint(1, 99)
            sentence += f" {a}*{b} = {a * b}\n#### {a * b}\n"
        texts.append(sentence)
    return texts


def training_texts() -> list[str]:
    knowledge = Path(__file__).resolve().parent.parent / "knowledge"
    texts = [p.read_text(encoding="utf-8") for p in sorted(knowledge.rglob("*")) if p.is_file() and p.suffix in {".md", ".txt", ".json", ".yaml", ".yml"}]
    return texts + english_like_corpus()


@pytest.fixture(scope="session")
def trained_tokenizer():
    from kit.tokens.tokenizer import Tokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a small knowledge folder may not fill the vocabulary
        return Tokenizer.train(training_texts(), TEST_VOCAB_SIZE, progress=False)


@pytest.fixture(scope="session")
def tokenizer_dir(trained_tokenizer, tmp_path_factory):
    return trained_tokenizer.save(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def gsm8k_example() -> dict:
    return json.loads((FIXTURES / "gsm8k_example.json").read_text(encoding="utf-8"))
