"""Nothing the user owns is lost or silently mixed, by any command.

Every command that reads a file and writes one refuses an output that is its input, before reading or
writing anything (the input's bytes are compared before and after); an existing output the kit did not
make is replaced only with --force, and deleted (finetune's checkpoints, generate --fresh) only with it;
a finetune folder is always one run's; numbers are finite (inf and nan refused by every float option);
bad parameters and score lines are one line; paths come from the working directory (kit.paths.argument);
run ids and presets are names. Finetuning runs on the tiny model of tests/tiny_lm.py.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from tiny_lm import IDENTITY, make_tiny_model
from kit import paths, pipeline
from kit.commands import run as run_command
from kit.commands.export import main as export_main
from kit.manifest import write_manifest
from kit.commands.judge import main as judge_main
from kit.commands.quality import main as quality_main
from kit.training import finetune as ft
from kit.commands.identity import main as identity_main
from kit.commands.finetune import main as finetune_main
from kit.commands.midtrain import main as midtrain_main
from kit.training.loop import Diverged
from fake_openai import Reply
from kit.commands.generate import main as generate_main
from kit.commands.memory import main as memory_main
from kit.commands.tokenizer import main as tokenizer_main

RECORD = {"id": "a", "messages": [{"role": "user", "content": "Who are you?"},
                                  {"role": "assistant", "content": "I am nanochat, a small open model."}],
          "meta": {"topic": "identity"}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def conversations(path: Path, n: int = 3) -> Path:
    path.write_text("".join(json.dumps({**RECORD, "id": f"r{i}"}) + "\n" for i in range(n)), encoding="utf-8")
    return path


def one_line(err: str) -> str:
    err = err.strip()
    assert "Traceback" not in err and err.count("\n") == 0, err
    return err


def run_ft(tiny, out, **kw):
    kw.setdefault("steps", 2)
    kw.setdefault("lr", 3e-3)
    return ft.finetune([IDENTITY], out, base=tiny, progress=False, **kw)


GOOD = json.dumps({"messages": [{"role": "user", "content": "hi, who are you?"},
                                {"role": "assistant", "content": "I am nanochat, a small open-source LLM."}]})


NOWHERE = "http://127.0.0.1:9/v1"  # nothing listens: a command that got as far as asking would fail


def dataset(path):
    """A benchmark file in memory generate's layout (one record)."""
    path.write_text(json.dumps({"task_id": "t", "questions": [], "chunks": ["a session"], "metadata": {},
                                "generator": {"seed": 0}}), encoding="utf-8")
    return path


# ---- a command never deletes what it did not make ------------------------------------------------

def test_finetune_never_deletes_a_checkpoints_folder_it_did_not_make(tiny, tmp_path, capsys):
    out = tmp_path / "D"
    mine = out / "checkpoints" / "my-notes.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("the user's own checkpoints")
    with pytest.raises(ft.FinetuneError, match=r"--out .*D exists and is not this command's output \(a folder "
                                               r"holding checkpoints/\); .* --force"):
        run_ft(tiny, out)
    assert finetune_main(["--data", str(IDENTITY), "--out", str(out), "--base", str(tiny), "--steps", "1"]) == 2
    assert "add --force to replace it" in one_line(capsys.readouterr().err)
    assert mine.read_text() == "the user's own checkpoints"
    assert not paths.staging_path(out).exists()
    result = run_ft(tiny, out, steps=1, force=True)  # asked for: the folder becomes the run's
    assert result.out_dir == out and (out / "manifest.json").is_file() and not mine.exists()


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


# ---- an output that is an input is refused before anything is read or written --------------------

@pytest.mark.parametrize("fmt", ["customjson", "parquet"])
def test_export_refuses_its_input_as_output_and_an_existing_file_without_force(tmp_path, capsys, fmt):
    data = conversations(tmp_path / "F.jsonl")
    before = data.read_bytes()
    assert export_main([str(data), "--format", fmt, "--output", str(data)]) == 2
    assert "is also an input" in one_line(capsys.readouterr().err)
    assert data.read_bytes() == before
    other = tmp_path / "mine.txt"
    other.write_text("keep me\n")
    assert export_main([str(data), "--format", fmt, "--output", str(other)]) == 2
    assert "exists and is not this command's output (a file of 8 bytes starting 'keep me')" in capsys.readouterr().err
    assert other.read_text() == "keep me\n"
    assert export_main([str(data), "--format", fmt, "--output", str(other), "--force"]) == 0


@pytest.mark.parametrize("extra", [
    lambda d, t: ["--out", str(d)],
    lambda d, t: ["--out", str(t / "S.jsonl"), "--min-score", "5", "--filtered-out", str(d)],
    lambda d, t: ["--out", str(t / "S.jsonl"), "--min-score", "5", "--filtered-out", str(t / "S.jsonl")],
])
def test_judge_refuses_its_input_as_an_output(tmp_path, capsys, extra):
    data = conversations(tmp_path / "F.jsonl")
    before = data.read_bytes()
    assert judge_main([str(data), *extra(data, tmp_path), "--endpoint", "http://127.0.0.1:9/v1"]) == 1
    assert "is also an input" in one_line(capsys.readouterr().err)
    assert data.read_bytes() == before and not (tmp_path / "S.jsonl").exists()


def test_judge_keeps_a_file_it_did_not_write(tmp_path, capsys):
    data = conversations(tmp_path / "F.jsonl")
    other = conversations(tmp_path / "other.jsonl", 2)
    before = other.read_bytes()
    assert judge_main([str(data), "--out", str(other), "--endpoint", "http://127.0.0.1:9/v1"]) == 1
    err = one_line(capsys.readouterr().err)
    assert "other.jsonl exists and is not this command's output (a file of" in err and "--force" in err
    assert other.read_bytes() == before


@pytest.mark.parametrize("option", ["--dedup-out", "--reference"])
def test_quality_refuses_its_input_as_dedup_out(tmp_path, capsys, option):
    data = conversations(tmp_path / "F.jsonl")
    ref = conversations(tmp_path / "R.jsonl")
    before = data.read_bytes(), ref.read_bytes()
    args = [str(data), "--dedup-out", str(data)] if option == "--dedup-out" else \
        [str(data), "--reference", str(ref), "--dedup-out", str(ref)]
    assert quality_main(args) == 2
    assert "is also an input" in one_line(capsys.readouterr().err)
    assert (data.read_bytes(), ref.read_bytes()) == before


def test_finetune_refuses_an_out_folder_holding_its_data(tiny, tmp_path, capsys):
    out = tmp_path / "D"
    out.mkdir()
    data = out / "train.jsonl"
    data.write_bytes(IDENTITY.read_bytes())
    assert finetune_main(["--data", str(data), "--out", str(out), "--base", str(tiny), "--steps", "1", "--force"]) == 2
    assert "is also an input" in one_line(capsys.readouterr().err)
    assert data.read_bytes() == IDENTITY.read_bytes()
    assert finetune_main(["--data", str(data), "--out", str(data), "--steps", "1"]) == 2  # a file as the output folder
    assert data.read_bytes() == IDENTITY.read_bytes()


def test_midtrain_refuses_an_input_where_it_writes(tmp_path, capsys):
    out = tmp_path / "M"
    out.mkdir()
    data = out / "manifest.json"  # odd, but the user's: midtrain would write its manifest over it
    conversations(data)
    before = data.read_bytes()
    assert midtrain_main(["--data", str(data), "--out", str(out), "--size", "4"]) == 2
    assert "would overwrite the input" in one_line(capsys.readouterr().err)
    assert data.read_bytes() == before


def test_midtrain_writes_over_another_programs_files_only_with_force(tmp_path):
    from kit.paths import OutputError
    from kit.training.midtrain import midtrain

    out = tmp_path / "M"
    out.mkdir()
    (out / "history.json").write_text("[my own notes]")
    with pytest.raises(OutputError, match=r"M exists and is not this command's output .*--force"):
        midtrain([], None, out_dir=out, steps=1)
    assert (out / "history.json").read_text() == "[my own notes]"


def test_identity_eval_refuses_to_write_its_result_over_the_model(tmp_path, capsys):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + bytes(60))
    assert identity_main(["eval", "--gguf", str(model), "--out", str(model)]) == 2
    assert "is also an input" in one_line(capsys.readouterr().err)
    assert model.read_bytes() == b"GGUF" + bytes(60)


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


# ---- a finetune output folder is always one run's ------------------------------------------------

def test_a_rerun_without_gguf_leaves_no_stale_model_gguf_and_no_temp_files(tiny, tmp_path):
    out = tmp_path / "D"
    run_ft(tiny, out)
    manifest = json.loads((out / "manifest.json").read_text())
    # what an earlier run with --gguf left: a listed model.gguf, and a temp file of an export killed midway
    (out / "model.gguf").write_bytes(b"GGUF old weights")
    (out / ".model.gguf.0123456789ab.tmp").write_bytes(b"half an export")
    manifest["outputs"].append("model.gguf")
    (out / "manifest.json").write_text(json.dumps(manifest))
    result = run_ft(tiny, out, steps=3)
    assert result.gguf is None and not (out / "model.gguf").exists()
    assert not list(out.glob(".*.tmp")) and not paths.staging_path(out).exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == sorted(["manifest.json", *manifest["outputs"]])
    assert manifest["steps"] == 3


def test_a_run_that_dies_before_the_switch_leaves_the_old_complete_folder(tiny, tmp_path, monkeypatch):
    out = tmp_path / "D"
    run_ft(tiny, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def die(*a, **k):
        raise RuntimeError("killed while drawing the loss plot")

    monkeypatch.setattr(ft, "save_loss_plot", die)
    with pytest.raises(RuntimeError, match="killed"):
        run_ft(tiny, out, steps=3)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # not newer weights beside an older manifest
    assert not paths.staging_path(out).exists()


@pytest.mark.parametrize("finished", [True, False])
def test_a_switch_cut_between_its_two_renames_is_completed_or_undone(tmp_path, monkeypatch, finished):
    dest, staging = tmp_path / "D", paths.staging_path(tmp_path / "D")
    for folder, text in ((dest, "old"), (staging, "new")):
        folder.mkdir()
        (folder / "manifest.json").write_text(text)
    if not finished:
        (staging / "manifest.json").unlink()
    dest.rename(tmp_path / ".D.old")  # what a kill right after switch_folder's first rename leaves
    paths.recover_folder(dest, complete=lambda f: (f / "manifest.json").exists())
    assert (dest / "manifest.json").read_text() == ("new" if finished else "old")
    assert not (tmp_path / ".D.old").exists()
    monkeypatch.setattr(paths, "_exchange", lambda a, b: False)  # a filesystem that cannot swap in one step
    other = paths.staging_path(dest)
    other.mkdir(exist_ok=True)
    (other / "manifest.json").write_text("newer")
    paths.switch_folder(other, dest)
    assert (dest / "manifest.json").read_text() == "newer" and not other.exists()


# ---- numbers are finite, a diverged run saves nothing, manifests are strict JSON -----------------

@pytest.mark.parametrize("option, value", [("--lr", "inf"), ("--epochs", "inf"), ("--lr", "nan"), ("--epochs", "-inf")])
def test_finetune_refuses_numbers_that_are_not_finite(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as exit_:
        finetune_main(["--data", str(IDENTITY), "--out", str(tmp_path / "D"), f"{option}={value}"])
    assert exit_.value.code == 2 and f"{value!r} is not a finite number" in capsys.readouterr().err
    with pytest.raises(ft.FinetuneError, match="must be a finite number"):
        ft.finetune([IDENTITY], tmp_path / "D", **{option[2:]: float(value)})
    assert not (tmp_path / "D").exists()


def test_a_loss_that_is_not_finite_stops_the_run_and_saves_no_model(tiny, tmp_path):
    out = tmp_path / "D"
    with pytest.raises(Diverged, match=r"the loss is (nan|inf) at step \d+ of 6: training diverged"):
        run_ft(tiny, out, steps=6, lr=1e30, checkpoint_every=1)
    assert not out.exists() and not paths.staging_path(out).exists()


def test_a_diverged_midtrain_stops_saves_nothing_and_leaves_no_folder(trained_tokenizer, tmp_path):
    from kit.training.midtrain import midtrain
    from kit.training.tasks import SimpleSpelling

    out = tmp_path / "M"
    tiny = dict(n_layer=1, n_head=2, n_embd=32, sequence_len=32, batch_size=2, eval_every=100, progress=False,
                sample_tokens=0, peak_flops=1e9, val_fraction=0)
    with pytest.raises(Diverged, match=r"the loss is (nan|inf) at step \d+ of 8: training diverged"):
        midtrain(list(SimpleSpelling(12, seed=0)), trained_tokenizer, device="cpu", steps=8, lr=1e30,
                 checkpoint_every=0, out_dir=out, **tiny)
    assert not out.exists()


def test_manifests_are_strict_json(tmp_path):
    path = write_manifest(tmp_path / "manifest.json", {"final_loss": float("nan"), "rows": [float("inf"), 1.5]},
                          with_environment=False)

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    value = json.loads(path.read_text(), parse_constant=refuse)
    assert value["final_loss"] is None and value["rows"] == [None, 1.5]


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


# ---- parameters and score lines: one clear line, no folder left behind ---------------------------

@pytest.mark.parametrize("value", ["8080", "[1, 2]"])
def test_kit_run_refuses_an_endpoint_that_is_not_text_before_making_the_run_folder(tmp_path, capsys, monkeypatch, value):
    monkeypatch.setattr(pipeline, "runs_dir", lambda: tmp_path)
    assert run_command.main(["-p", f"endpoint={value}", "--run-id", "bad-endpoint"]) == 2
    assert "expected text or a list of texts" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "bad-endpoint").exists()


@pytest.mark.parametrize("line, problem", [
    ({"id": "r0", "status": "judged", "persona_followed": 4, "consistent": 5, "natural": 3, "overall": 4},
     "record r0: on_topic missing"),
    ({"id": "r0", "status": "judged", "on_topic": None, "persona_followed": 4, "consistent": 5, "natural": 3,
      "overall": 4}, "record r0: on_topic is null, not a whole number from 1 to 5"),
])
def test_quality_names_a_bad_score_line(tmp_path, capsys, line, problem):
    data = conversations(tmp_path / "F.jsonl")
    scores = tmp_path / "S.jsonl"
    scores.write_text(json.dumps(line) + "\n")
    assert quality_main([str(data), "--scores", str(scores)]) == 2
    assert one_line(capsys.readouterr().err) == f"kit quality: {scores}:1: not a score line: {problem}"


# ---- every path argument is taken from the working directory -------------------------------------

def test_relative_paths_are_taken_from_the_working_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert paths.argument("rel.gguf") == tmp_path / "rel.gguf"
    (tmp_path / "rel.gguf").write_bytes(b"not a model")
    assert identity_main(["eval", "--gguf", "rel.gguf"]) == 1  # checked and loaded at the same path
    assert str(tmp_path / "rel.gguf") in one_line(capsys.readouterr().err)
    assert judge_main(["three.bak", "--out", "s.jsonl", "--endpoint", "http://127.0.0.1:9/v1"]) == 1
    assert str(tmp_path / "three.bak") in one_line(capsys.readouterr().err)


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


# ---- identity eval and finetune say what is wrong, at once ---------------------------------------

def test_identity_eval_on_a_file_that_is_not_a_gguf_is_one_line_and_leaves_no_temp_folder(tmp_path, capsys, monkeypatch):
    fake = tmp_path / "model.gguf"
    fake.write_text("a text file, not a model\n")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert identity_main(["eval", "--gguf", str(fake)]) == 1
    err = one_line(capsys.readouterr().err)
    assert err == f"kit identity eval: error: {fake} is not a GGUF model file (it starts with b'a te', not b'GGUF')"
    assert not list(scratch.iterdir())


def test_finetune_says_a_reply_was_cut_at_the_token_limit(tiny, tmp_path):
    data = tmp_path / "long.jsonl"
    long = {**RECORD, "messages": [{"role": "user", "content": "word " * 40_000}, RECORD["messages"][1]]}
    data.write_text(json.dumps(long) + "\n")
    with pytest.raises(ft.FinetuneError, match=r"1 were cut at the token limit \(512 tokens, the preset's max_tokens\) "
                                               r"before their assistant reply \(first: record a\)"):
        ft.finetune([data], tmp_path / "D", base=tiny, steps=1, progress=False)
    assert not (tmp_path / "D").exists() and not paths.staging_path(tmp_path / "D").exists()


def test_finetune_refuses_tool_parts_before_loading_the_model_with_the_files_index(tmp_path, monkeypatch):
    data = tmp_path / "tools.jsonl"
    record = {"id": "calc", "messages": [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": [{"type": "text", "text": "It is "}, {"type": "python", "text": "2+2"},
                                          {"type": "python_output", "text": "4"}, {"type": "text", "text": "."}]}]}
    data.write_text(json.dumps(record) + "\n")
    import kit.training.base_model as bm

    monkeypatch.setattr(bm, "load_base", lambda *a, **k: pytest.fail("the model was loaded first"))
    with pytest.raises(ft.FinetuneError, match=r"record calc: message 1 has python/python_output parts; .*no-tool-tokens"):
        ft.finetune([data], tmp_path / "D", steps=1, progress=False)
    assert not (tmp_path / "D").exists()


def test_finetune_with_a_missing_base_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "D"
    assert finetune_main(["--data", str(IDENTITY), "--base", str(tmp_path / "missing.gguf"), "--out", str(out)]) == 2
    one_line(capsys.readouterr().err)
    assert not out.exists() and not paths.staging_path(out).exists()


# ---- run ids are matched whole -------------------------------------------------------------------

@pytest.mark.parametrize("run_id", ["ok\n", "ok\nx", "../ok", ""])
def test_a_run_id_with_a_newline_is_refused(tmp_path, run_id):
    with pytest.raises(pipeline.PipelineError, match="--run-id"):
        pipeline.run_pipeline(preset=None, run_id=run_id or "\n", runs_root=tmp_path)
    assert not list(tmp_path.iterdir())


# ---- a resumed run says what changed; presets are names ------------------------------------------

def test_a_preset_is_a_name_never_a_path(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("seed: 1\n")
    for name in (str(tmp_path / "evil"), "../presets/smoke", "smoke.yaml"):
        with pytest.raises(pipeline.PipelineError, match=f"unknown preset {name!r}"):
            pipeline.load_preset(name)


def test_a_resume_with_other_options_says_what_changed_and_the_hint_repeats_the_command(tmp_path, monkeypatch):
    from test_pipeline import SETUP, write_notebook

    monkeypatch.setattr(pipeline, "_sources_digest", lambda: "pinned")
    folder = tmp_path / "nbs"
    folder.mkdir()
    write_notebook(folder / "01_a.ipynb", 'run_dir = "runs/interactive"\nn = 2\n', SETUP)
    write_notebook(folder / "02_b.ipynb", 'run_dir = "runs/interactive"\nn = 2\n', SETUP, "assert n < 5, 'too big'")
    lines: list[str] = []

    def go(overrides, command):
        return pipeline.run_pipeline(preset=None, overrides=overrides, notebooks_dir=folder, runs_root=tmp_path / "runs",
                                     run_id="r1", command=command, echo=lambda *a, **k: lines.append(" ".join(map(str, a))))

    go({"n": 3}, "python -m kit run -p n=3 --run-id r1")
    result = go({"n": 7}, "python -m kit run --preset smoke -p n=7 --only 02 --run-id r1")
    assert any("was last run with other options: -p n: 3 -> 7" in line for line in lines)
    manifest = json.loads(result.manifest_path.read_text())
    assert [i["overrides"] for i in manifest["invocations"]] == [{"n": 3}, {"n": 7}]
    message = pipeline.failure_message(result)
    assert "resume with `python -m kit run --preset smoke -p n=7 --only 02 --run-id r1`" in message
    argv = ["--preset", "full", "-p", "num=3", "-f", "my params.yaml", "--only", "03", "04"]
    assert run_command.command_line(argv, "r2") == \
        "python -m kit run --preset full -p num=3 -f 'my params.yaml' --only 03 04 --run-id r2"
    assert run_command.command_line(run_command._without_only(argv), "r2") == \
        "python -m kit run --preset full -p num=3 -f 'my params.yaml' --run-id r2"
