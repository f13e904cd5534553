"""kit.tokens.tokenizer: training with rustbpe, encoding with tiktoken, the special tokens, a safe file
format with an exact round trip, and the `python -m kit tokenizer train` command."""

from __future__ import annotations

import json
import pickle
import re
import warnings

import pytest

from kit.commands.tokenizer import main
from kit.tokens.tokenizer import SPECIAL_TOKENS, SPLIT_PATTERN, Tokenizer, default_corpus, texts_from_paths

SAMPLES = [
    "Weng earns $12 an hour for babysitting.",
    "12345678 and 3.14159, then 1,000,000!",
    "naïve café, 日本語, emoji 🙂🚀 and tabs\tand\nnew lines\r\n",
    "   leading spaces and trailing   ",
    "<|bos|><|assistant_end|> are just characters here",
    "",
]


def test_special_tokens_follow_the_merges(trained_tokenizer):
    tok = trained_tokenizer
    n_ranks = tok.vocab_size - len(SPECIAL_TOKENS)
    assert [tok.special_id(name) for name in SPECIAL_TOKENS] == list(range(n_ranks, tok.vocab_size))
    assert tok.bos_id == tok.special_id("<|bos|>") == n_ranks
    assert [tok.token_text(tok.special_id(name)) for name in SPECIAL_TOKENS] == list(SPECIAL_TOKENS)
    with pytest.raises(KeyError, match="not a special token"):
        tok.special_id("<|eos|>")


def test_vocab_size_counts_bytes_merges_and_specials(trained_tokenizer):
    from token_fixtures import TEST_VOCAB_SIZE

    tok = trained_tokenizer
    assert tok.vocab_size == TEST_VOCAB_SIZE  # 256 bytes + merges + 9 specials
    assert not tok.is_special(TEST_VOCAB_SIZE - 10) and len(tok.token_bytes(TEST_VOCAB_SIZE - 10)) > 1  # the last merge
    assert tok.is_special(TEST_VOCAB_SIZE - 9)


def test_encode_decode_round_trip(trained_tokenizer):
    tok = trained_tokenizer
    for text in SAMPLES:
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert not any(tok.is_special(i) for i in ids)
    assert tok.encode_batch(SAMPLES) == [tok.encode(t) for t in SAMPLES]


def test_special_strings_in_text_are_ordinary(trained_tokenizer):
    tok = trained_tokenizer
    ids = tok.encode("<|bos|>")
    assert tok.bos_id not in ids and len(ids) > 1 and tok.decode(ids) == "<|bos|>"


def test_numbers_split_in_groups_of_two(trained_tokenizer):
    pieces = [trained_tokenizer.token_text(i) for i in trained_tokenizer.encode("2025")]
    assert all(len(p) <= 2 for p in pieces) and "".join(pieces) == "2025"
    assert r"\p{N}{1,2}" in SPLIT_PATTERN


def test_token_text_shows_partial_utf8_as_escapes(trained_tokenizer):
    tok = trained_tokenizer
    # the byte tokens 0..255 are the first ranks; 0xF0 alone is not valid UTF-8
    assert tok.token_text(tok.encoding.encode_single_token(b"\xf0")) == "\\xf0"
    assert "".join(tok.token_bytes(i).decode("latin-1") for i in tok.encode("🙂")).encode("latin-1") == "🙂".encode()


def test_train_warns_when_corpus_is_too_small():
    with pytest.warns(UserWarning, match=r"only \d+ merges, so the vocabulary has \d+ ids"):
        tok = Tokenizer.train(["tiny corpus, tiny corpus"], 2000, progress=False)
    assert tok.vocab_size < 2000 and tok.decode(tok.encode("tiny")) == "tiny"
    with pytest.raises(ValueError, match="at least 265"):
        Tokenizer.train(["x"], 100, progress=False)


def test_train_refuses_an_empty_corpus(tmp_path, capsys):
    from kit.commands.tokenizer import main

    with pytest.raises(ValueError, match="no training text"):
        Tokenizer.train(["", "  \n"], 300, progress=False)
    (tmp_path / "empty").mkdir()
    assert main(["train", "--no-knowledge", "--input", str(tmp_path / "empty"), "--output", str(tmp_path / "tok")]) == 1
    assert "no training text" in capsys.readouterr().err and not (tmp_path / "tok").exists()
    (tmp_path / "tok").write_text("")
    assert main(["train", "--output", str(tmp_path / "tok")]) == 1
    assert capsys.readouterr().err == f"kit tokenizer: --output {tmp_path / 'tok'} is a file; give a folder\n"


def test_save_load_round_trip_is_exact(trained_tokenizer, tmp_path, gsm8k_example):
    trained_tokenizer.save(tmp_path)
    loaded = Tokenizer.load(tmp_path)
    assert loaded.vocab_size == trained_tokenizer.vocab_size
    assert loaded.special_ids == trained_tokenizer.special_ids
    for text in SAMPLES:
        assert loaded.encode(text) == trained_tokenizer.encode(text)
    assert loaded.render_conversation(gsm8k_example["conversation"]) == trained_tokenizer.render_conversation(gsm8k_example["conversation"])


def test_saved_files_are_plain_data_and_load_runs_no_code(trained_tokenizer, tmp_path, monkeypatch):
    trained_tokenizer.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer.bpe", "tokenizer.json"]
    config = json.loads((tmp_path / "tokenizer.json").read_text())
    assert config["pattern"] == SPLIT_PATTERN and config["vocab_size"] == trained_tokenizer.vocab_size
    lines = (tmp_path / "tokenizer.bpe").read_text().splitlines()
    assert all(re.fullmatch(r"[A-Za-z0-9+/]+=* \d+", line) for line in lines)
    assert [int(line.split()[1]) for line in lines] == list(range(len(lines)))

    def forbidden(*args, **kwargs):
        raise AssertionError("loading a tokenizer must not unpickle anything")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    Tokenizer.load(tmp_path)


def test_load_rejects_damaged_files(trained_tokenizer, tmp_path):
    trained_tokenizer.save(tmp_path)
    ranks = tmp_path / "tokenizer.bpe"
    good = ranks.read_text()
    ranks.write_text(good.replace("\n", "\nnot base64 at all\n", 1))
    with pytest.raises(ValueError, match=r"tokenizer.bpe:2: expected 'base64 rank'"):
        Tokenizer.load(tmp_path)
    ranks.write_text("\n".join(good.splitlines()[:-1]) + "\n")
    with pytest.raises(ValueError, match="special tokens do not match"):
        Tokenizer.load(tmp_path)
    ranks.unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer.bpe: missing"):
        Tokenizer.load(tmp_path)


def test_corpus_from_files(tmp_path, monkeypatch):
    (tmp_path / "knowledge").mkdir()
    (tmp_path / "knowledge" / "facts.md").write_text("# Facts\nThe kit tokenizes.")
    conv = tmp_path / "c.jsonl"
    conv.write_text(json.dumps({"id": "a", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "text", "text": "x="}, {"type": "python", "text": "1+1"}]}]}) + "\n")
    assert list(texts_from_paths([conv])) == ["hi", "x=1+1"]
    monkeypatch.setenv("KIT_PROJECT_ROOT", str(tmp_path))
    assert list(default_corpus([conv])) == ["# Facts\nThe kit tokenizes.", "hi", "x=1+1"]
    assert list(default_corpus([conv], texts=iter(["task text"])))[-1] == "task text"
    (tmp_path / "model.bin").write_bytes(b"\x00\x01")
    with pytest.raises(ValueError, match="cannot read training text"):
        list(texts_from_paths([tmp_path / "model.bin"]))


def test_cli_train(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The quick brown fox jumps over the lazy dog. " * 50)
    conv = tmp_path / "c.jsonl"
    conv.write_text('[{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "general kenobi"}]\n')
    out = tmp_path / "tok"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["train", "--input", str(corpus), str(conv), "--vocab-size", "300", "--output", str(out), "--no-knowledge"])
    assert code == 0 and "saved to" in capsys.readouterr().out
    assert Tokenizer.load(out).decode(Tokenizer.load(out).encode("hello fox")) == "hello fox"


def test_cli_bad_input_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [}\n')
    assert main(["train", "--input", str(bad), "--output", str(tmp_path / "t"), "--no-knowledge"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.jsonl:1: invalid JSON" in err
    assert main(["train", "--input", str(tmp_path / "missing.txt"), "--output", str(tmp_path / "t"), "--no-knowledge"]) == 1
    assert "no such file" in capsys.readouterr().err
