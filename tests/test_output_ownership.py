"""Every file a command writes beside its output is that command's, for that output (issue 28).

A journal, rejects or manifest file is written into only when it names the same command and output;
two outputs whose side files would be one file are refused; an output another command made is refused
unless --force; a start that fails writes nothing; `--append` keeps the user's lines byte for byte;
a hand-corrupted journal line is one line naming file and line; a lock file holds no key. Each test
failed on the code before this change.
"""

from __future__ import annotations

import json

import pytest

from fake_openai import MODEL, Reply
from kit.commands.generate import main as generate_main
from kit.generation.journal import MAX_PLANNED
from kit.locking import exclusive, lock_path
from kit.commands.judge import main as judge_main
from kit.records import read_records, write_records
from kit.generation.generate import generate

GOOD = json.dumps({"messages": [{"role": "user", "content": "hi, who are you?"},
                                {"role": "assistant", "content": "I am nanochat, a small open-source LLM."}]})
GRADE = json.dumps({"on_topic": 5, "persona_followed": 4, "consistent": 5, "natural": 4, "overall": 4,
                    "reason": "Clear."})
HEADER = {"journal": "kit.generation.generate", "version": 1, "seed": 0, "recipe": "v2"}


def one_line(err: str) -> str:
    err = err.strip()
    assert "Traceback" not in err and err.count("\n") == 0, err
    return err


def snapshot(folder):
    """Every file under `folder`, hidden ones (lock files) included, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def servers(fake_openai):
    """(generate's endpoint, judge's endpoint): each answers only its own kind of request."""
    return (fake_openai(lambda request, n_seen: Reply(content=GOOD)).base_url,
            fake_openai(lambda request, n_seen: Reply(content=GRADE)).base_url)


def gen(endpoint, output, *flags, num=1):
    return generate_main(["--num", str(num), "--output", str(output), "--endpoint", endpoint, "--model", MODEL,
                          "--no-progress", *map(str, flags)])


def judge_cli(endpoint, data, out, *flags):
    return judge_main([str(data), "--out", str(out), "--endpoint", endpoint, "--model", MODEL, "--no-progress",
                       *flags])


def user_records(path, n=2):
    write_records(path, [{"id": f"u{i}", "messages": json.loads(GOOD)["messages"], "meta": {}} for i in range(n)])
    return path


# ---- a command writes only into side files that name it and its output ----------------------------

def test_judge_refuses_a_generate_output_and_leaves_its_journal_alone(tmp_path, servers, capsys):
    gen_ep, judge_ep = servers
    out = tmp_path / "g" / "c.jsonl"
    assert gen(gen_ep, out, num=3) == 0
    before = snapshot(out.parent)
    other = user_records(tmp_path / "other.jsonl")
    capsys.readouterr()
    assert judge_cli(judge_ep, other, out) == 1
    err = one_line(capsys.readouterr().err)
    assert "c.jsonl" in err and "--force" in err
    assert snapshot(out.parent) == before
    out.unlink()  # the output gone, its journal is still generate's: judge entries must not join it
    assert judge_cli(judge_ep, other, out) == 1
    assert "journal" in one_line(capsys.readouterr().err)
    assert not out.exists()


def test_judge_with_force_takes_the_output_and_generate_then_refuses_it(tmp_path, servers, capsys):
    gen_ep, judge_ep = servers
    out = tmp_path / "c.jsonl"
    assert gen(gen_ep, out, num=2) == 0
    assert judge_cli(judge_ep, user_records(tmp_path / "other.jsonl"), out, "--force") == 0
    journal = tmp_path / "c.jsonl.journal.jsonl"
    assert json.loads(journal.read_text().splitlines()[0])["journal"] == "kit.quality.judge"
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert gen(gen_ep, out, "--append") == 1  # the scores are judge's now, and so is the journal
    assert "journal" in one_line(capsys.readouterr().err)
    assert snapshot(tmp_path) == before


def test_generate_append_refuses_a_judge_output_and_leaves_its_journal_alone(tmp_path, servers, capsys):
    gen_ep, judge_ep = servers
    scores = tmp_path / "scores.jsonl"
    assert judge_cli(judge_ep, user_records(tmp_path / "data.jsonl"), scores) == 0
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert gen(gen_ep, scores, "--append") == 1
    assert "scores.jsonl.journal.jsonl" in one_line(capsys.readouterr().err)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("side", ["data.rejects.jsonl", "data.manifest.json"])
def test_rejects_or_manifest_that_generate_did_not_write_are_refused_unless_forced(tmp_path, servers, capsys, side):
    gen_ep, _ = servers
    mine = tmp_path / side
    mine.write_text('{"my": "notes"}\n')
    assert gen(gen_ep, tmp_path / "data.jsonl") == 1
    err = one_line(capsys.readouterr().err)
    assert side in err and "--force" in err
    assert snapshot(tmp_path) == {side: b'{"my": "notes"}\n'}  # no output, journal or lock file either
    assert gen(gen_ep, tmp_path / "data.jsonl", "--force") == 0  # asked for: the file becomes the run's
    assert mine.read_bytes() != b'{"my": "notes"}\n'
    assert gen(gen_ep, tmp_path / "data.jsonl") == 0  # and is the run's from then on


def test_two_outputs_that_would_share_rejects_and_manifest_are_refused_even_with_force(tmp_path, servers, capsys):
    gen_ep, _ = servers
    assert gen(gen_ep, tmp_path / "x.jsonl", num=2) == 0
    before = snapshot(tmp_path)
    capsys.readouterr()
    for flags in ([], ["--force"], ["--fresh", "--force"]):
        assert gen(gen_ep, tmp_path / "x.json", *flags) == 1
        err = one_line(capsys.readouterr().err)
        assert "x.jsonl" in err and "x.rejects.jsonl" in err
        assert snapshot(tmp_path) == before


# ---- a start that fails writes nothing ------------------------------------------------------------

def test_append_onto_a_user_file_with_a_broken_line_writes_nothing(tmp_path, servers, capsys):
    gen_ep, _ = servers
    out = tmp_path / "ap" / "c.jsonl"
    user_records(out)
    out.write_text(out.read_text() + "{broken\n")
    before = snapshot(tmp_path)
    for _ in range(2):  # the second run found a stray journal and replaced the user's lines
        assert gen(gen_ep, out, "--append") == 1
        assert "c.jsonl:3:" in one_line(capsys.readouterr().err)
        assert snapshot(tmp_path) == before


def test_append_onto_a_folder_writes_nothing(tmp_path, servers, capsys):
    gen_ep, _ = servers
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    before = snapshot(tmp_path)
    assert gen(gen_ep, folder, "--append") == 1
    assert "is a folder" in one_line(capsys.readouterr().err)
    assert snapshot(tmp_path) == before


def test_a_plan_past_the_ceiling_is_refused_before_it_is_recorded(tmp_path, servers, capsys):
    gen_ep, _ = servers
    out = tmp_path / "c.jsonl"
    assert gen(gen_ep, out, num=10**12) == 1
    err = one_line(capsys.readouterr().err)
    assert f"{MAX_PLANNED:,}" in err and "MAX_PLANNED" in err
    assert snapshot(tmp_path) == {}
    assert gen(gen_ep, out, num=2) == 0
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert gen(gen_ep, out, "--append", num=MAX_PLANNED - 1) == 1  # 2 planned + this: one past the ceiling
    assert f"{MAX_PLANNED:,}" in one_line(capsys.readouterr().err)
    assert snapshot(tmp_path) == before
    assert gen(gen_ep, out, "--append", num=2) == 0  # the output still works


def test_a_huge_plan_an_older_kit_recorded_is_one_line_naming_its_line(tmp_path, servers, capsys):
    gen_ep, _ = servers
    out = tmp_path / "c.jsonl"
    journal = tmp_path / "c.jsonl.journal.jsonl"
    journal.write_text(json.dumps(HEADER) + "\n" + json.dumps({"plan": [0, 10**12]}) + "\n")
    assert gen(gen_ep, out, num=2) == 1
    assert "c.jsonl.journal.jsonl:2:" in one_line(capsys.readouterr().err)


# ---- --append keeps the user's file as it was -----------------------------------------------------

def test_append_keeps_every_line_of_the_user_file_byte_for_byte(tmp_path, servers, capsys):
    gen_ep, _ = servers
    messages = json.loads(GOOD)["messages"]
    original = ("\ufeff" + json.dumps({"id": "a", "messages": messages, "meta": {"k": 1}, "source": "mine",
                                      "score": 3}) + "\r\n"
                + "\n"
                + json.dumps(messages) + "\n"  # a bare CustomJSON array
                + json.dumps({"messages": messages, "metadata": {"lang": "dé"}}, ensure_ascii=False) + "\n"
                + "   \n").encode("utf-8")
    out = tmp_path / "c.jsonl"
    out.write_bytes(original)
    assert gen(gen_ep, out, "--append", "--no-save-metadata") == 0
    assert out.read_bytes().startswith(original)
    assert len(read_records(out).records) == 4
    assert gen(gen_ep, out, "--append") == 0  # rebuilt from the journal: still the same bytes
    assert out.read_bytes().startswith(original)
    assert len(read_records(out).records) == 5


# ---- journal lines are checked where they are read ------------------------------------------------

BAD_LINES = {
    "entry without status": (HEADER, {"index": 7}),
    "accepted without record": (HEADER, {"index": 0, "status": "accepted"}),
    "reject without rules": (HEADER, {"index": 0, "status": "rejected", "reject": {"reasons": ["x"]}}),
    "header without seed": ({"journal": "kit.generation.generate", "version": 1, "recipe": "v2"}, {"plan": [0, 1]}),
    "plan of one number": (HEADER, {"plan": [5]}),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_a_hand_corrupted_generate_journal_line_is_one_line_naming_it(tmp_path, servers, capsys, case):
    gen_ep, _ = servers
    header, bad = BAD_LINES[case]
    journal = tmp_path / "c.jsonl.journal.jsonl"
    journal.write_text(json.dumps(header) + "\n" + json.dumps(bad) + "\n")
    line = 1 if case == "header without seed" else 2
    assert gen(gen_ep, tmp_path / "c.jsonl", num=2) == 1
    assert f"c.jsonl.journal.jsonl:{line}:" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("bad", [{"index": 0, "id": "u0", "status": "judged"},
                                 {"index": 0, "id": "u0", "status": "unjudged"},
                                 {"index": "0", "id": "u0", "status": "unjudged", "reason": "x"}])
def test_a_hand_corrupted_judge_journal_line_is_one_line_naming_it(tmp_path, servers, capsys, bad):
    _, judge_ep = servers
    scores = tmp_path / "scores.jsonl"
    (tmp_path / "scores.jsonl.journal.jsonl").write_text(
        json.dumps({"journal": "kit.quality.judge", "version": 1, "output": "scores.jsonl"}) + "\n"
        + json.dumps(bad) + "\n")
    assert judge_cli(judge_ep, user_records(tmp_path / "data.jsonl"), scores) == 1
    assert "scores.jsonl.journal.jsonl:2:" in one_line(capsys.readouterr().err)


# ---- a lock file holds no key ---------------------------------------------------------------------

def test_a_lock_file_holds_the_command_line_without_its_key(tmp_path, monkeypatch):
    key = "sk-test-CANARY1234567890"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setattr("sys.argv", ["-m", "kit", "generate", "--endpoint", f"http://127.0.0.1:9/v1?key={key}"])
    with exclusive(tmp_path / "c.jsonl"):
        held = lock_path(tmp_path / "c.jsonl").read_text()
    assert "kit generate" in held and "CANARY" not in held


# ---- a journal holds the replies of one model ----------------------------------------------------

def test_a_journal_refuses_replies_of_another_model(tmp_path, fake_openai):
    srv = fake_openai(lambda request, n_seen: Reply(content=GOOD))
    out = tmp_path / "c.jsonl"
    generate(2, out, endpoint=srv.base_url, model=MODEL, progress=False)
    with pytest.raises(ValueError, match="holds replies of model 'fake-model', not 'other-model'"):
        generate(4, out, endpoint=srv.base_url, model="other-model", progress=False)
    assert len(read_records(out).records) == 2
