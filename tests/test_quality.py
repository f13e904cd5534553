"""kit.quality.report on crafted files with known answers: coverage shares, planted near-duplicates,
distinct-n, first-message duplicates, style rules, cost per supervised token, and the CLI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from kit.commands import quality as quality_command
from kit.quality import diversity, neardup
from kit.quality import report as quality
from kit.records import read_records

FIXTURES = Path(__file__).parent / "fixtures"
NEAR_DUPS = FIXTURES / "quality_near_dups.jsonl"
COVERAGE = FIXTURES / "quality_coverage.jsonl"


def conversation(*turns: str, meta: dict | None = None, id_: str = "x") -> dict:
    roles = itertools.cycle(["user", "assistant"])
    return {"id": id_, "messages": [{"role": next(roles), "content": t} for t in turns], "meta": meta or {}}


def element(cov: dict, dim: str, name: str) -> dict:
    return next(e for e in cov["dimensions"][dim]["elements"] if e["element"] == name)


# ---- coverage -----------------------------------------------------------------------------------


def test_coverage_exact_shares_against_given_targets():
    records = read_records(COVERAGE, strict=False).records  # 10 with meta, 1 bare array; 1 broken line
    targets = {
        "topic_category": {"identity": 0.5, "architecture": 0.25, "training": 0.15, "history": 0.1},
        "persona": {"student": 1 / 3, "engineer": 1 / 3, "skeptic": 1 / 3},
    }
    cov = diversity.coverage(records, targets)
    cat = cov["dimensions"]["topic_category"]
    assert cat["n"] == 10 and cat["records_without"] == 1 and cat["source"] == "given"
    assert element(cov, "topic_category", "identity")["share"] == pytest.approx(0.6)
    assert element(cov, "topic_category", "architecture")["share"] == pytest.approx(0.3)
    assert element(cov, "topic_category", "training")["share"] == pytest.approx(0.1)
    assert element(cov, "topic_category", "history")["count"] == 0
    assert cat["missing"] == ["history"]
    # |.6-.5| + |.3-.25| + |.1-.15| + |0-.1| = 0.3, halved
    assert cat["total_variation"] == pytest.approx(0.15)
    assert element(cov, "persona", "engineer")["share"] == pytest.approx(0.4)
    # first-message styles are list-valued: 11 styles over 10 records, each counted
    fmc = cov["dimensions"]["first_message_category"]
    assert fmc["n"] == 11 and fmc["source"] == "uniform over observed"
    assert element(cov, "first_message_category", "simple_greetings")["share"] == pytest.approx(5 / 11)
    top = cov["furthest_off"][0]
    assert (top["dimension"], top["element"], top["diff"]) == ("first_message_category", "simple_greetings", pytest.approx(5 / 11 - 1 / 5))
    assert cov["absent"] == ["recipe"]


def test_coverage_without_targets_is_uniform_over_observed():
    records = read_records(COVERAGE, strict=False).records
    cov = diversity.coverage(records)
    dyn = cov["dimensions"]["dynamic"]
    assert dyn["source"] == "uniform over observed"
    assert element(cov, "dynamic", "short")["target"] == pytest.approx(0.5)
    assert element(cov, "dynamic", "short")["share"] == pytest.approx(0.7)
    assert any("no recipe" in n for n in cov["notes"])


def test_coverage_of_records_without_meta_says_so():
    records = [conversation("hi", "hello"), conversation("yo", "hey")]
    cov = diversity.coverage(records)
    assert cov["dimensions"] == {} and cov["furthest_off"] == []
    assert any("no record carries diversity meta" in n for n in cov["notes"])


def test_coverage_uses_the_recipe_targets_of_kit_sampling():
    sampling = pytest.importorskip("kit.generation.sampling")
    dims = sampling.load_dimensions()
    records = [conversation("q", "a", meta=sampling.sample_elements("v2", 7, i, dims)) for i in range(3000)]
    cov = diversity.coverage(records)
    targets = sampling.target_shares("v2")
    for dim in ("topic_category", "persona", "dynamic", "first_message_category"):
        d = cov["dimensions"][dim]
        assert d["source"] == "recipe"
        assert {e["element"]: e["target"] for e in d["elements"]} == pytest.approx(targets[dim])
        assert d["total_variation"] < 0.06, dim  # a seeded draw of 3000 is close to its targets
        assert d["unexpected"] == []


# ---- lexical diversity --------------------------------------------------------------------------


def test_distinct_n_by_hand():
    texts = ["The cat sat", "the CAT ran."]
    # words: the cat sat | the cat ran -> 4 unique of 6; bigrams 3 of 4; trigrams 2 of 2
    assert diversity.distinct_n(texts, 1) == pytest.approx(4 / 6)
    assert diversity.distinct_n(texts, 2) == pytest.approx(3 / 4)
    assert diversity.distinct_n(texts, 3) == 1.0
    assert diversity.distinct_n(["one two"], 3) is None
    assert diversity.words("Don't STOP, it's 2025!") == ["don't", "stop", "it's", "2025"]


def test_distinct_keeps_roles_apart():
    records = [conversation("hi there", "hello hello"), conversation("hi there", "hello world")]
    d = diversity.distinct(records)
    assert d["user"]["distinct_1"] == pytest.approx(2 / 4) and d["user"]["distinct_2"] == pytest.approx(1 / 2)
    assert d["assistant"]["distinct_1"] == pytest.approx(2 / 4) and d["assistant"]["words"] == 4


def test_first_message_duplicate_rate():
    records = [conversation(t, "ok") for t in ["Hi", "hi ", "Hello", "HI", "hi  there"]]
    # normalised: hi, hi, hello, hi, hi there -> 3 unique of 5
    assert diversity.first_message_duplicate_rate(records) == pytest.approx(2 / 5)
    assert diversity.first_messages(records)["most_common"] == [{"text": "hi", "count": 3}]
    assert diversity.first_message_duplicate_rate([]) is None


# ---- near-duplicates ------------------------------------------------------------------------------


def exact_jaccard(a: str, b: str) -> float:
    sa, sb = set(neardup.shingles(a)), set(neardup.shingles(b))
    return len(sa & sb) / len(sa | sb)


def test_fixture_plants_clear_near_duplicates():
    records = read_records(NEAR_DUPS).records
    texts = {r["id"]: neardup.conversation_text(r) for r in records}
    for a, b in itertools.combinations(texts, 2):
        j = exact_jaccard(texts[a], texts[b])
        if a.split("-")[0] != b.split("-")[0] or a.startswith("other"):
            assert j < 0.3, (a, b, j)
        elif a.endswith("-0"):  # a copy against its original: one word edited
            assert j >= 0.85, (a, b, j)
        else:  # two copies: two edits apart, still one cluster through their original
            assert j >= 0.75, (a, b, j)


def test_near_duplicates_finds_the_planted_clusters_and_nothing_else():
    records = read_records(NEAR_DUPS).records
    nd = neardup.near_duplicates(records, threshold=0.8, num_perm=128)
    clusters = sorted(sorted(records[i]["id"] for i in c) for c in nd.clusters)
    assert clusters == [["cost-0", "cost-1", "cost-2"], ["limits-0", "limits-1", "limits-2"], ["rope-0", "rope-1", "rope-2"]]
    assert nd.removable == 6 and nd.rate == pytest.approx(6 / 19)
    kept = neardup.dedup(records, nd.clusters)
    assert len(kept) == 13
    assert {r["id"] for r in kept} >= {"cost-0", "rope-0", "limits-0"}  # the first of each cluster stays
    d = nd.to_dict(records)
    assert d["largest"][0]["size"] == 3 and d["largest"][0]["examples"]


def test_vectorised_signatures_equal_datasketch_minhash():
    from datasketch import MinHash

    texts = [neardup.conversation_text(r) for r in read_records(NEAR_DUPS).records[:4]] + ["two words", "", "!!"]
    sig = neardup.minhash_signatures(texts, num_perm=64, seed=3)
    for text, row in zip(texts, sig):
        m = MinHash(num_perm=64, seed=3, hashfunc=neardup.shingle_hash)
        m.update_batch(neardup.shingles(text))
        assert np.array_equal(m.hashvalues, row), text


def test_signature_blocks_do_not_change_results(monkeypatch):
    texts = [neardup.conversation_text(r) for r in read_records(NEAR_DUPS).records]
    whole = neardup.minhash_signatures(texts)
    monkeypatch.setattr(neardup, "_CHUNK_SHINGLES", 50)  # many small blocks, some of one doc
    assert np.array_equal(neardup.minhash_signatures(texts), whole)


def test_empty_conversations_are_not_clustered():
    records = [conversation("", ""), conversation("", ""), conversation("hello there friend", "hi")]
    nd = neardup.near_duplicates(records)
    assert nd.clusters == [] and nd.empty_records == 2


# ---- style --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, lang",
    [
        ("hi there, who are you?", "en"),
        ("Hola, ¿quién eres?", "es"),
        ("bonjour", "fr"),
        ("Hallo, wer bist du?", "de"),
        ("ciao", "it"),
        ("你好，你是谁？", "zh"),
        ("こんにちは、あなたは誰ですか", "ja"),
        ("안녕하세요", "ko"),
        ("привет", "ru"),
        ("konnichiwa", "ja"),
        ("ni hao", "zh"),
        ("helo", "und"),
        ("???", "und"),
    ],
)
def test_guess_language(text, lang):
    assert diversity.guess_language(text) == lang


def test_style_rates():
    records = [
        conversation("hi", "I am nanochat.", "cool", "Yes, NanoChat here."),
        conversation("hola", "Hello \u2014 I'm an assistant."),
    ]
    s = diversity.style(records)
    assert s["non_ascii_message_rate"] == pytest.approx(1 / 6)
    assert s["non_ascii_record_rate"] == pytest.approx(1 / 2)
    assert s["non_ascii_top_chars"][0]["codepoint"] == "U+2014"
    assert s["identity_mention_rate"] == pytest.approx(2 / 3)  # case-insensitive, whole word
    assert s["identity_mention_record_rate"] == pytest.approx(1 / 2)
    assert s["first_message_languages"] == {"en": 1, "es": 1}


# ---- cost ---------------------------------------------------------------------------------------


def test_cost_per_supervised_token_by_hand(trained_tokenizer):
    usage = {"prompt_tokens": 1000, "completion_tokens": 150, "cost_usd": 0.0025}
    records = [
        conversation("what is your name", "I am nanochat.", "who made you", "Andrej Karpathy made me.", meta={"usage": usage}),
        conversation("hello", "Hello! How can I help today?", meta={"usage": usage}),
        conversation("no usage here", "so this one is not counted"),
    ]
    # supervised = each assistant text's tokens + its <|assistant_end|>; nothing of the user's
    assistant = ["I am nanochat.", "Andrej Karpathy made me.", "Hello! How can I help today?"]
    supervised = sum(len(trained_tokenizer.encode(t)) + 1 for t in assistant)
    c = diversity.cost(records, trained_tokenizer)
    assert c["records_with_usage"] == 2 and c["supervised_tokens"] == supervised
    assert c["cost_usd"] == pytest.approx(0.005)
    assert c["usd_per_supervised_token"] == pytest.approx(0.005 / supervised)
    assert c["usd_per_million_supervised_tokens"] == pytest.approx(5000 / supervised)
    assert c["completion_tokens_per_supervised_token"] == pytest.approx(300 / supervised)
    assert c["api_tokens_per_supervised_token"] == pytest.approx(2300 / supervised)


def test_cost_in_one_unit_counts_the_supervised_text_with_the_generators_tokenizer(trained_tokenizer):
    usage = {"prompt_tokens": 1000, "completion_tokens": 150}
    records = [conversation("what is your name", "I am nanochat.", "who made you", "Andrej Karpathy made me.",
                            meta={"usage": usage}),
               conversation("no usage here", "so this one is not counted")]
    assert diversity.supervised_text(records[0], trained_tokenizer) == "I am nanochat.\nAndrej Karpathy made me."
    words = lambda texts: [len(t.split()) for t in texts]  # a stand-in generator tokenizer: one token a word
    c = diversity.cost_in_one_unit(records, trained_tokenizer, words)
    assert c["supervised_generator_tokens"] == 7 and c["supervised_bytes"] == len("I am nanochat.\nAndrej Karpathy made me.")
    assert c["completion_tokens_per_supervised_token"] == pytest.approx(150 / 7)
    assert c["api_tokens_per_supervised_token"] == pytest.approx(1150 / 7)


def test_cost_without_tokenizer_or_usage():
    c = diversity.cost([conversation("a", "b")])
    assert c["records_with_usage"] == 0 and c["cost_usd"] is None and "tokenizer" in c["note"]


# ---- report, rejects and CLI --------------------------------------------------------------------


def test_report_is_json_and_has_the_promised_keys():
    records = read_records(NEAR_DUPS).records
    report = quality.quality_report(records)
    json.dumps(report)
    for key in ("near_duplicate_rate", "coverage", "distinct", "first_message_duplicate_rate"):
        assert key in report
    assert report["near_duplicate_rate"] == pytest.approx(6 / 19)
    assert report["lengths"]["turns"]["median"] == 2


def test_invalid_conversations_are_counted_and_named():
    records = [conversation("hi", "hello", id_="ok"), conversation("hi", " ", id_="empty"),
               conversation("hi", id_="no-reply"), conversation("hi", "cut", meta={"finish_reason": "length"}, id_="cut"),
               conversation("caf\u00e9", "ol\u00e9", id_="accents")]  # non-ASCII is a warning, not invalid
    v = quality.validity(records)
    assert v["invalid"] == 3 and v["ids"] == ["empty", "no-reply", "cut"]
    assert v["rules"] == {"content": 1, "ends_with_assistant": 1, "min_messages": 1, "finish_reason": 1}
    text = quality.format_report({**quality.quality_report(records), "file": "f.jsonl"})
    assert "invalid: 3 conversations break a validation rule" in text.splitlines()[1]


def test_rejects_are_counted_by_rule(tmp_path):
    data = tmp_path / "conversations.jsonl"
    data.write_text(NEAR_DUPS.read_text())
    lines = [
        {"index": 3, "rules": ["roles", "ascii"], "reasons": ["message[1]: ..."], "raw": "{", "meta": {"usage": {"cost_usd": 0.001}}},
        {"index": 5, "rules": ["json"], "reasons": ["not JSON"], "raw": "oops", "meta": {"usage": {"cost_usd": 0.002}}},
    ]
    (tmp_path / "conversations.rejects.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\nnot json\n")
    assert quality.rejects_path(data) == tmp_path / "conversations.rejects.jsonl"
    r = quality.reject_reasons(quality.rejects_path(data))
    assert r["n"] == 2 and r["unreadable_lines"] == 1
    assert r["reasons"] == {"roles": 1, "ascii": 1, "json": 1}
    assert r["usage"]["cost_usd"] == pytest.approx(0.003)


def test_cli_json_reports_bad_lines_with_file_and_line(capsys):
    rc = quality_command.main([str(COVERAGE), "--json"])
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert rc == 1  # the file has a bad line
    assert report["n_records"] == 11
    assert report["read_errors"][0]["line"] == 12
    assert f"{COVERAGE}:12:" in err


def test_cli_table_and_dedup_export(tmp_path, capsys):
    out_file = tmp_path / "dedup.jsonl"
    rc = quality_command.main([str(NEAR_DUPS), "--dedup-out", str(out_file), "--threshold", "0.8"])
    out, _ = capsys.readouterr()
    assert rc == 0
    assert "near-duplicates" in out and "31.6%" in out and "distinct-1" in out
    assert len(read_records(out_file).records) == 13


def test_cli_with_tokenizer(tokenizer_dir, capsys):
    assert quality_command.main([str(NEAR_DUPS), "--tokenizer", str(tokenizer_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["lengths"]["assistant_tokens"]["n"] == 19


@pytest.mark.parametrize(
    "argv, message",
    [
        (["missing.jsonl"], "no such file"),
        ([str(NEAR_DUPS), "--threshold", "1.5"], "--threshold"),
        ([str(NEAR_DUPS), "--tokenizer", "/nonexistent/tok"], "kit quality:"),
        ([str(NEAR_DUPS), "--targets", "no-such-recipe"], "kit quality:"),
    ],
)
def test_cli_user_errors_are_one_line(argv, message, capsys):
    assert quality_command.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


# ---- plots --------------------------------------------------------------------------------------


def test_plots_return_figures():
    from kit.quality import plots as quality_plots

    records = read_records(COVERAGE, strict=False).records
    fig = quality_plots.coverage_bars(diversity.coverage(records))
    assert len(fig.axes) == 5  # topic_category, topic, persona, dynamic, first_message_category
    fig = quality_plots.length_histograms(diversity.lengths(records))
    assert len(fig.axes) == 2
    fig = quality_plots.reject_reasons_bar({"n": 2, "reasons": {"json": 2, "roles": 1}})
    assert len(fig.axes) == 1
    assert quality_plots.coverage_bars(diversity.coverage([conversation("a", "b")])).axes


# ---- content rules, judge scores, the reference beside the data ----------------------------------

BAD = FIXTURES / "bad_examples.jsonl"
REFERENCE = Path(__file__).parent.parent / "knowledge" / "reference" / "identity.jsonl"


def test_content_rule_counts_name_rules_and_example_ids():
    counts = quality.content_rule_counts(read_records(BAD).records)
    assert counts["n"] == 3 and counts["records_flagged"] == 3
    rules = counts["rules"]
    assert rules["markup"] == {"findings": 2, "records": 2, "errors": 2, "warnings": 0,
                               "ids": ["bad-markup-reply", "bad-markup-copy"]}
    assert rules["shape"]["ids"] == ["bad-shape"] and rules["shape"]["warnings"] == 1
    assert rules["identity"]["records"] == 0
    assert counts["severity"]["markup"] == "error"


def scores_for(records, **by_id):
    base = {"status": "judged", "on_topic": 5, "persona_followed": 5, "consistent": 5, "natural": 5, "overall": 5, "reason": "ok"}
    return {r["id"]: {"id": r["id"], **base, **by_id.get(r["id"], {})} for r in records}


def test_realized_coverage_counts_only_what_the_judge_found_on_topic():
    meta = {"recipe": "v2", "topic_category": "identity", "topic": "what nanochat is", "persona": "p", "dynamic": "d"}
    records = [conversation("q", "a", meta={**meta, "topic_category": cat}, id_=f"r{i}")
               for i, cat in enumerate(["identity", "identity", "training", "history"])]
    scores = scores_for(records, r1={"on_topic": 2}, r3={"status": "unjudged", "reason": "attempt 1: not JSON"})
    targets = {"topic_category": {"identity": 0.5, "training": 0.25, "history": 0.25}}
    real = quality.realized_coverage(records, scores, targets)
    cat = real["dimensions"]["topic_category"]
    assert (real["judged"], cat["held"], cat["n"]) == (3, 2, 3)
    assert element({"dimensions": {"c": cat}}, "c", "identity")["share"] == pytest.approx(1 / 3)  # r1 is off topic
    assert cat["missing"] == ["history"]  # asked for, but its only record is unjudged
    requested = diversity.coverage(records, targets)["dimensions"]["topic_category"]
    assert requested["missing"] == [] and cat["total_variation"] > requested["total_variation"]

    summary = quality.judge_summary(records, scores)
    assert (summary["judged"], summary["unjudged"], summary["not_scored"]) == (3, 1, 0)
    assert summary["criteria"]["on_topic"]["counts"] == {"1": 0, "2": 1, "3": 0, "4": 0, "5": 2}
    assert summary["unjudged_reasons"] == ["attempt 1: not JSON"]


def test_reference_identity_file_covers_every_element_with_no_near_duplicates(capsys):
    report, records = quality.file_report(REFERENCE)
    assert len(records) >= 120
    for dim in ("topic_category", "topic", "persona", "dynamic", "first_message_category"):
        assert report["coverage"]["dimensions"][dim]["missing"] == [], dim
    assert report["near_duplicate_rate"] == 0
    assert report["content_rules"]["records_flagged"] == 0
    assert quality_command.main([str(REFERENCE)]) == 0
    out = capsys.readouterr().out
    assert "beside the reference" not in out  # the reference is not compared with itself
    assert "  topic                    covered" in out


def test_cli_shows_the_file_beside_the_reference_with_sample_sizes(tmp_path, capsys):
    scores = tmp_path / "scores.jsonl"
    records = read_records(BAD).records
    scores.write_text("\n".join(json.dumps(s) for s in scores_for(records, **{"bad-shape": {"on_topic": 1}}).values()) + "\n")
    assert quality_command.main([str(BAD), "--reference", str(NEAR_DUPS), "--scores", str(scores)]) == 0
    out = capsys.readouterr().out
    assert f"{BAD} beside the reference {NEAR_DUPS}" in out
    assert any(line.startswith("conversations with a content-rule finding") and "100.0% (n=3)" in line for line in out.splitlines())
    assert any(line.startswith("  markup") and "66.7% (n=3)" in line and "0.0% (n=19)" in line for line in out.splitlines())
    assert "realized topic_category: elements covered" in out
    assert "judge  3 of 3 judged" in out and "realized coverage (judged records holding their element" in out
    assert quality_command.main([str(BAD), "--reference", str(NEAR_DUPS), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["reference"]["n_records"] == 19
    assert {row["figure"] for row in report["comparison"]} >= {"near-duplicate rate", "conversations"}
    assert all("n_generated" in row and "n_reference" in row for row in report["comparison"])


def test_quality_plots_for_the_plan_the_comparison_and_the_scores():
    from kit.quality import plots as quality_plots
    from kit.generation.sampling import sample_elements

    plan = [{"id": str(i), "messages": [], "meta": sample_elements("v2", 0, i)} for i in range(300)]
    fig = quality_plots.plan_heatmap(plan)
    assert "n=300" in fig.axes[0].get_title(loc="left")
    # the colour scale starts at 0, not at the fewest: a pair at chance level must not look like a gap
    assert fig.axes[0].images[0].get_clim()[0] == 0 and "range of chance" in fig.axes[0].get_title(loc="left")
    records = read_records(BAD).records
    report = quality.quality_report(records, scores=scores_for(records))
    fig = quality_plots.comparison_bars(quality.comparison(report, quality.quality_report(read_records(NEAR_DUPS).records)))
    assert fig.axes and quality_plots.score_bars(report["judge"]).axes


def test_a_threshold_of_one_finds_only_exact_copies():
    records = read_records(NEAR_DUPS).records
    exact = neardup.near_duplicates(records, threshold=1.0)
    assert exact.removable <= neardup.near_duplicates(records, threshold=0.8).removable
    assert quality_command.main([str(NEAR_DUPS), "--threshold", "1", "--json"]) == 0


def test_the_comparison_chart_shows_the_rows_that_differ_and_leaves_empty_ones_to_the_table():
    from kit.quality import plots as quality_plots

    def row(figure, gen, ref, pct=True):
        return {"figure": figure, "generated": gen, "reference": ref, "n_generated": 23, "n_reference": 132, "pct": pct}

    rows = [row("markup", 0.0, 0.0), row("says it", 1.0, 0.87), row("requested topic: elements covered", {"covered": 20, "of": 58}, None, False),
            row("messages per conversation (mean)", 3.1, 4.2, False)]
    fig = quality_plots.comparison_bars(rows)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["says it", "requested topic: elements covered"]
    assert "1 rows at 0% on both sides" in fig.axes[0].get_title(loc="left")
    assert "20 of 58 elements" in [t.get_text() for t in fig.axes[0].texts]
    assert quality_plots.comparison_bars([row("markup", 0.0, 0.0), row("shape", 0.0, None)]) is None
