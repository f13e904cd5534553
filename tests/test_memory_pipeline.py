"""The whole benchmark: records over a fake server (layout, determinism, honest counts), the CLI,
evaluation and its scoring, and `--fast` end to end with the embedded model."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal

import pytest

from kit.llm.endpoints import Endpoint
from kit.llm.client import LLMClient, run_sync
from kit.commands.memory import main
from kit.memory.dataset import MemoryConfig, generate_records, plan_sessions, read_dataset
from kit.memory.evaluate import dates_in, evaluate_records, fit_context, score, select_chunks
from kit.memory.retrieval import oracle
from kit.memory.scenes import load_catalogue, load_scenes
from kit.memory.sessions import amounts_in
from fake_openai import Reply, hang_responder
from memory_fakes import is_turn_request, model_responder

SCENES = load_scenes()
CATALOGUE = load_catalogue()
SMALL = MemoryConfig(num_sessions=6, num_questions=15, min_turns=2, max_turns=12, min_scenes=1, max_scenes=3, seed=3)


def _records(srv, config=SMALL, **kw):
    client = LLMClient(Endpoint(srv.base_url, "fake-model"), max_retries=1, backoff_base=0.01)
    async def main():
        try:
            return await generate_records(client, config, CATALOGUE, show_progress=False)
        finally:
            await client.aclose()
    return run_sync(main())


def test_record_layout_and_answers_follow_the_transactions(fake_openai):
    [record] = _records(fake_openai(model_responder()))
    assert set(record) == {"task_id", "questions", "chunks", "metadata"}
    assert re.fullmatch(r"consumption_tracking_[0-9a-f]{8}", record["task_id"])
    meta = record["metadata"]
    for key in ("num_sessions", "num_turns", "num_transactions", "date_range", "scenes", "total_amount",
                "transaction_events", "consistency", "rephrase", "generator"):
        assert key in meta
    assert meta["num_sessions"] == len(record["chunks"]) == 6
    assert meta["num_transactions"] == len(meta["transaction_events"])
    events = meta["transaction_events"]
    assert float(sum(Decimal(str(e["amount"])) for e in events)) == meta["total_amount"]
    dates = [e["date"] for e in events]
    assert dates == sorted(dates) and len(set(c.split("]")[0] for c in record["chunks"])) == 6
    for event in events:  # every kept amount and item is said in its evidence turns
        lines = record["chunks"][event["session_index"]].split("\n")
        assert lines[0].startswith(f"[{event['date']}] User said, \"") and event["evidence_turns"]
        for turn in event["evidence_turns"]:
            assert event["description"] in lines[turn] and round(event["amount"] * 100) in amounts_in(lines[turn])
    assert Counter(q["category"] for q in record["questions"])["total_amount"] == 1
    total_q = next(q for q in record["questions"] if q["category"] == "total_amount")
    assert total_q["answer"] == f"{meta['total_amount']:.2f}" and total_q["position"] == 5
    for q in record["questions"]:
        assert set(q) == {"qid", "query", "answer", "position", "category"} and 0 <= q["position"] < 6
    assert len({q["query"] for q in record["questions"]}) == len(record["questions"])
    cons = meta["consistency"]
    assert cons["sessions_passed"] == 6 and cons["transactions_kept"] == cons["transactions_planned"]
    assert cons["recipe"] == "one-call"  # "auto" with an endpoint
    assert oracle([record])["overall"] == {"correct": len(record["questions"]), "total": len(record["questions"]),
                                           "errors": 0, "accuracy": 1.0}


def test_rephrasing_keeps_only_rewrites_that_keep_the_dates(fake_openai):
    [record] = _records(fake_openai(model_responder()))
    report = record["metadata"]["rephrase"]
    assert report["rewritten"] + report["kept_original"] == len(record["questions"])
    assert report["rewritten"] > 0 and report["reasons_kept_original"].get("drops the date", 0) > 0
    assert any(q["query"].startswith("Quick question:") for q in record["questions"])
    assert not any("that day" in q["query"] for q in record["questions"])


def test_same_seed_same_record_and_faults_are_counted(fake_openai):
    plans = plan_sessions(SMALL, CATALOGUE, "3")
    bad_dates = {plans[1].date, plans[4].date}
    srv = fake_openai(model_responder(
        lambda prompt, n_seen: "wrong_amount" if any(d in prompt for d in bad_dates) else "valid"))
    a, b = _records(srv), _records(srv)
    for r in (a[0], b[0]):
        r["metadata"]["generator"].pop("elapsed_s")
    assert a == b
    other = _records(srv, MemoryConfig(**{**SMALL.__dict__, "seed": 4}))
    assert [q["query"] for q in other[0]["questions"]] != [q["query"] for q in a[0]["questions"]]
    cons = a[0]["metadata"]["consistency"]
    assert cons["sessions_flagged"] == 2 and cons["requests"] == 4 + 2 * 3  # each flagged session was asked three times
    # a flagged session is left out whole: its dialogue states an amount its ledger does not hold
    assert a[0]["metadata"]["num_sessions"] == len(a[0]["chunks"]) == 4
    assert not {e["date"] for e in a[0]["metadata"]["transaction_events"]} & bad_dates
    assert "12345.67" not in json.dumps([a[0]["chunks"], a[0]["metadata"]["transaction_events"]])
    assert cons["transactions_kept"] == a[0]["metadata"]["num_transactions"] < cons["transactions_planned"]


def test_plan_is_seeded_with_distinct_dates_in_2024():
    config = MemoryConfig(num_sessions=366, min_scenes=1, max_scenes=10)
    plans = plan_sessions(config, CATALOGUE, "0")
    dates = [p.date for p in plans]
    assert dates[0] == "2024-01-01" and dates[-1] == "2024-12-31" and len(set(dates)) == 366
    assert plan_sessions(SMALL, CATALOGUE, "x") == plan_sessions(SMALL, CATALOGUE, "x")
    assert all(1 <= len(p.expenses) <= 3 and 2 <= p.turns <= 12 for p in plan_sessions(SMALL, CATALOGUE, "x"))
    assert [p.first for p in plans[:2]] == [True, False]


def _answering(dataset, wrong=False):
    answers = {q["query"]: q["answer"] for q in dataset["questions"]}

    def respond(request, n_seen):
        prompt = request["messages"][-1]["content"]
        query = re.search(r"^Question: (.+)$", prompt, re.M).group(1)
        return Reply(content=json.dumps({"answer": "nothing" if wrong else answers[query]}))
    return respond


def test_cli_generate_then_eval(fake_openai, tmp_path, capsys):
    gen = fake_openai(model_responder())
    out = tmp_path / "synth.json"
    assert main(["generate", "--fast", "--num-sessions", "4", "--endpoint", gen.base_url, "--model", "fake-model",
                 "--out", str(out), "--seed", "9"]) == 0
    printed = capsys.readouterr().out
    assert "Task ID: consumption_tracking_" in printed and "Dataset written to" in printed
    [record] = read_dataset(out)
    params = record["metadata"]["generator"]["parameters"]
    assert (params["num_sessions"], params["num_questions"], params["max_turns"]) == (4, 10, 10)  # flag beats --fast
    assert record["metadata"]["generator"]["endpoint"] == gen.base_url

    right = fake_openai(_answering(record))
    assert main(["eval", str(out), "--endpoint", right.base_url, "--model", "fake-model"]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["overall"]["accuracy"] == 1.0 and result["overall"]["total"] == len(record["questions"])
    assert "overall" in capsys.readouterr().out
    for item in result["items"]:  # the model saw exactly the chunks up to the question's position
        assert item["chunks_given"] == item["position"] + 1 and item["chunks_dropped"] == 0

    wrong = fake_openai(_answering(record, wrong=True))
    # another model name: the reply cache is keyed by model, and this "model" answers differently
    assert main(["eval", str(out), "--endpoint", wrong.base_url, "--model", "fake-wrong",
                 "--out", str(tmp_path / "wrong.json")]) == 0
    assert json.loads((tmp_path / "wrong.json").read_text())["overall"]["correct"] == 0


TINY = {"task_id": "t", "chunks": ["2024-01-02\nuser: I spent 5 yuan on coffee.", "2024-01-05\nuser: 7 yuan on tea."],
        "questions": [{"qid": f"q{i}", "query": f"How much did I spend in total by day {i}?", "answer": answer,
                       "position": i, "category": "total_amount"} for i, answer in enumerate(["5.00", "12.00"])]}


def test_eval_does_not_score_failed_requests_as_wrong_and_exits_nonzero(fake_openai, tmp_path, capsys):
    answering = _answering(TINY)

    def respond(request, n_seen):
        if "day 1?" in request["messages"][-1]["content"]:
            return Reply(status=503, headers={"Retry-After": "0"})  # retried at once: the test need not wait
        return answering(request, n_seen)

    srv = fake_openai(respond)
    dataset, out = tmp_path / "tiny.json", tmp_path / "eval.json"
    dataset.write_text(json.dumps(TINY))
    assert main(["eval", str(dataset), "--endpoint", srv.base_url, "--model", "fake-model", "--out", str(out),
                 "--no-progress"]) == 1
    stdout, stderr = capsys.readouterr()
    assert "1/1      100.0%  (1 not scored: request failed)" in stdout
    err = stderr.splitlines()
    assert len(err) == 1  # no progress bar, no traceback: the one line that says what failed
    assert err[0].startswith("kit memory eval: error: 1 of 2 questions failed and were not scored "
                             "(first, q1: gave up after ")
    assert "503" in err[0] and err[0].endswith("the accuracy above is over the 1 answered questions only")
    result = json.loads(out.read_text())  # written all the same: nothing is lost
    assert result["overall"] == {"correct": 1, "total": 1, "errors": 1, "accuracy": 1.0} and result["errors"] == 1
    assert [(i["correct"], i["error"] is None) for i in result["items"]] == [(True, True), (None, False)]


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    assert main(["generate", "--num_sessions", "400", "--out", str(tmp_path / "x.json")]) == 1
    assert "num_sessions must be 1..366" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"task_id": "t", "questions": [{"qid": "a"}], "chunks": []}')
    assert main(["eval", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "question 0 lacks" in err and "Traceback" not in err
    bad.write_text(json.dumps([TINY, {**TINY, "chunks": ["ok", 123]}]))
    assert main(["eval", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == f"kit memory eval: error: {bad}: record 1: chunk 1 is not a string (it is 123)\n"


@pytest.mark.parametrize("category, expected, predicted, ok", [
    ("total_amount", "123.45", "123.45", True),
    ("total_amount", "123.45", "You spent $123.4 in total.", True),  # within 1%
    ("total_amount", "1234.50", "1,234.50 yuan", True),
    ("total_amount", "123.45", "130", False),
    ("total_amount", "0.00", "0", True),
    ("total_amount", "123.45", "no idea", False),
    ("max_scene", "Dining", "dining", True),
    ("max_scene", "Dining", "Dining or Shopping", False),
    ("max_scene", "Other", "Other.", True),
    ("max_frequency_date", "2024-03-05", "2024-03-05", True),
    ("max_frequency_date", "2024-03-05", "March 5th, 2024", True),
    ("max_frequency_date", "2024-03-05", "2024/3/5", True),
    ("max_frequency_date", "2024-03-05", "2024-03-05 or 2024-03-06", False),
    ("max_frequency_date", "2024-03-05", "last Tuesday", False),
])
def test_scoring(category, expected, predicted, ok):
    assert score(category, expected, predicted, list(SCENES)) is ok


def test_context_keeps_the_newest_chunks_that_fit():
    chunks = ["a" * 100, "b" * 100, "c" * 100, "d" * 100]
    ctx = fit_context(chunks, 2, budget_chars=210)
    assert ctx.text == "b" * 100 + "\n\n" + "c" * 100 and (ctx.chunks_given, ctx.chunks_dropped) == (2, 1)
    lines = fit_context(["x\n" * 50 + "last"], 0, budget_chars=20)
    assert lines.text.endswith("last") and lines.lines_dropped > 0
    assert dates_in("on 5 March 2024 and 2024-12-01") == {"2024-03-05", "2024-12-01"}


@pytest.mark.embedded
def test_turns_end_to_end_with_the_embedded_model(embedded_endpoint, tmp_path, monkeypatch):
    """The real pipeline on SmolLM2-135M, turn by turn: whatever the tiny model writes, the run completes,
    reports its counts honestly, and every answer is computed from a ledger its dialogues state."""
    monkeypatch.setenv("KIT_SCHEMA_STYLE", embedded_endpoint.schema_style)
    out = tmp_path / "synth.json"
    args = ["--endpoint", embedded_endpoint.base_url, "--model", embedded_endpoint.model]
    assert main(["generate", "--recipe", "turns", "--num_sessions", "2", "--min_turns", "10", "--max_turns", "10",
                 "--min_scenes", "2", "--max_scenes", "2", "--num_questions", "8", "--max_attempts", "4",
                 "--no_diversify", "--llm_concurrency", "1", "--out", str(out), "--no-progress", *args]) == 0
    [record] = read_dataset(out)
    meta, cons = record["metadata"], record["metadata"]["consistency"]
    assert cons["sessions_planned"] == 2 and cons["recipe"] == "turns"
    assert meta["num_sessions"] == len(record["chunks"]) == cons["sessions_passed"] >= 1
    assert cons["turn_funnel"]["kept"] == 3 * cons["sessions_passed"]  # replies to the greeting, 1 small talk, closing
    for chunk in record["chunks"]:
        assert len(chunk.split("\n")) == 10 and "}}" not in chunk and '"role":' not in chunk
    for event in meta["transaction_events"]:
        lines = record["chunks"][event["session_index"]].split("\n")
        assert all(event["description"] in lines[t] for t in event["evidence_turns"])
    assert oracle([record])["overall"]["accuracy"] == 1.0  # every answer agrees with the ledger
    assert main(["eval", str(out), "--out", str(tmp_path / "eval.json"), "--llm_concurrency", "1",
                 "--context", "last", "--no-progress", *args]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["overall"]["total"] == len(record["questions"]) and result["context"] == "last"


def _generate_command(srv, out, *extra):
    return [sys.executable, "-m", "kit", "memory", "generate", "--recipe", "turns", "--num_sessions", "4",
            "--num_questions", "10", "--min_turns", "8", "--max_turns", "12", "--max_scenes", "2",
            "--llm_concurrency", "2", "--seed", "5", "--no_diversify", "--no-progress",
            "--endpoint", srv.base_url, "--model", "fake-model", "--out", str(out), *extra]


def test_a_sigkill_mid_session_and_a_rerun_lose_and_duplicate_nothing(fake_openai, tmp_path):
    """Every turn's reply is cached as it arrives, so after a SIGKILL in the middle of sessions the same
    command replays the finished turns and asks only for the rest; the record equals an unbroken run's."""
    respond = model_responder()
    srv = fake_openai(lambda request, n_seen: dataclasses.replace(respond(request, n_seen), delay=0.1))
    out, cache = tmp_path / "synth.json", tmp_path / "cache"
    env = {**os.environ, "KIT_CACHE_DIR": str(cache)}
    proc = subprocess.Popen(_generate_command(srv, out), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and len(srv.chat_requests) < 7:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    asked_before = len(srv.chat_requests)
    cached = len(list(cache.rglob("*.json")))
    assert 1 <= cached and not out.exists(), "the run should have been killed midway"

    rerun = subprocess.run(_generate_command(srv, out), env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    asked_again = [r.json for r in srv.chat_requests[asked_before:]]
    unbroken_out = tmp_path / "unbroken.json"
    unbroken = subprocess.run(_generate_command(srv, unbroken_out), capture_output=True, text=True, timeout=300,
                              env={**os.environ, "KIT_CACHE_DIR": str(tmp_path / "cache2")})
    assert unbroken.returncode == 0, unbroken.stderr[-2000:]
    total = len(srv.chat_requests) - asked_before - len(asked_again)  # what an unbroken run asks
    assert len(asked_again) <= total - cached + 2  # at most the two in flight at the kill are asked twice
    [record], [reference] = read_dataset(out), read_dataset(unbroken_out)
    for r in (record, reference):
        r["metadata"]["generator"].pop("elapsed_s")
        r["metadata"]["generator"].pop("llm_stats")
    assert record == reference  # nothing lost, nothing twice
    assert all(is_turn_request(r) for r in asked_again)


def test_eval_takes_timeouts_and_no_cache_like_generate(fake_openai, tmp_path, capsys):
    dataset = tmp_path / "tiny.json"
    dataset.write_text(json.dumps(TINY))
    srv = fake_openai(hang_responder)
    started = time.monotonic()
    assert main(["eval", str(dataset), "--endpoint", srv.base_url, "--model", "fake-model", "--no-progress",
                 "--timeout", "0.3", "--item-timeout", "0.8", "--out", str(tmp_path / "e.json")]) == 1
    assert time.monotonic() - started < 30  # the client's default would hold it 120 s a request
    err = capsys.readouterr().err
    assert "2 of 2 questions failed" in err and "within the 0.8 s item deadline" in err and "timed out after" in err

    right = fake_openai(_answering(TINY))
    argv = ["eval", str(dataset), "--endpoint", right.base_url, "--model", "fake-model", "--no-progress",
            "--out", str(tmp_path / "e.json")]
    assert main(argv) == 0 and main(argv) == 0
    assert len(right.chat_requests) == 2  # the second run came from the reply cache
    assert main([*argv, "--no-cache"]) == 0 and len(right.chat_requests) == 4


def test_eval_asks_with_the_sessions_its_context_names(fake_openai, tmp_path):
    dataset = tmp_path / "tiny.json"
    dataset.write_text(json.dumps(TINY))
    srv = fake_openai(_answering(TINY))
    for context, given in (("full", [[0], [0, 1]]), ("last", [[0], [1]]), ("recent:1", [[0], [1]]),
                           ("bm25:2", [[0], [0, 1]])):
        out = tmp_path / f"{context.replace(':', '')}.json"
        assert main(["eval", str(dataset), "--endpoint", srv.base_url, "--model", "fake-model", "--no-progress",
                     "--no-cache", "--context", context, "--out", str(out)]) == 0
        result = json.loads(out.read_text())
        assert [i["chunks_selected"] for i in result["items"]] == given and result["context"] == context
    assert main(["eval", str(dataset), "--context", "bm25"]) == 2


def test_eval_gives_each_server_a_contiguous_run_of_questions(fake_openai):
    """Questions sorted by the sessions they are asked with, cut into one run per server: neighbours that
    share sessions meet the same server's prompt cache instead of alternating between servers."""
    [record] = _records(fake_openai(model_responder()))
    servers = [fake_openai(_answering(record)) for _ in range(2)]
    client = LLMClient([Endpoint(s.base_url, "fake-model") for s in servers], concurrency=2)

    async def ask_all():
        try:
            return await evaluate_records(client, [record], None, show_progress=False)
        finally:
            await client.aclose()

    items = run_sync(ask_all())
    assert all(i["error"] is None for i in items)
    questions = record["questions"]
    order = sorted(range(len(questions)), key=lambda i: (select_chunks("full", questions[i], record["chunks"]), i))
    half = (len(order) + 1) // 2
    runs = [[questions[i]["query"] for i in part] for part in (order[:half], order[half:])]
    asked = [[re.search(r"^Question: (.+)$", r.json["messages"][-1]["content"], re.M).group(1)
              for r in s.chat_requests] for s in servers]
    assert asked == runs
