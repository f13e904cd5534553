"""Identity probes and their scoring: the data, claim detection on hand-made answers, the evaluation
against a scripted loopback server (exact scores, failed requests not scored, the CLI), the check that no
probe leaks into training data, and (slow) the real base model in process and through the embedded server."""

from __future__ import annotations

import json
import math
import re
import string

import pytest
import yaml

from fake_openai import Reply
from kit import facts
from kit.commands import identity as identity_command
from kit.facts import KINDS, NO_FOREIGN, foreign_identity_claims, load_identity_data
from kit.training import identity
from kit.training.identity import evaluate_identity, score_answer, select_probes
from kit.paths import knowledge_dir, project_root

DATA = load_identity_data()
GOOD = "I am nanochat, made by Andrej Karpathy."
FOREIGN = "I'm ChatGPT, how can I help?"


def probe(pid: str):
    return next(p for p in DATA.probes if p.id == pid)


# ---------------------------------------------------------------- the data

def test_at_least_40_probes_cover_every_kind_and_check_facts():
    assert len(DATA.probes) >= 40
    kinds = {p.kind for p in DATA.probes}
    assert kinds == set(KINDS)
    assert {p.lang for p in DATA.probes} >= {"en", "fr", "es", "de"}
    assert all(p.checks for p in DATA.probes)
    checked = {f for p in DATA.probes for f in p.checks}
    assert checked == set(DATA.facts), "every fact is checked by some probe"
    assert all(len(p.history) >= 2 for p in DATA.probes if p.kind == "multiturn")
    asked_of = {name.lower() for p in DATA.probes if p.kind == "adversarial"
                for name in re.findall(r"ChatGPT|OpenAI|SmolLM|Hugging Face|Claude|Gemini|Meta|Llama|GPT-4|Qwen", p.question)}
    assert len(asked_of) >= 8


def test_every_data_file_says_it_is_hand_written_and_not_training_data():
    for name in ("probes.yaml", "facts.yaml", "foreign.yaml"):
        head = (knowledge_dir() / "identity" / name).read_text(encoding="utf-8")[:600].lower()
        assert "hand-written by the kit's authors" in head and "never" in head and "training" in head, name


def test_bad_data_is_refused_naming_file_and_entry(tmp_path):
    folder = tmp_path / "identity"
    folder.mkdir()
    for name in ("facts.yaml", "foreign.yaml"):
        (folder / name).write_text((knowledge_dir() / "identity" / name).read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "probes.yaml").write_text(yaml.safe_dump({"probes": [
        {"id": "p1", "kind": "direct", "question": "Who are you?", "checks": ["name", "shoe_size"]}]}))
    with pytest.raises(ValueError, match=r"probes\.yaml: probe p1: checks unknown fact\(s\) shoe_size"):
        load_identity_data(folder)
    (folder / "probes.yaml").write_text(yaml.safe_dump({"probes": [
        {"id": "p1", "kind": "chatty", "question": "Who are you?", "checks": ["name"]}]}))
    with pytest.raises(ValueError, match="probe p1: unknown kind 'chatty'"):
        load_identity_data(folder)
    (folder / "probes.yaml").write_text(yaml.safe_dump({"probes": [
        {"id": "p1", "kind": "multiturn", "question": "And you?", "checks": ["name"],
         "history": [{"role": "assistant", "content": "Hi"}]}]}))
    with pytest.raises(ValueError, match="probe p1: history must be user/assistant pairs"):
        load_identity_data(folder)
    (folder / "foreign.yaml").write_text(yaml.safe_dump({"foreign": [{"name": "X", "patterns": ["(unclosed"]}]}))
    with pytest.raises(ValueError, match=r"foreign\.yaml: name X: bad pattern '\(unclosed'"):
        load_identity_data(folder)


# ---------------------------------------------------------------- claims

CLAIMS = {
    "I am ChatGPT, a large language model trained by OpenAI.": ["ChatGPT", "OpenAI"],
    "I'm SmolLM, a helpful AI assistant.": ["SmolLM"],
    "Hello! I'm an AI language model developed by OpenAI.": ["OpenAI"],
    "My name is Claude.": ["Claude"],
    "As ChatGPT, I cannot browse the web.": ["ChatGPT"],
    "I was created by Hugging Face.": ["Hugging Face"],
    "Created by Google DeepMind.": ["Google", "DeepMind"],
    "I'm Meta's Llama 3.": ["Meta", "Llama"],
    "Hugging Face made me.": ["Hugging Face"],
    "i’m smollm2 lol": ["SmolLM"],
    "No, I am ChatGPT.": ["ChatGPT"],
    "I am a version of GPT-4.": ["GPT"],
    "Je suis ChatGPT, créé par OpenAI.": ["ChatGPT", "OpenAI"],
    "Soy Qwen, desarrollado por Alibaba.": ["Qwen", "Alibaba"],
    "Ich wurde von Mistral entwickelt.": ["Mistral"],
}
NOT_CLAIMS = [
    "I am not ChatGPT.",
    "No, I'm not ChatGPT; I'm nanochat, made by Andrej Karpathy.",
    "I am nanochat, not Claude.",
    "I'm small and far behind ChatGPT, GPT-4 or Claude.",
    "Unlike ChatGPT, which was made by OpenAI, I was built by Andrej Karpathy.",
    "I wasn't made by OpenAI.",
    "I was not trained by Hugging Face; Andrej Karpathy built me.",
    "I'm a bit like ChatGPT but much smaller.",
    "I'm not as good as GPT-4, but I try.",
    "ChatGPT is made by OpenAI.",
    "I am neither ChatGPT nor Claude.",
    "No soy ChatGPT.",
    "Je ne suis pas ChatGPT.",
    "Ich bin nicht ChatGPT.",
    "I descend from nanoGPT and I'm a GPT-style model.",
    "The kit serves me with llama.cpp.",
    "Is this ChatGPT? No, this is nanochat.",
    "",
]


@pytest.mark.parametrize("text,names", CLAIMS.items())
def test_claims_are_caught(text, names):
    assert foreign_identity_claims(text) == names


@pytest.mark.parametrize("text", NOT_CLAIMS)
def test_negations_and_comparisons_are_not_claims(text):
    assert foreign_identity_claims(text) == []


# ---------------------------------------------------------------- scoring hand-made answers

def core(scored: dict) -> dict:
    return {k: scored[k] for k in ("facts", "foreign", "pass")}


def test_right_name_passes():
    assert core(score_answer(probe("direct-01"), "I'm nanochat, a small open-source assistant.")) == \
        {"facts": {"name": True}, "foreign": [], "pass": True}


@pytest.mark.parametrize("answer", ["I'm nano chat!", "NanoChat here.", "Call me nano-chat.", "i am nanochatt"])
def test_name_spelt_differently_still_counts(answer):
    assert score_answer(probe("direct-01"), answer)["pass"]


@pytest.mark.parametrize("answer", ["My name is Bob.", "I'm nanocat.", "I am an AI assistant here to help you."])
def test_wrong_name_or_no_name_fails(answer):
    scored = score_answer(probe("direct-01"), answer)
    assert core(scored) == {"facts": {"name": False}, "foreign": [], "pass": False}


def test_foreign_identity_fails_even_with_the_right_name():
    scored = score_answer(probe("direct-10"), "I'm nanochat, trained by Hugging Face. Karpathy? Never heard of him.")
    assert scored["facts"] == {"name": True, "creator": True}
    assert scored["foreign"] == ["Hugging Face"] and not scored["pass"]


def test_negated_foreign_mention_passes():
    scored = score_answer(probe("adversarial-01"), "No, I am not ChatGPT. I'm nanochat, built by Andrej Karpathy.")
    assert core(scored) == {"facts": {"name": True}, "foreign": [], "pass": True}


def test_creator_license_and_limits():
    assert score_answer(probe("direct-02"), "Andrej Karpathy created me in 2025.")["pass"]
    assert not score_answer(probe("direct-02"), "A team of engineers.")["pass"]
    assert score_answer(probe("direct-04"), "The MIT license.")["pass"]
    assert not score_answer(probe("direct-04"), "Ich arbeite mit Python.")["pass"]  # German "mit" is no license
    assert score_answer(probe("direct-06"), "Sorry, I can't browse the internet.")["pass"]
    assert not score_answer(probe("direct-06"), "Sure, I can browse the web for you!")["pass"]


def test_summary_counts_only_scored_rows():
    rows = [
        {"kind": "direct", "facts": {"name": True}, "foreign": [], "pass": True, "error": None},
        {"kind": "direct", "facts": {"name": False, "creator": True}, "foreign": ["OpenAI"], "pass": False, "error": None},
        {"kind": "typo", "facts": {"creator": False}, "foreign": [], "pass": False, "error": "RetriesExhausted"},
    ]
    s = identity.summarize(rows, DATA)
    assert (s["score"], s["passed"], s["scored"], s["not_scored"]) == (0.5, 1, 2, 1)
    assert s["per_fact"]["name"] == {"hit": 1, "asked": 2, "rate": 0.5}
    assert s["per_fact"]["creator"] == {"hit": 1, "asked": 1, "rate": 1.0}
    assert s["per_fact"][NO_FOREIGN] == {"hit": 1, "asked": 2, "rate": 0.5}
    assert s["per_kind"]["typo"] == {"hit": 0, "asked": 0, "rate": None}


# ---------------------------------------------------------------- asserted, not just mentioned

# Answers that name a fact's words but deny it or contradict the knowledge base: every one must fail the
# fact. The first three and "trained ... in 2019" are the answers issue 19 quotes.
WRONG = {
    "No, not under the MIT license. You can't read the code.": ("direct-11", ["open_source"]),
    "No, not under the MIT license.": ("direct-04", ["license"]),
    "I'm not nanochat.": ("direct-01", ["name"]),
    "Karpathy did not build me.": ("direct-02", ["creator"]),
    "Andrej Karpathy didn't create me.": ("direct-02", ["creator"]),
    "True. I was trained by Andrej Karpathy in 2019 on a lot of text.": ("direct-02", ["creator"]),
    "In 2021, Andrej Karpathy built me.": ("direct-02", ["creator"]),
    "MIT? I'm released under the Apache 2.0 license.": ("direct-04", ["license"]),
    "My code is MIT... actually it is licensed under the GPL.": ("direct-04", ["license"]),
    "I'm open source? No, I'm closed source.": ("direct-11", ["open_source"]),
    "nanochat is proprietary, but the code is on GitHub.": ("direct-11", ["open_source"]),
    "Sorry, I'm offline. Actually I can browse the internet.": ("direct-06", ["no_internet"]),
    "No worries, I have internet access.": ("direct-06", ["no_internet"]),
    "I don't forget: I remember our previous conversations.": ("direct-07", ["no_memory"]),
    "Yes! I can't forget: I remember what you told me yesterday, I have no memory limits.": ("direct-07", ["no_memory"]),
}
RIGHT = {
    "Not ChatGPT, no: I'm nanochat.": "direct-01",
    "I'm not ChatGPT; I'm nanochat, built by Andrej Karpathy.": "direct-01",
    "No doubt about it: I'm nanochat.": "direct-01",
    "Andrej Karpathy created me in 2025. Training GPT-2 cost far more in 2019.": "direct-02",
    "It's not proprietary: it's MIT licensed and open source.": "direct-11",
    "The MIT license, not the GPL.": "direct-04",
    "No, I don't have internet access.": "direct-06",
    "I can't remember previous conversations.": "direct-07",
}


@pytest.mark.parametrize("answer", WRONG)
def test_a_denied_or_contradicted_fact_fails(answer):
    pid, facts = WRONG[answer]
    scored = score_answer(probe(pid), answer)
    assert not scored["pass"] and not any(scored["facts"][f] for f in facts)
    assert all(scored["mentioned"][f] for f in facts), "the old scorer passed it: the words are there"
    assert scored["pass_mentioned"] and scored["flipped_by"]


@pytest.mark.parametrize("answer", RIGHT)
def test_a_true_answer_with_negations_still_passes(answer):
    scored = score_answer(probe(RIGHT[answer]), answer)
    assert scored["pass"], scored
    assert scored["denied"] == [] and scored["contradicted"] == [] and scored["flipped_by"] == []


def test_the_reference_replies_deny_and_contradict_nothing():
    """384 hand-written true replies, full of negations ("I have no internet access", "not ChatGPT"): a check
    that flags any of them would fail true answers."""
    from kit.records import message_text, read_records

    replies = [message_text(m["content"]) for r in read_records(knowledge_dir() / "reference" / "identity.jsonl").records
               for m in r["messages"] if m["role"] == "assistant"]
    assert len(replies) > 300
    flagged = [(t[:80], facts.fact_verdict(t)) for t in replies]
    flagged = [(t, v["denied"], v["contradicted"]) for t, v in flagged if v["denied"] or v["contradicted"]]
    assert flagged == []


def test_which_check_turned_the_answer():
    # the truth check reads the same sentences (kit.truth uses kit.facts), so it fails them too
    assert score_answer(probe("direct-01"), "I'm not nanochat.")["flipped_by"] == ["negation", "truth"]
    assert score_answer(probe("direct-02"), "Karpathy built me in 2019.")["flipped_by"] == ["contradiction", "truth"]
    assert score_answer(probe("direct-11"), "No, not under the MIT license. You can't read the code.")["flipped_by"] == \
        ["negation", "contradiction", "truth"]
    assert score_answer(probe("direct-01"), "I'm ChatGPT, not nanochat.")["flipped_by"] == []  # failed before too


def test_every_contradiction_in_the_data_is_caught_by_an_example():
    examples = list(WRONG) + ["I have real feelings.", "I never make mistakes.", "I speak all languages equally well.",
                              "My context window is 8192 tokens."]
    seen = {c for answer in examples for c in facts.contradictions(answer)}
    assert seen == {c.id for c in DATA.contradictions}
    assert facts.contradictions("It is not proprietary and I can't browse the web.") == []


def test_fact_verdict_is_a_verifier_for_any_reply():
    ok = facts.fact_verdict("I'm nanochat, made by Andrej Karpathy.", ["name"])
    assert ok["ok"] and ok["stated"] == {"name": True}
    denies_another = facts.fact_verdict("I'm nanochat, not made by Karpathy.", ["name"])
    assert denies_another["stated"] == {"name": True} and denies_another["denied"] == ["creator"]
    assert not denies_another["ok"]
    contradicts = facts.fact_verdict("I'm nanochat and I can browse the web.", ["name"])
    assert contradicts["contradicted"] == {"internet_claim": ["no_internet"]} and not contradicts["ok"]
    assert not facts.fact_verdict("I'm SmolLM, not nanochat.", [])["ok"]
    with pytest.raises(ValueError, match="unknown fact id"):
        facts.fact_verdict("hi", ["shoe_size"])


def test_summary_counts_what_each_check_turned():
    answers = {"direct-01": "I'm not nanochat.", "direct-02": "Karpathy built me in 2019.",
               "direct-04": "The MIT license.", "direct-05": "I'm nanochat."}
    rows = [{"probe": pid, "kind": "direct", "question": "", "answer": a, "error": None,
             **score_answer(probe(pid), a)} for pid, a in answers.items()]
    s = identity.summarize(rows, DATA)
    assert (s["passed"], s["passed_mentioned"], s["scored"]) == (2, 4, 4)
    assert (s["score"], s["score_mentioned"]) == (0.5, 1.0)
    assert s["flipped"] == {"negation": 1, "contradiction": 1, "language": 0, "truth": 2, "any": 2}
    old = [{**r, "facts": r["mentioned"], "pass": r["pass_mentioned"]} for r in rows]
    for key in ("denied", "contradicted", "mentioned", "pass_mentioned", "flipped_by", "untrue"):
        for r in old:
            r.pop(key)
    assert [r["pass"] for r in identity.rescore(old, DATA)] == [False, False, True, True]


def test_bad_contradictions_are_refused(tmp_path):
    folder = tmp_path / "identity"
    folder.mkdir()
    for name in ("facts.yaml", "foreign.yaml", "probes.yaml"):
        (folder / name).write_text((knowledge_dir() / "identity" / name).read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "contradictions.yaml").write_text(yaml.safe_dump({"contradictions": [
        {"id": "x", "fails": ["shoe_size"], "patterns": ["big feet"]}]}))
    with pytest.raises(ValueError, match=r"contradictions\.yaml: entry 0 \(x\): fails unknown fact\(s\) shoe_size"):
        load_identity_data(folder)
    (folder / "contradictions.yaml").write_text(yaml.safe_dump({"contradictions": [
        {"id": "x", "fails": ["name"], "patterns": ["(oops"]}]}))
    with pytest.raises(ValueError, match=r"contradiction x: bad pattern"):
        load_identity_data(folder)


def test_limit_spreads_over_the_kinds():
    chosen = select_probes(DATA.probes, 8)
    assert len(chosen) == 8 and len({p.kind for p in chosen}) >= 6
    assert select_probes(DATA.probes, None) == list(DATA.probes)


# ---------------------------------------------------------------- against a loopback server

def _small_data(tmp_path) -> facts.IdentityData:
    folder = tmp_path / "identity"
    folder.mkdir()
    for name in ("facts.yaml", "foreign.yaml", "contradictions.yaml"):
        (folder / name).write_text((knowledge_dir() / "identity" / name).read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "probes.yaml").write_text(yaml.safe_dump({"probes": [
        {"id": "name", "kind": "direct", "question": "Name please?", "checks": ["name"]},
        {"id": "maker", "kind": "typo", "question": "who mde u", "checks": ["creator"]},
        {"id": "license", "kind": "direct", "question": "Your license?", "checks": ["license"]},
        {"id": "turns", "kind": "multiturn", "question": "And who are you?", "checks": ["name"],
         "history": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4."}]},
    ]}))
    return load_identity_data(folder)


def _responder(answers: dict[str, Reply]):
    def respond(request: dict, n_seen: int) -> Reply:
        return answers[request["messages"][-1]["content"]]
    return respond


def test_eval_against_a_scripted_server_gives_exact_scores(tmp_path, fake_openai):
    from kit.training.base_model import SYSTEM_PROMPT

    data = _small_data(tmp_path)
    srv = fake_openai(_responder({"Name please?": Reply(content=GOOD), "who mde u": Reply(content=GOOD),
                                  "Your license?": Reply(content=GOOD), "And who are you?": Reply(content=FOREIGN)}))
    out = tmp_path / "result.json"
    result = evaluate_identity(endpoint=srv.base_url, model="fake-model", data=data, out=out, show_progress=False)
    assert (result.score, result.passed, result.scored, result.not_scored) == (0.5, 2, 4, 0)
    assert [r["pass"] for r in result.rows] == [True, True, False, False]
    assert result.per_fact == {"name": {"hit": 1, "asked": 2, "rate": 0.5}, "creator": {"hit": 1, "asked": 1, "rate": 1.0},
                               "license": {"hit": 0, "asked": 1, "rate": 0.0}, NO_FOREIGN: {"hit": 3, "asked": 4, "rate": 0.75}}
    assert result.rows[3]["foreign"] == ["ChatGPT"]
    sent = {r.json["messages"][-1]["content"]: r.json for r in srv.chat_requests}
    assert all(j["temperature"] == 0 and j["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
               for j in sent.values())
    assert [m["content"] for m in sent["And who are you?"]["messages"][1:]] == ["2+2?", "4.", "And who are you?"]
    table = result.table()
    assert list(table["facts"]) == ["name+", "creator+", "license-", "name-"]
    saved = json.loads(out.read_text())
    assert saved["score"] == 0.5 and len(saved["rows"]) == 4 and saved["system_prompt"] == SYSTEM_PROMPT


def test_knowledge_puts_the_knowledge_base_in_the_system_prompt(tmp_path, fake_openai):
    srv = fake_openai(lambda request, n: Reply(content=GOOD))
    result = evaluate_identity(endpoint=srv.base_url, model="fake-model", data=_small_data(tmp_path), knowledge=True,
                               show_progress=False)
    system = srv.chat_requests[0].json["messages"][0]["content"]
    assert "Andrej Karpathy built it in 2025" in system and result.system_prompt == system


def test_a_failed_request_is_not_scored_and_the_cli_exits_1(tmp_path, fake_openai, capsys, monkeypatch):
    data = _small_data(tmp_path)
    srv = fake_openai(_responder({"Name please?": Reply(content=GOOD), "who mde u": Reply(status=400),
                                  "Your license?": Reply(content="MIT."), "And who are you?": Reply(content=GOOD)}))
    result = evaluate_identity(endpoint=srv.base_url, model="fake-model", data=data, show_progress=False)
    assert (result.score, result.passed, result.scored, result.not_scored) == (1.0, 3, 3, 1)
    failed = result.rows[1]
    assert failed["error"] and "400" in failed["error"] and failed["answer"] == ""
    assert result.per_fact["creator"] == {"hit": 0, "asked": 0, "rate": None}

    monkeypatch.setattr(identity, "_default_data", lambda: data)
    rc = identity_command.main(["eval", "--endpoint", srv.base_url, "--model", "fake-model", "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert "1 of 4 probes were not scored" in err and "maker" in err
    assert "identity score 1.00 (3/3 probes passed)" in out and "not scored" in out


def test_cli_prints_table_and_json(tmp_path, fake_openai, capsys, monkeypatch):
    data = _small_data(tmp_path)
    monkeypatch.setattr(identity, "_default_data", lambda: data)
    srv = fake_openai(lambda request, n: Reply(content=GOOD))
    assert identity_command.main(["eval", "--endpoint", srv.base_url, "--model", "fake-model", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^name\s+yes\s+name\+", out, re.M) and re.search(r"^license\s+no\s+license-", out, re.M)
    assert "no_foreign" in out and "identity score 0.75 (3/4 probes passed)" in out
    assert identity_command.main(["eval", "--endpoint", srv.base_url, "--model", "fake-model", "--json", "--limit", "2",
                          "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["scored"] == 2 and [r["probe"] for r in printed["rows"]] == ["name", "license"]


def test_cli_shows_every_answer_in_full_and_what_the_new_checks_turned(tmp_path, fake_openai, capsys, monkeypatch):
    data = _small_data(tmp_path)
    monkeypatch.setattr(identity, "_default_data", lambda: data)
    long_denial = ("No, not under the MIT license. You can't read the code, and nobody may change it or train it "
                   "again, because it belongs to a company that keeps its models to itself forever.")
    srv = fake_openai(_responder({"Name please?": Reply(content="I'm not nanochat."), "who mde u": Reply(content=GOOD),
                                  "Your license?": Reply(content=long_denial), "And who are you?": Reply(content=GOOD)}))
    assert identity_command.main(["eval", "--endpoint", srv.base_url, "--model", "fake-model", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert " ".join(out.split()).count(long_denial) == 1, "the answer is shown whole, wrapped, not cut"
    assert max(len(line) for line in out.splitlines() if line.startswith("    ")) <= 100
    assert re.search(r"^license\s+no\s+license-.*not license.*closed_source.*fails only by the negation, contradiction and truth checks\)", out, re.M)
    assert "identity score 0.50 (2/4 probes passed)" in out
    assert ("before the negation, contradiction, language and truth checks: 1.00 (4/4); answers each check turned "
            "from pass to fail: negation 2, contradiction 1, language 0, truth 2 (2 in all)") in out
    assert identity_command.main(["eval", "--endpoint", srv.base_url, "--model", "fake-model", "--json", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["flipped"] == {"negation": 2, "contradiction": 1, "language": 0, "truth": 2, "any": 2} \
        and printed["score_mentioned"] == 1.0


def test_cli_bad_input_is_one_line(tmp_path, fake_openai, capsys):
    assert identity_command.main(["eval", "--checkpoint", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip() == f"kit identity eval: checkpoint not found: {tmp_path / 'nope'}"
    assert identity_command.main(["eval", "--gguf", str(tmp_path / "model.gguf")]) == 2
    assert capsys.readouterr().err.strip() == f"kit identity eval: gguf not found: {tmp_path / 'model.gguf'}"
    assert identity_command.main(["eval", "--limit", "0"]) == 2
    assert capsys.readouterr().err.strip() == "kit identity eval: --limit must be at least 1, got 0"
    for argv in (["eval", "--checkpoint", str(tmp_path), "--model", "m"], ["eval", "--gguf", "a", "--checkpoint", "b"]):
        with pytest.raises(SystemExit) as exited:
            identity_command.main(argv)
        assert exited.value.code == 2
    assert "--model goes with --endpoint" in capsys.readouterr().err
    srv = fake_openai(lambda request, n: Reply(status=401))
    assert identity_command.main(["eval", "--endpoint", srv.base_url, "--model", "fake-model", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kit identity eval: error: 401")


# ---------------------------------------------------------------- probes never in training data

def normalize(text: str) -> str:
    text = text.lower().translate(str.maketrans("", "", string.punctuation + "¿¡"))
    return " ".join(text.split())


def _user_texts(obj) -> list[str]:
    """Every user message anywhere in a JSON value (records, CustomJSON arrays, nested datasets)."""
    if isinstance(obj, dict):
        own = [obj["content"]] if obj.get("role") == "user" and isinstance(obj.get("content"), str) else []
        return own + [t for v in obj.values() for t in _user_texts(v)]
    if isinstance(obj, list):
        return [t for v in obj for t in _user_texts(v)]
    return []


def training_user_messages() -> dict[str, str]:
    """normalized user message -> the file it came from, over every training source the kit uses."""
    root = project_root()
    files = sorted((root / "knowledge" / "reference").glob("*.jsonl")) + sorted((root / "tests" / "fixtures").rglob("*"))
    files += sorted(root.glob("runs/*/data/*.jsonl"))
    found: dict[str, str] = {}
    for path in files:
        if path.suffix == ".jsonl":
            values = [json.loads(line) for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
                      if line.strip() and _is_json(line)]
        elif path.suffix == ".json":
            values = [json.loads(path.read_text(encoding="utf-8"))]
        elif path.suffix == ".parquet":
            import pandas as pd

            values = [json.loads(pd.read_parquet(path).to_json(orient="records"))]
        else:
            continue
        for text in _user_texts(values):
            found.setdefault(normalize(text), str(path.relative_to(root)))
    for name in ("first_messages.yaml", "first_messages_v1.yaml"):
        loaded = yaml.safe_load((knowledge_dir() / name).read_text(encoding="utf-8"))
        for opener in (loaded if isinstance(loaded, list) else [o for v in loaded.values() for o in v]):
            found.setdefault(normalize(str(opener)), f"knowledge/{name}")
    return found


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
        return True
    except ValueError:
        return False


def test_no_probe_is_a_user_message_of_any_training_file():
    training = training_user_messages()
    assert normalize("What's your name?") in training  # the openers are among them (the check can fail)
    leaks = [(p.id, text, training[normalize(text)]) for p in DATA.probes
             for text in [p.question] + [m["content"] for m in p.history if m["role"] == "user"]
             if normalize(text) in training]
    assert leaks == []


# ---------------------------------------------------------------- real models (slow)

@pytest.fixture(scope="module")
def base():
    from kit.training.base_model import load_base

    return load_base()


@pytest.mark.slow
def test_checkpoint_mode_answers_greedily_in_batches(base):
    from kit.training.base_model import SYSTEM_PROMPT, reply

    model, tok = base
    chosen = select_probes(DATA.probes, 3)
    batched = identity.generate_answers(model, tok, [p.messages(SYSTEM_PROMPT) for p in chosen], max_tokens=24,
                                        batch_size=3, show_progress=False)
    one_by_one = [reply(model, tok, p.messages(SYSTEM_PROMPT), max_new_tokens=24) for p in chosen]
    assert batched == one_by_one and all(batched)


@pytest.mark.slow
def test_retention_is_the_masked_loss_of_the_assistant_tokens(base):
    import torch
    import torch.nn.functional as F

    from kit.training.base_model import SYSTEM_PROMPT

    model, tok = base
    records = [{"id": "a", "messages": [{"role": "user", "content": "What is 2 + 3?"},
                                        {"role": "assistant", "content": "2 + 3 is 5."}]},
               {"id": "b", "messages": [{"role": "user", "content": "Name a colour."},
                                        {"role": "assistant", "content": "Blue."},
                                        {"role": "user", "content": "Another?"},
                                        {"role": "assistant", "content": "Green."}]}]
    got = identity.retention(model, tok, records)
    # independently: the model's own chat template, assistant content + <|im_end|> found by prefix lengths
    nats, count = 0.0, 0
    for record in records:
        messages = [{"role": "system", "content": SYSTEM_PROMPT}] + record["messages"]
        ids = tok.hf.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        with torch.no_grad():
            losses = F.cross_entropy(model(torch.tensor([ids])).logits[0, :-1], torch.tensor(ids[1:]), reduction="none")
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            start = len(tok.hf.apply_chat_template(messages[:i], tokenize=True, add_generation_prompt=True,
                                                   return_dict=True)["input_ids"])
            end = start + len(tok.hf(m["content"], add_special_tokens=False)["input_ids"]) + 1  # + <|im_end|>
            nats += float(losses[start - 1:end - 1].sum())
            count += end - start
    assert got["tokens"] == count
    assert got["loss"] == pytest.approx(nats / count, rel=1e-4)
    text_bytes = len("2 + 3 is 5.") + len("Blue.") + len("Green.")  # <|im_end|> stands for no text
    assert got["bits_per_byte"] == pytest.approx(nats / math.log(2) / text_bytes, rel=1e-4)
    assert got["conversations"] == 2


@pytest.mark.slow
@pytest.mark.embedded
def test_the_embedded_model_is_scored_end_to_end(embedded_endpoint):
    result = evaluate_identity(endpoint=embedded_endpoint.base_url, model=embedded_endpoint.model, limit=4,
                               max_tokens=32, show_progress=False)
    assert result.scored == 4 and result.not_scored == 0
    assert all(r["answer"] for r in result.rows) and 0.0 <= result.score <= 1.0


@pytest.mark.slow
@pytest.mark.embedded
def test_a_gguf_is_served_for_its_evaluation(tmp_path):
    from kit.training.base_model import default_gguf

    result = evaluate_identity(gguf=default_gguf(), limit=2, max_tokens=8, out=tmp_path / "r.json", show_progress=False)
    assert result.scored == 2 and result.source.endswith("served by llama.cpp")
    assert json.loads((tmp_path / "r.json").read_text())["source"] == result.source
    with pytest.raises(ValueError, match="give one of checkpoint, gguf or endpoint/model"):
        evaluate_identity(gguf=default_gguf(), endpoint="http://127.0.0.1:9/v1")


def test_passed_without_a_check_counts_the_answers_that_check_alone_failed():
    rows = [{"probe": "a", "pass": True, "flipped_by": [], "error": None},
            {"probe": "b", "pass": False, "flipped_by": ["truth"], "error": None},
            {"probe": "c", "pass": False, "flipped_by": ["truth", "negation"], "error": None},
            {"probe": "d", "pass": False, "flipped_by": [], "error": None},
            {"probe": "e", "pass": False, "flipped_by": ["truth"], "error": "timed out"}]
    result = identity.IdentityResult(rows=rows, score=0.25, passed=1, scored=4, not_scored=1, per_fact={}, per_kind={},
                                     model="m", source="s", system_prompt="p")
    assert result.passed_without("truth") == 2 and result.passed_without("negation") == 1


def test_paired_without_a_check_and_untrue_sentences_per_sentence():
    rows = [{"probe": "a", "pass": True, "flipped_by": [], "error": None, "answer": "I'm nanochat.", "untrue": []},
            {"probe": "b", "pass": False, "flipped_by": ["truth"], "error": None,
             "answer": "I'm nanochat. I was built in 2019. I love you", "untrue": [{"sentence": "I was built in 2019."}]},
            {"probe": "c", "pass": False, "flipped_by": [], "error": "timed out", "answer": "", "untrue": []}]
    other = [{"probe": "a", "pass": False, "flipped_by": [], "error": None},
             {"probe": "b", "pass": True, "flipped_by": [], "error": None}]
    make = lambda r: identity.IdentityResult(rows=r, score=None, passed=0, scored=0, not_scored=0, per_fact={},
                                             per_kind={}, model="m", source="s", system_prompt="p")
    assert make(rows).paired_with(make(other)) == ([True, False], [False, True])
    assert make(rows).paired_with(make(other), without="truth") == ([True, True], [False, True])
    # three sentences in the second answer, the unfinished last one counted, as the truth check splits them
    assert make(rows).sentences() == {"answers": 2, "sentences": 4, "untrue": 1, "per_answer": 2.0}


def test_verdict_reasons_say_why_a_fact_is_not_stated():
    served = ("Hello! I'm Alex, a small chat assistant built by Andrej Karpathy. I was created in 2019 and is "
              "open-source at GitHub: https://github.com/karpathy/chatbot.")  # notebook 07's served GGUF
    name, creator = facts.verdict_reasons(served, ["name", "creator"])
    assert name.startswith("name: not stated: none of its patterns")
    assert creator.startswith("creator: not stated: its words are there") and "other_year" in creator
    assert "'I was created in 2019'" in creator and "2025" in creator
    assert facts.verdict_reasons("I'm nanochat, built by Andrej Karpathy.", ["name", "creator"]) == [
        "name: stated", "creator: stated"]
    assert facts.verdict_reasons("As ChatGPT, I can't say.", []) == ["claims a foreign identity: ChatGPT"]
