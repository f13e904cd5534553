"""kit.tokens.measure: compression on held-out text, the longest learned tokens, supervised shares."""

from __future__ import annotations

from types import SimpleNamespace

from kit.paths import knowledge_dir
from kit.tokens import measure
from kit.tokens.tokenizer import texts_from_paths


def test_the_held_out_file_is_kept_out_of_the_training_texts():
    train, held = measure.split_corpus(texts=["an extra text"])
    assert held == list(texts_from_paths([knowledge_dir() / measure.HELD_OUT]))
    assert held and not set(held) & set(train) and train[-1] == "an extra text"


def test_a_larger_vocabulary_compresses_both_texts_and_its_own_text_more():
    train = ["the cat sat on the mat with the other cats and the dogs", "a dog and a cat sat together"] * 40
    held = ["the dogs sat on a mat", "cats and dogs"]
    rows = measure.compression_sweep(train, held, (265, 300))
    assert rows[0]["vocab_size"] == 265 < rows[1]["vocab_size"] <= 300  # a short corpus may run out of merges
    assert rows[0]["train chars/token"] == 1.0 == rows[0]["held-out chars/token"]  # bytes only: one char a token
    assert rows[1]["train chars/token"] > rows[1]["held-out chars/token"] > 1.0
    assert "The training text gains more" in measure.compression_sentence(rows)
    tok = rows[1]["tokenizer"]
    longest = measure.longest_tokens(tok, 3)
    assert len(longest) == 3 and len(longest[0].encode()) >= len(longest[-1].encode()) > 1
    assert measure.chars_per_token(tok, []) == 0.0


def test_supervised_shares_per_source():
    rendered = [SimpleNamespace(ids=[1, 2, 3, 4], mask=[0, 0, 1, 1]), SimpleNamespace(ids=[1, 2], mask=[0, 1]),
                SimpleNamespace(ids=[], mask=[])]
    assert measure.supervised_fractions(rendered, ["a", "b", "a"]) == {"a": [0.5], "b": [0.5]}
    fig = measure.supervised_histogram({"a": [0.5, 0.6], "b": [0.2]})
    assert len(fig.axes) == 2
    assert measure.compression_figure([{"vocab_size": 512, "train chars/token": 2.0, "held-out chars/token": 1.8}]).axes
