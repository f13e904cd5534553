"""kit.commands.llm_flags: every command that asks a model takes the same LLM flags with one meaning."""

from __future__ import annotations

import argparse

import pytest

from kit.commands import generate, identity, judge, memory
from kit.commands.llm_flags import add_llm_flags, llm_options
from fake_openai import MODEL, hang_responder
from kit.commands.generate import main as generate_main

COMMANDS = {
    "generate": (generate.main, ["--num", "1", "--output", "c.jsonl"]),
    "judge": (judge.main, ["c.jsonl", "--out", "s.jsonl"]),
    "memory generate": (memory.main, ["generate", "--out", "D.json"]),
    "memory eval": (memory.main, ["eval", "D.json"]),
    "identity eval": (identity.main, ["eval"]),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("option", ["--timeout", "--item-timeout"])
@pytest.mark.parametrize("value", ["0", "-1", "inf"])
def test_every_llm_command_refuses_a_timeout_that_is_not_above_zero(tmp_path, monkeypatch, capsys, command, option, value):
    monkeypatch.chdir(tmp_path)
    main, argv = COMMANDS[command]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, option, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert ("'inf' is not a finite number" if value == "inf" else f"{option} must be > 0 seconds") in err
    assert not any(tmp_path.iterdir())  # refused before anything is written


def test_the_flags_give_the_keyword_arguments_every_stage_takes():
    parser = argparse.ArgumentParser()
    add_llm_flags(parser)
    args = parser.parse_args(["--endpoint", "http://a/v1", "--endpoint", "http://b/v1", "--model", "m",
                              "--timeout", "5", "--item-timeout", "9", "--no-cache"])
    assert llm_options(parser, args) == {"endpoint": "http://a/v1,http://b/v1", "model": "m", "cache": False,
                                         "timeout": 5.0, "item_timeout": 9.0}
    args = parser.parse_args([])
    assert llm_options(parser, args)["endpoint"] is None and llm_options(parser, args)["cache"] is True


def test_generate_cli_takes_timeouts_and_fails_truthfully(tmp_path, fake_openai, capsys):
    srv = fake_openai(hang_responder)
    rc = generate_main(["--num", "2", "--output", str(tmp_path / "c.jsonl"), "--endpoint", srv.base_url,
                        "--model", MODEL, "--no-progress", "--timeout", "0.3", "--item-timeout", "0.8"])
    err = capsys.readouterr().err
    assert rc == 1 and "2 of 2 items failed with API errors" in err and "timed out after" in err
