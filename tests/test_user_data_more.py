"""Issue 21's rules on the commands tests/test_user_data.py does not reach: memory, generate, tokenizer.

Each test failed before its change: `memory eval` onto its own dataset, `generate --fresh` on a file
the kit did not write, relative paths of generate, memory and the tokenizer taken from the working
directory (kit.paths.argument), and inf/nan refused by every float option of generate and memory.
"""

from __future__ import annotations

import json

import pytest

from fake_openai import Reply
from kit.commands.generate import main as generate_main
from kit.commands.memory import main as memory_main
from kit.commands.tokenizer import main as tokenizer_main

GOOD = json.dumps({"messages": [{"role": "user", "content": "hi, who are you?"},
                                {"role": "assistant", "content": "I am nanochat, a small open-source LLM."}]})
NOWHERE = "http://127.0.0.1:9/v1"  # nothing listens: a command that got as far as asking would fail


def one_line(err: str) -> str:
    err = err.strip()
    assert "Traceback" not in err and err.count("\n") == 0, err
    return err


def dataset(path):
    """A benchmark file in memory generate's layout (one record)."""
    path.write_text(json.dumps({"task_id": "t", "questions": [], "chunks": ["a session"], "metadata": {},
                                "generator": {"seed": 0}}), encoding="utf-8")
    return path


# ---- memory: an output that is the input, or a file it did not write -----------------------------

def test_memory_eval_refuses_its_dataset_as_out_before_reading_it(tmp_path, capsys):
    data = dataset(tmp_path / "D.json")
    before = data.read_bytes()
    assert memory_main(["eval", str(data), "--out", str(data), "--endpoint", NOWHERE, "--force"]) == 1
    assert "is also an input" in one_line(capsys.readouterr().err)
    assert data.read_bytes() == before


def test_memory_keeps_a_file_it_did_not_write(tmp_path, capsys):
    data = dataset(tmp_path / "D.json")
    mine = tmp_path / "eval.json"  # eval's default output, beside the dataset
    mine.write_text("my notes\n")
    assert memory_main(["eval", str(data), "--endpoint", NOWHERE]) == 1
    err = one_line(capsys.readouterr().err)
    assert "eval.json exists and is not this command's output (a file of 9 bytes starting 'my notes')" in err
    assert "--force" in err
    assert memory_main(["generate", "--out", str(mine), "--endpoint", NOWHERE, "--fast"]) == 1
    assert "is not this command's output" in one_line(capsys.readouterr().err)
    assert mine.read_text() == "my notes\n"


# ---- generate --fresh deletes only what generate made ----------------------------------------------

def test_generate_fresh_never_deletes_a_file_it_did_not_write(tmp_path, capsys, fake_openai, monkeypatch):
    srv = fake_openai(lambda request, n_seen: Reply(content=GOOD))
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "mine.jsonl"
    mine.write_text("the user's own file\n")
    command = ["--num", "1", "--output", "mine.jsonl", "--fresh", "--endpoint", srv.base_url, "--no-progress"]
    assert generate_main(command) == 1
    err = one_line(capsys.readouterr().err)
    assert f"--fresh would delete {mine} (a file of 20 bytes" in err and "add --force" in err
    assert mine.read_text() == "the user's own file\n"
    assert generate_main([*command, "--force"]) == 0  # asked for: the file becomes the run's
    assert len(mine.read_text().splitlines()) == 1 and (tmp_path / "mine.jsonl.journal.jsonl").is_file()
    assert generate_main(command) == 0  # the kit's own run: --fresh starts it over without --force


# ---- paths typed on a command line are taken from the working directory -----------------------------

def test_generate_and_memory_take_relative_paths_from_the_working_directory(tmp_path, capsys, fake_openai,
                                                                              monkeypatch):
    srv = fake_openai(lambda request, n_seen: Reply(content=GOOD))
    monkeypatch.chdir(tmp_path)
    assert generate_main(["--num", "1", "--output", "c.jsonl", "--endpoint", srv.base_url, "--no-progress"]) == 0
    assert (tmp_path / "c.jsonl").is_file()
    capsys.readouterr()
    (tmp_path / "D.json").write_text("not json")
    assert memory_main(["eval", "D.json", "--endpoint", NOWHERE]) == 2
    assert str(tmp_path / "D.json") in one_line(capsys.readouterr().err)


def test_tokenizer_train_takes_relative_paths_from_the_working_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.txt").write_text("hello world, a small corpus for a small tokenizer\n" * 20)
    assert tokenizer_main(["train", "--input", "text.txt", "--output", "tok", "--vocab-size", "300",
                           "--no-knowledge"]) == 0
    assert f"saved to {tmp_path / 'tok'}" in capsys.readouterr().out
    assert (tmp_path / "tok" / "tokenizer.json").is_file()


# ---- float options refuse inf and nan at the command line -------------------------------------------

@pytest.mark.parametrize("option", ["--temperature", "--price-in", "--price-out", "--timeout", "--item-timeout"])
@pytest.mark.parametrize("value", ["inf", "nan"])
def test_generate_refuses_float_options_that_are_not_finite(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as exit_:
        generate_main(["--num", "1", "--output", str(tmp_path / "c.jsonl"), option, value])
    assert exit_.value.code == 2
    assert f"{value!r} is not a finite number" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("command", [["generate", "--out", "D.json"], ["eval", "D.json"]])
@pytest.mark.parametrize("option", ["--timeout", "--item-timeout"])
def test_memory_refuses_float_options_that_are_not_finite(tmp_path, capsys, monkeypatch, command, option):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        memory_main([*command, option, "inf"])
    assert exit_.value.code == 2
    assert "'inf' is not a finite number" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
