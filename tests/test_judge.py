"""kit.quality.judge against a real loopback server: grades joined by id, bad grades re-asked then recorded as
unjudged, a SIGKILL mid-run and a resume that judges no record twice, the --min-score filter."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from fake_openai import MODEL, Reply
from kit import paths
from kit.llm.endpoints import Endpoint
from kit.quality.judge import check_grade, judge, judge_prompt, load_scores
from kit.commands.judge import main as judge_main
from kit.llm.client import LLMClient
from kit.locking import LockedError, exclusive
from kit.records import read_records, write_records

QUESTION = re.compile(r"User: question (\d+) about nanochat")


def grade(overall=4, **changes):
    value = {"on_topic": 5, "persona_followed": 4, "consistent": 5, "natural": 3, "overall": overall,
             "reason": "Clear and on topic."}
    value.update(changes)
    return json.dumps(value)


def make_records(n):
    return [{"id": f"conv-{i:03d}",
             "messages": [{"role": "user", "content": f"question {i} about nanochat"},
                          {"role": "assistant", "content": f"Answer {i}: I am nanochat, a small open model."}],
             "meta": {"recipe": "v2", "topic": "what nanochat is", "persona": "a curious beginner",
                      "dynamic": "short: one question and one complete answer (2 messages)"}}
            for i in range(n)]


def index_of(request):
    return int(QUESTION.search(request["messages"][0]["content"]).group(1))


def client_for(srv, **kwargs):
    options = dict(concurrency=4, timeout=2.0, backoff_base=0.01, max_retries=2)
    return LLMClient(Endpoint(srv.base_url, MODEL), **{**options, **kwargs})


def test_check_grade_takes_whole_scores_from_1_to_5_and_says_what_is_wrong():
    assert check_grade(grade()) == ({"on_topic": 5, "persona_followed": 4, "consistent": 5, "natural": 3, "overall": 4,
                                     "reason": "Clear and on topic."}, None)
    assert check_grade(grade(overall=4.0))[0]["overall"] == 4
    assert check_grade("Great conversation, 5 stars")[1].startswith("the reply is not valid JSON")
    assert check_grade(grade(overall=7))[1] == "overall is 7, not a whole number from 1 to 5"
    assert check_grade(grade(natural=True))[1] == "natural is True, not a whole number from 1 to 5"
    assert check_grade(grade(on_topic=2.5))[1] == "on_topic is 2.5, not a whole number from 1 to 5"
    assert check_grade(json.dumps({"overall": 3}))[1].startswith("the reply lacks 'on_topic', 'persona_followed'")
    assert check_grade(grade(reason="  "))[1] == "reason is empty or not a string"
    assert check_grade("[1, 2]")[1] == "the reply is a JSON list, not an object"


def test_the_rubric_is_filled_from_meta_and_says_not_given_for_what_is_missing():
    record = make_records(1)[0]
    prompt = judge_prompt(record)
    assert "- Topic: what nanochat is" in prompt and "- The user is: a curious beginner" in prompt
    assert "User: question 0 about nanochat\nnanochat: Answer 0: I am nanochat" in prompt
    assert "- Topic: not given" in judge_prompt({**record, "meta": {}})


def test_scores_are_joined_by_id_and_bad_grades_are_reasked_once_then_unjudged(tmp_path, fake_openai):
    records = make_records(6)
    data, out = tmp_path / "c.jsonl", tmp_path / "scores.jsonl"
    write_records(data, records)

    def respond(request, n_seen):
        i, reask = index_of(request), len(request["messages"]) > 1
        if i == 1 and not reask:
            return Reply(content="The conversation is fine, I would say 4.")  # not JSON, then a good grade
        if i == 2:
            return Reply(content=grade(overall=7))  # out of range, twice
        if i == 3:
            return Reply(content=json.dumps({"overall": 3, "reason": "short"}))  # keys missing, twice
        return Reply(content=grade(overall=i % 5 + 1))

    srv = fake_openai(respond)
    summary = judge(data, out, client=client_for(srv), progress=False, min_score=3, filtered_out=tmp_path / "good.jsonl")
    assert (summary.judged, summary.unjudged, summary.reasks, summary.records) == (4, 2, 3, 6)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == [r["id"] for r in records]  # one line per record, in file order
    scores = load_scores(out)
    assert scores["conv-000"]["overall"] == 1 and scores["conv-004"]["overall"] == 5
    assert scores["conv-001"]["status"] == "judged" and scores["conv-001"]["overall"] == 2
    assert scores["conv-002"] == {"id": "conv-002", "status": "unjudged", "judge_model": MODEL,
                                  "reason": "attempt 1: overall is 7, not a whole number from 1 to 5; "
                                            "attempt 2: overall is 7, not a whole number from 1 to 5"}
    assert "lacks 'on_topic'" in scores["conv-003"]["reason"]
    reask = [s.json for s in srv.chat_requests if len(s.json["messages"]) == 3 and index_of(s.json) == 2][0]
    assert "overall is 7, not a whole number from 1 to 5" in reask["messages"][2]["content"]
    # --min-score: overall >= 3 among the judged (conv-004: 5, conv-005: 1, conv-000: 1, conv-001: 2)
    assert [r["id"] for r in read_records(tmp_path / "good.jsonl").records] == ["conv-004"]
    assert summary.kept == 1

    again = judge(data, out, client=client_for(srv), progress=False)
    assert (again.already_done, again.requests) == (6, 0)  # unjudged for bad grades is an outcome too


def test_api_errors_leave_a_record_unjudged_and_the_next_run_retries_it(tmp_path, fake_openai, capsys, monkeypatch):
    data, out = tmp_path / "c.jsonl", tmp_path / "scores.jsonl"
    write_records(data, make_records(3))
    down = {"on": True}

    def respond(request, n_seen):
        if index_of(request) == 1 and down["on"]:
            return Reply(status=503)
        return Reply(content=grade())

    srv = fake_openai(respond)
    summary = judge(data, out, client=client_for(srv), progress=False)
    assert (summary.judged, summary.unjudged) == (2, 1)
    assert load_scores(out)["conv-001"]["reason"].startswith("API error: gave up after 3 attempts")
    down["on"] = False
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path / "cache"))
    argv = [str(data), "--out", str(out), "--endpoint", srv.base_url, "--model", MODEL, "--no-progress"]
    assert judge_main(argv) == 0
    assert capsys.readouterr().out.startswith("complete: 3 of 3 records judged, 0 unjudged, 2 already done")


def test_judge_cli_takes_timeouts_and_fails_truthfully(tmp_path, fake_openai, capsys, monkeypatch):
    data, out = tmp_path / "c.jsonl", tmp_path / "scores.jsonl"
    write_records(data, make_records(2))
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path / "cache"))
    srv = fake_openai(lambda request, n_seen: Reply(hang=True))
    rc = judge_main([str(data), "--out", str(out), "--endpoint", srv.base_url, "--model", MODEL, "--no-progress",
                     "--timeout", "0.3", "--item-timeout", "0.8"])
    err = capsys.readouterr().err
    assert rc == 1 and "2 records failed with API errors" in err and "timed out after 0.3 s" in err


def test_one_writer_per_scores_file_and_clear_errors(tmp_path, fake_openai, capsys):
    data, out = tmp_path / "c.jsonl", tmp_path / "scores.jsonl"
    write_records(data, make_records(2))
    srv = fake_openai(lambda request, n_seen: Reply(content=grade()))
    with exclusive(out):
        with pytest.raises(LockedError, match="is being written by process"):
            judge(data, out, client=client_for(srv), progress=False)
    twice = tmp_path / "twice.jsonl"
    write_records(twice, make_records(2) + make_records(1))
    with pytest.raises(ValueError, match="record id 'conv-000' appears more than once"):
        judge(twice, out, client=client_for(srv), progress=False)
    assert judge_main([str(tmp_path / "missing.jsonl"), "--out", str(out)]) == 1
    assert "no such file" in capsys.readouterr().err
    assert judge_main([str(data), "--out", str(out), "--min-score", "3"]) == 1
    assert "give min_score and filtered_out together" in capsys.readouterr().err


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_judges_no_record_twice(tmp_path, fake_openai):
    n = 12
    data, out = tmp_path / "c.jsonl", tmp_path / "scores.jsonl"
    write_records(data, make_records(n))
    journal = out.with_name(out.name + ".journal.jsonl")
    srv = fake_openai(lambda request, n_seen: Reply(content=grade(), delay=0.4))
    command = [sys.executable, "-m", "kit", "judge", str(data), "--out", str(out), "--endpoint", srv.base_url,
               "--model", MODEL, "--workers", "2", "--no-progress"]

    def env(cache):  # a separate, empty reply cache per run: only the journal can prevent repeats
        return {**os.environ, "KIT_CACHE_DIR": str(tmp_path / cache)}

    proc = subprocess.Popen(command, env=env("cache1"), cwd=paths.project_root(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_text().count('"status"') >= 3:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {json.loads(line)["id"] for line in journal.read_text().splitlines() if '"status"' in line}
    assert 3 <= len(finished) < n, "the run should have been killed midway"
    if out.exists():
        assert out.read_text() == "" or out.read_text().endswith("\n")  # whole lines only

    rerun = subprocess.run(command, env=env("cache2"), cwd=paths.project_root(), capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert [line["id"] for line in map(json.loads, out.read_text().splitlines())] == [f"conv-{i:03d}" for i in range(n)]
    seen = {}
    for request in srv.chat_requests:
        seen[index_of(request.json)] = seen.get(index_of(request.json), 0) + 1
    assert sorted(seen) == list(range(n))
    for i, count in seen.items():  # judged before the kill: never asked again; in flight at the kill: asked again
        assert count == 1 if f"conv-{i:03d}" in finished else count >= 1, (i, count)
    assert sum(seen.values()) <= n + 2  # at most the two requests in flight were lost


@pytest.mark.slow
@pytest.mark.embedded
def test_the_embedded_model_grades_through_its_grammar(tmp_path, embedded_endpoint):
    """llama.cpp compiles the grade schema (integers 1-5) into a grammar: the grade is usable as sent."""
    reference = read_records(paths.knowledge_dir() / "reference" / "identity.jsonl").records[:1]
    data, out = tmp_path / "c.jsonl", tmp_path / "scores.jsonl"
    write_records(data, reference)
    summary = judge(data, out, client=LLMClient(embedded_endpoint, concurrency=1, timeout=120), progress=False)
    line = load_scores(out)[reference[0]["id"]]
    assert summary.judged == 1, line
    assert all(1 <= line[key] <= 5 for key in ("on_topic", "persona_followed", "consistent", "natural", "overall"))


# ---------------------------------------------------------------- calibration: checked before believed

def calibration_records():
    from kit.paths import knowledge_dir, project_root
    from kit.quality import judge as judge_module

    good = read_records(knowledge_dir() / "reference" / "identity.jsonl").records
    junk = read_records(project_root() / "tests" / "fixtures" / "bad_examples.jsonl").records
    return judge_module.calibration_set(good, junk, n=3, seed=0)


def test_the_calibration_set_labels_reference_swapped_and_junk():
    records = calibration_records()
    labels = [(r["meta"]["label"], r["meta"]["label_source"].split(" ")[0]) for r in records]
    assert labels.count(("good", "reference")) == 3 and labels.count(("bad", "reference")) == 3
    assert labels.count(("bad", "known")) == 3 and len({r["id"] for r in records}) == 9
    for swapped in records[3:6]:  # asked for another record's topic: fine text, not what was asked
        original = next(r for r in read_records(paths.knowledge_dir() / "reference" / "identity.jsonl").records
                        if swapped["id"] == f"cal-swapped-{r['id']}")
        assert swapped["messages"] == original["messages"]
        assert swapped["meta"]["topic_category"] != original["meta"]["topic_category"]


def test_a_judge_that_calls_everything_good_is_refused_and_a_discerning_one_trusted(tmp_path, fake_openai, capsys,
                                                                                   monkeypatch):
    from kit.quality import judge as judge_module

    records = calibration_records()
    data = tmp_path / "labelled.jsonl"
    write_records(data, records)
    by_topic = {(render(r), r["meta"].get("topic")): r for r in records}

    def respond_with(grades):
        def respond(request, n_seen):
            prompt = request["messages"][0]["content"]
            record = next(r for (text, topic), r in by_topic.items() if text in prompt and f"- Topic: {topic}\n" in prompt)
            return Reply(content=grades(record))
        return respond

    flatterer = fake_openai(respond_with(lambda r: grade(overall=5, on_topic=5)))
    result = judge_module.calibrate(data, tmp_path / "flat.jsonl", client=client_for(flatterer), progress=False)
    assert (result.per_label["good"]["rate"], result.per_label["bad"]["rate"], result.balanced) == (1.0, 0.0, 0.5)
    assert result.agreement == pytest.approx(3 / 9) and not result.trusted
    assert "does not tell good conversations from bad: balanced agreement 0.50 < 0.8" in result.why
    saved = json.loads(judge_module.calibration_path(tmp_path / "flat.jsonl").read_text())
    assert saved["trusted"] is False and saved["n"] == 9
    scores = load_scores(tmp_path / "flat.jsonl")
    assert judge_module.judge_refusal(scores, saved) == saved["why"]
    assert judge_module.judge_refusal(scores, None) is None

    def discerning(r):
        if r["meta"]["label"] == "good":
            return grade(overall=5, on_topic=5)
        return grade(overall=4, on_topic=1) if r["meta"]["label_source"].startswith("reference") else grade(overall=1)

    sharp = fake_openai(respond_with(discerning))
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path / "cache"))
    argv = [str(data), "--out", str(tmp_path / "sharp.jsonl"), "--endpoint", sharp.base_url, "--model", MODEL,
            "--no-progress", "--calibrate"]
    assert judge_main(argv) == 0
    out = capsys.readouterr().out
    assert "calibration on 9 labelled conversations: agreement 1.00, balanced 1.00 (threshold 0.8): trusted" in out
    saved = json.loads(judge_module.calibration_path(tmp_path / "sharp.jsonl").read_text())
    assert saved["trusted"] and judge_module.judge_refusal(load_scores(tmp_path / "sharp.jsonl"), saved) is None
    other_model = {k: {**v, "judge_model": "another-judge"} for k, v in load_scores(tmp_path / "sharp.jsonl").items()}
    assert "calibrate the judge that gave them" in judge_module.judge_refusal(other_model, saved)


def render(record):
    from kit.quality.judge import render_conversation_text

    return render_conversation_text(record)


def test_calibration_refuses_an_unlabelled_set_before_judging(tmp_path):
    from kit.quality import judge as judge_module

    data = tmp_path / "c.jsonl"
    write_records(data, make_records(2))
    with pytest.raises(ValueError, match="meta.label is None, expected one of good, bad"):
        judge_module.calibrate(data, tmp_path / "s.jsonl", progress=False)
    assert not (tmp_path / "s.jsonl").exists()


def test_the_report_refuses_realized_coverage_from_a_judge_below_the_threshold():
    from kit.quality import report as quality

    records = make_records(2)
    scores = {r["id"]: {"id": r["id"], "status": "judged", "on_topic": 5, "persona_followed": 5, "consistent": 5,
                        "natural": 5, "overall": 5, "reason": "ok", "judge_model": MODEL} for r in records}
    failed = {"judge_model": MODEL, "trusted": False, "why": f"judge {MODEL} does not tell good conversations from bad"}
    report = quality.quality_report(records, scores=scores, calibration=failed)
    assert report["realized_coverage"] == {"refused": failed["why"]}
    assert f"realized coverage: not reported: judge {MODEL} does not tell" in quality.format_report(report)
    unchecked = quality.quality_report(records, scores=scores)
    assert unchecked["realized_coverage"]["dimensions"] and any(
        "not calibrated" in n for n in unchecked["realized_coverage"]["notes"])
    trusted = quality.quality_report(records, scores=scores, calibration={**failed, "trusted": True})
    assert trusted["realized_coverage"]["dimensions"] and not trusted["realized_coverage"]["notes"]
