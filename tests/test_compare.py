"""kit.quality.compare and the judge's form check: the helpers that keep notebook 03's comparison honest."""

from __future__ import annotations

from kit.quality import compare
from kit.quality import report as quality
from kit.quality.diversity import coverage
from kit.quality.judge import degenerate_scores, degenerate_sentence


def _records(elements: list[str], dim: str = "topic") -> list[dict]:
    return [{"id": str(i), "messages": [], "meta": {dim: e}} for i, e in enumerate(elements)]


def test_a_small_sample_that_covers_what_the_larger_one_cut_to_its_n_covers_is_a_tie():
    targets = {"topic": {str(k): 1 / 20 for k in range(20)}}
    large = coverage(_records([str(k % 20) for k in range(200)]), targets)
    small = coverage(_records([str(k % 20) for k in range(10)]), targets)  # 10 draws: at most 10 of 20 topics
    d = compare.equal_n_coverage(small, large, draws=200)["topic"]
    assert d["point"] == "generated" and d["resampled"] == "reference" and d["n"] == 10
    lo, hi = d["covered_range"]
    assert lo <= d["covered"] <= hi <= 10
    assert compare.noise_note(d, "covered").endswith(": tie")
    # one topic drawn ten times is far outside what ten draws of a balanced file give
    narrow = compare.equal_n_coverage(coverage(_records(["0"] * 10), targets), large, draws=200)["topic"]
    assert narrow["covered"] == 1 and compare.noise_note(narrow, "covered").endswith("fewer elements")
    assert compare.noise_note(narrow, "tv").endswith("further from target")


def test_the_larger_side_is_the_one_resampled():
    targets = {"topic": {"a": 0.5, "b": 0.5}}
    d = compare.equal_n_coverage(coverage(_records(["a", "b"] * 50), targets), coverage(_records(["a", "b"] * 3), targets),
                                 draws=50)["topic"]
    assert d["point"] == "reference" and d["resampled"] == "generated" and d["n"] == 6


def test_covered_elements_are_numbers():
    cov = coverage(_records(["a", "a", "b"]), {"topic": {"a": 0.4, "b": 0.3, "c": 0.3}})
    value, n = quality.covered_elements(cov, "topic")
    assert value == {"covered": 2, "of": 3} and n == 3 and quality.covered_text(value) == "2 of 3"
    assert quality.covered_elements(None, "topic") == (None, 0) and quality.covered_text(None) == "-"


def test_text_the_kit_wrote_is_counted_apart_from_the_models():
    record = {"messages": [{"role": "user", "content": "hello there"},
                           {"role": "assistant", "content": "I am nanochat. And I like tea."}],
              "meta": {"recipe": "distill", "user_turns": "composed", "opener": "planned",
                       "turns": [{"opener": "I am nanochat."}]}}
    sources = compare.text_sources([record])
    assert sources == {"user": {"kit": 2, "writer": 0}, "assistant": {"kit": 3, "writer": 4}}
    label = compare.measured_text(sources)
    assert label("first-message duplicate rate") == "planned: user text written by the kit"
    assert label("characters per assistant message (mean)") == "the model's: assistant text, 4 of 7 words the model's"
    assert label("near-duplicate rate") == "mostly planned: whole conversation, 4 of 9 words the model's"
    assert label("requested topic: elements covered") == "meta: what was asked"
    written = {"messages": record["messages"], "meta": {}}  # hand-written: every word the writer's
    assert compare.text_sources([written])["user"] == {"kit": 0, "writer": 2}
    assert "templates more than the model" in compare.sources_sentence(sources)


def test_a_rate_from_fewer_than_100_gets_a_whisker_in_the_chart_rows():
    rows = [{"figure": "rejected by generation (n = asked)", "generated": 9 / 52, "n_generated": 52,
             "reference": 0.0, "n_reference": 132, "pct": True}]
    out = compare.findings_only(rows, _records(["a"]))
    assert "band_generated" in out[0] and "band_reference" not in out[0]
    lo, hi = out[0]["band_generated"]
    assert lo < 9 / 52 < hi


def test_a_judge_that_copies_the_scale_is_named():
    form = {str(i): {"status": "judged", "on_topic": 1, "persona_followed": 2, "consistent": 3, "natural": 4, "overall": 5}
            for i in range(4)}
    d = degenerate_scores({**form, "x": {"status": "unjudged"}})
    assert d == {"n": 4, "in_order": 4, "constant": 0, "most_common": [1, 2, 3, 4, 5], "most_common_n": 4}
    assert "fills in the form" in degenerate_sentence(d)
    read = {"a": {"status": "judged", "on_topic": 4, "persona_followed": 3, "consistent": 5, "natural": 4, "overall": 4},
            "b": {"status": "judged", "on_topic": 2, "persona_followed": 2, "consistent": 3, "natural": 3, "overall": 2},
            "c": {"status": "judged", "on_topic": 3, "persona_followed": 3, "consistent": 3, "natural": 3, "overall": 3}}
    d = degenerate_scores(read)
    assert d["constant"] == 1 and d["in_order"] == 0 and "fills in the form" not in degenerate_sentence(d)
    assert degenerate_sentence(degenerate_scores({})) == "No judgement to look at."
