"""Files a person edits or brings, read with every value checked where it is read.

A checkpoint's config.json, a --targets file, a memory benchmark, a conversation with a number for a
part's text, YAML nested a thousand deep: each bad value is one line that names the file and the
place, a non-zero exit (2 for bad input), no traceback, and nothing the user had is lost.
"""

from __future__ import annotations

import json

import pytest
import torch

from kit.__main__ import main as kit_main
from kit.training.checkpoints import CHECKPOINT, CONFIG_FILE, CheckpointError, read_checkpoint, save_checkpoint
from kit.training.model import GPT, GPTConfig
from kit.commands.export import main as export_main
from kit.commands.validate import main as validate_main
from kit.records import read_records

DEEP = "[" * 5000 + "]" * 5000


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """`python -m kit ARGV` in this process: (exit code, stdout, stderr)."""
    try:
        code = kit_main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---- checkpoints -----------------------------------------------------------------------------------

@pytest.fixture
def checkpoint(tmp_path):
    """A checkpoint after 2 steps; returns its config.json."""
    model = GPT(GPTConfig(vocab_size=64, sequence_len=16, n_layer=1, n_head=2, n_embd=32))
    history = [{"step": 1, "loss": 4.1}, {"step": 2, "loss": 3.9}]
    save_checkpoint(tmp_path, model, torch.optim.AdamW(model.parameters()), {"step": 2, "history": history})
    return tmp_path / CHECKPOINT / CONFIG_FILE


@pytest.mark.parametrize("edit, says", [
    ({"step": "abc"}, "'step' is \"abc\", not a number of steps"),
    ({"step": -1}, "'step' is -1"),
    ({"step": 999}, "'step' is 999 but the history ends at step 2"),
    ({"step": None}, "'step' is null"),
    ({"history": "long"}, "'history' is not a list"),
    ({"history": [{"step": 1}, {"loss": 2}]}, "'history' is not a list"),
])
def test_a_hand_edited_checkpoint_state_is_refused_in_one_line(checkpoint, edit, says):
    config = json.loads(checkpoint.read_text())
    checkpoint.write_text(json.dumps({**config, **edit}))
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(checkpoint.parent.parent)
    assert str(caught.value).startswith(f"{checkpoint}: refused: {says}") and "\n" not in str(caught.value)


@pytest.mark.parametrize("key", ["step", "history"])
def test_a_checkpoint_missing_its_step_or_history_is_refused(checkpoint, key):
    config = json.loads(checkpoint.read_text())
    del config[key]
    checkpoint.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=f"{CONFIG_FILE}: refused: '{key}' is"):
        read_checkpoint(checkpoint.parent.parent)


# ---- conversation files ----------------------------------------------------------------------------

GOOD = {"id": "g", "messages": [{"role": "user", "content": "Who made you?"},
                                {"role": "assistant", "content": "Andrej Karpathy made me, nanochat."}]}
NUMBER_TEXT = {"id": "n", "messages": [{"role": "user", "content": "hi"},
                                       {"role": "assistant", "content": [{"type": "text", "text": 5}]}]}


@pytest.fixture
def number_text(tmp_path):
    path = tmp_path / "parts.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(NUMBER_TEXT) + "\n")
    return path


def test_quality_reports_a_part_with_a_number_for_text_at_its_line(number_text, capsys):
    code, out, err = run(["quality", str(number_text)], capsys)
    assert code == 1 and one_line(err) == f"{number_text}:2: message 1 content part 0: 'text' is not a string (5)"


def test_quality_reports_the_same_in_the_reference(number_text, tmp_path, capsys):
    mine = tmp_path / "mine.jsonl"
    mine.write_text(json.dumps(GOOD) + "\n")
    code, out, err = run(["quality", str(mine), "--reference", str(number_text)], capsys)
    assert code == 1 and one_line(err).startswith(f"{number_text}:2: message 1 content part 0")


def test_judge_reports_a_part_with_a_number_for_text_before_asking_anything(number_text, tmp_path, fake_openai,
                                                                           capsys):
    srv = fake_openai()
    scores = tmp_path / "scores.jsonl"
    code, out, err = run(["judge", str(number_text), "--out", str(scores), "--endpoint", srv.base_url,
                          "--model", "fake-model"], capsys)
    assert code != 0 and f"{number_text}:2: message 1 content part 0" in one_line(err)
    assert not srv.chat_requests and not scores.exists()


# ---- quality options -------------------------------------------------------------------------------

@pytest.mark.parametrize("targets, says", [
    ({"identity": 5}, "identity: expected {element: share}, got 5"),
    ({"identity": {"x": "half"}}, 'identity: x: a share is a number from 0 to 1, got "half"'),
    ({"identity": {"x": 7}}, "identity: x: a share is a number from 0 to 1, got 7"),
    ([1, 2], "expected {dimension: {element: share}}, got list"),
])
@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_quality_targets_of_the_wrong_shape_are_one_line(targets, says, suffix, number_text, tmp_path, capsys):
    spec = tmp_path / f"targets{suffix}"
    spec.write_text(json.dumps(targets))  # JSON is YAML too
    code, out, err = run(["quality", str(number_text), "--targets", str(spec)], capsys)
    assert code == 2 and one_line(err) == f"kit quality: {spec}: {says}"


@pytest.mark.parametrize("num_perm", ["0", "-3", "100000000"])
def test_quality_num_perm_out_of_range_is_one_line(num_perm, number_text, capsys):
    code, out, err = run(["quality", str(number_text), "--num-perm", num_perm], capsys)
    assert code == 2 and one_line(err) == f"kit quality: --num-perm: num_perm must be 16..1024, got {num_perm}"


# ---- memory benchmark ------------------------------------------------------------------------------

BENCH = {"task_id": "t", "chunks": ["2024-01-02\nuser: I spent 5 yuan on coffee.", "2024-01-05\nuser: 7 yuan on tea."],
         "questions": [{"qid": "q0", "query": "How much in total?", "answer": "12.00", "position": 1,
                        "category": "total_amount"}]}


@pytest.mark.parametrize("edit, says", [
    ({"category": "weather"}, "question 0 has category 'weather', not one of time_range_scene_amount"),
    ({"answer": None}, "question 0 has answer null, not a string"),
    ({"answer": "twelve"}, "question 0 has answer 'twelve', not an amount"),
    ({"position": True}, "question 0 has position true outside the chunks"),
    ({"category": "max_frequency_date", "answer": "Jan 5"}, "question 0 has answer 'Jan 5', not a date"),
])
def test_memory_eval_refuses_a_question_it_cannot_score_in_one_line(edit, says, tmp_path, fake_openai, capsys):
    srv = fake_openai()
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({**BENCH, "questions": [{**BENCH["questions"][0], **edit}]}))
    code, out, err = run(["memory", "eval", str(bench), "--endpoint", srv.base_url, "--model", "fake-model",
                          "--no-progress"], capsys)
    assert code == 2 and one_line(err).startswith(f"kit memory eval: error: {bench}: {says}")
    assert not srv.chat_requests and not (tmp_path / "eval.json").exists()


@pytest.mark.parametrize("option, value", [("--context_tokens", "-5"), ("--llm_concurrency", "0")])
def test_memory_eval_refuses_a_negative_budget_before_asking(option, value, tmp_path, fake_openai, capsys):
    srv = fake_openai()
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(BENCH))
    code, out, err = run(["memory", "eval", str(bench), option, value, "--endpoint", srv.base_url,
                          "--model", "fake-model", "--no-progress"], capsys)
    assert code == 2 and one_line(err).startswith(f"kit memory eval: error: {option} must be")
    assert not srv.chat_requests and not (tmp_path / "eval.json").exists()


# ---- YAML nested too deep --------------------------------------------------------------------------

def test_run_refuses_a_parameter_nested_too_deep(capsys):
    code, out, err = run(["run", "-p", f"seed={DEEP}", "--list"], capsys)
    assert code == 2 and one_line(err) == "kit run: -p seed: nested more than 64 levels deep"


def test_run_refuses_a_parameters_file_nested_too_deep(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(f"seed: {DEEP}\n")
    code, out, err = run(["run", "-f", str(params), "--list"], capsys)
    assert code == 2 and one_line(err).startswith(f"kit run: {params}: not valid YAML: nested more than 64")


def test_validate_refuses_rules_nested_too_deep(number_text, tmp_path, capsys):
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"too_short: {DEEP}\n")
    code, out, err = run(["validate", str(number_text), "--rules", str(rules)], capsys)
    assert code == 2 and one_line(err).startswith(f"kit validate: {rules}")


# ---- nesting past the limit ----------------------------------------------------------------------

DEEP_META = '{"id": "x", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], ' \
            '"meta": ' + "[" * 5000 + "]" * 5000 + "}\n"


def test_deeply_nested_input_is_a_problem_of_its_line_in_every_reader(tmp_path, capsys, tokenizer_dir):
    bad = tmp_path / "deep.jsonl"
    bad.write_text(DEEP_META)
    result = read_records(bad, strict=False)
    assert result.records == [] and "nested more than" in str(result.errors[0]) and ":1:" in str(result.errors[0])

    assert validate_main([str(bad)]) == 1
    captured = capsys.readouterr()
    assert f"{bad}:1: " in captured.out and "nested more than" in captured.out
    from kit.commands.quality import main as quality_main
    from kit.commands.midtrain import main as midtrain_main
    from kit.commands.tokens import main as tokens_main

    commands = {"export": lambda: export_main([str(bad), "--format", "customjson", "--output", str(tmp_path / "o")]),
                "quality": lambda: quality_main([str(bad)]),
                "tokens": lambda: tokens_main([str(bad), "--tokenizer", str(tokenizer_dir)]),
                "midtrain": lambda: midtrain_main(["--data", str(bad), "--out", str(tmp_path / "m"), "--size", "5",
                                                   "--steps", "1", "--device", "cpu"])}
    for name, command in commands.items():
        try:
            command()
        except SystemExit:
            pass
        err = capsys.readouterr().err
        assert "nested more than" in err and "Traceback" not in err, (name, err)


def test_memory_datasets_and_training_sets_are_read_within_limits(tmp_path):
    from kit.training.datasets import DatasetError, SmolTalk
    from kit.memory.dataset import read_dataset

    deep = tmp_path / "synth.json"
    deep.write_text('{"task_id": "t", "chunks": [], "questions": ' + "[" * 5000 + "]" * 5000 + "}")
    with pytest.raises(ValueError, match="synth.json: not valid JSON \\(nested more than 64"):
        read_dataset(deep)
    rows = tmp_path / "smoltalk.jsonl"
    rows.write_bytes(b"\xef\xbb\xbf" + DEEP_META.encode())
    with pytest.raises(DatasetError, match="smoltalk.jsonl: row 1: nested more than 64"):
        SmolTalk(rows)
