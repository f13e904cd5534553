"""Prose that cannot drift: the committed notebooks' sentences checked against their own outputs.

nbval re-runs a notebook and compares some outputs, but it never reads a sentence. A notebook that says
"the MinHash estimate follows the exact Jaccard within a few hundredths" or "the judge does not tell good
from bad" beside a table that shows otherwise passes nbval. Each claim here reads the *committed* outputs
of one notebook and fails when a stated comparison (greater, smaller, within, never falls, passed) is
false for the figures printed beside it.

Hooks for every notebook: write `@claim("NN_name")` above a function taking the notebook (nbformat)
and asserting what its prose says; `cell(nb, ...)` finds a cell by tag or by the start of its source
and `output(cell)` gives its printed text. Claims are listed per notebook in CLAIMS.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Callable

import nbformat
import pytest

from kit.paths import project_root

NOTEBOOKS = project_root() / "notebooks"
CLAIMS: dict[str, list[Callable]] = defaultdict(list)


def claim(notebook: str):
    def register(check: Callable) -> Callable:
        CLAIMS[notebook].append(check)
        return check
    return register


def cell(nb, *, tag: str | None = None, starts: str | None = None):
    """The one cell with this tag, or whose source starts with `starts`."""
    found = [c for c in nb.cells if (tag and tag in c.metadata.get("tags", [])) or (starts and c.source.startswith(starts))]
    assert len(found) == 1, f"expected one cell with tag={tag!r} starts={starts!r}, found {len(found)}"
    return found[0]


def output(c) -> str:
    """Everything a code cell printed or displayed as text."""
    parts = []
    for o in c.get("outputs", []):
        if o.get("output_type") == "stream":
            parts.append(o.get("text", ""))
        elif "data" in o:
            parts.append(o["data"].get("text/plain", ""))
    return "".join(parts)


def table_rows(text: str) -> list[list[str]]:
    """The rows of a DataFrame's text/plain output, split on runs of spaces (the index first)."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()[1:] if line.strip()]


# ---------------------------------------------------------------- 03_data_quality

_CALIBRATION = re.compile(
    r"The judge \((?P<model>[^)]*)\) called (?P<good_ok>\d+) of (?P<good>\d+) good conversations good and "
    r"(?P<bad_ok>\d+) of (?P<bad>\d+) bad ones bad \((?P<unjudged>\d+) unjudged\): balanced agreement "
    r"(?P<balanced>[\d.]+) against the (?P<threshold>[\d.]+) required, so (?P<meaning>[^\n]*)")


def _calibration(nb) -> dict | None:
    m = _CALIBRATION.search(output(cell(nb, tag="judge-calibration")))
    if m is None:
        return None
    d = {k: float(v) if k not in ("model", "meaning") else v for k, v in m.groupdict().items()}
    d["trusted"] = d["balanced"] >= d["threshold"]
    return d


@claim("03_data_quality")
def judge_calibration_sentence_matches_its_counts(nb):
    c = _calibration(nb)
    assert c is not None, "notebook 03 prints no calibration sentence"
    assert c["balanced"] == pytest.approx((c["good_ok"] / c["good"] + c["bad_ok"] / c["bad"]) / 2, abs=0.005)
    assert c["meaning"].startswith("its scores separate" if c["trusted"] else "its scores do not tell")
    # the table above the sentence: one row per labelled conversation, the verdicts it counts
    rows = [r for r in table_rows(output(cell(nb, tag="judge-calibration"))) if len(r) > 3 and r[2] in ("good", "bad")]
    assert len(rows) == c["good"] + c["bad"]
    assert sum(r[2] == "good" and r[3] == "good" for r in rows) == c["good_ok"]
    assert sum(r[2] == "bad" and r[3] == "bad" for r in rows) == c["bad_ok"]


@claim("03_data_quality")
def an_unchecked_or_failed_judge_is_not_presented_as_findings(nb):
    c = _calibration(nb)
    sample = output(cell(nb, starts="scores = {}\nif judge_limit and records:"))
    realized = output(cell(nb, tag="realized-coverage"))
    if c is not None and c["trusted"]:
        assert "these scores are findings" in sample and "not reported" not in realized
    else:
        assert "not findings" in sample
        assert "realized coverage not reported" in realized and "hold their element" not in realized


@claim("03_data_quality")
def the_sampling_plan_is_balanced(nb):
    # "It shows the sampling itself is balanced": every dimension of the plan within 0.1 total variation
    rows = table_rows(output(cell(nb, starts="# NBVAL_CHECK_OUTPUT\nplan = ")))
    assert rows and all(float(r[3]) <= 0.1 and r[4] == "0" for r in rows)


@claim("03_data_quality")
def minhash_follows_the_exact_jaccard_within_a_few_hundredths(nb):
    rows = table_rows(output(cell(nb, starts="# NBVAL_CHECK_OUTPUT\nimport random")))
    exact = [float(r[2]) for r in rows]
    estimate = [float(r[3]) for r in rows]
    assert exact == sorted(exact, reverse=True), "the exact Jaccard falls as words are replaced"
    assert all(abs(a - b) <= 0.06 for a, b in zip(exact, estimate))


@claim("03_data_quality")
def removable_never_falls_as_the_threshold_drops(nb):
    rows = table_rows(output(cell(nb, starts="# NBVAL_CHECK_OUTPUT\nfixture = ")))
    by_threshold = {float(r[1]): int(r[2]) for r in rows}
    ordered = [by_threshold[t] for t in sorted(by_threshold)]
    assert ordered == sorted(ordered, reverse=True)
    assert by_threshold[1.0] == 0 and by_threshold[0.9] < by_threshold[0.8]


@claim("03_data_quality")
def stricter_rules_fail_more_generated_and_leave_the_reference(nb):
    text = output(cell(nb, starts="from dataclasses import replace"))
    found = dict((side, (int(k), int(n))) for side, k, n in
                 re.findall(r"(generated|reference): (\d+) of (\d+) conversations have a reply under 8 words", text))
    default = output(cell(nb, starts="def rule_rows(counts):"))
    too_short = next(r for r in table_rows(default) if r[0] == "too_short")
    assert found["generated"][0] >= int(too_short[2].split(" of ")[0]), "stricter rules fail at least as many"
    assert found["reference"][0] <= 0.02 * found["reference"][1], "the reference stays at or near zero"


# ---------------------------------------------------------------- 02_bulk_generation

_PER_KEPT = re.compile(r"(?P<kept>\d+) conversations kept of (?P<asked>\d+) asked; (?P<requests>\d+) requests in "
                       r"(?P<seconds>\d+) s: (?P<rk>[\d.]+) requests and (?P<sk>[\d.]+) s per kept conversation")


@claim("02_bulk_generation")
def cost_per_kept_conversation_is_the_run_divided_by_what_it_kept(nb):
    c = cell(nb, starts="entries = journal_entries(output)")
    m = _PER_KEPT.search(output(c))
    if m is None:  # a run served wholly from the reply cache says so instead
        assert "every reply came from the reply cache" in output(c)
        return
    kept, requests, seconds = int(m["kept"]), int(m["requests"]), int(m["seconds"])
    assert float(m["rk"]) == pytest.approx(requests / kept, abs=0.05)
    assert float(m["sk"]) == pytest.approx(seconds / kept, abs=0.05 + 0.5 / kept)
    written = re.search(r"(\d+) records in ", output(cell(nb, starts="records = read_records(output).records")))
    assert written and int(written[1]) == kept, "the kept count is the number of records written"


# ---------------------------------------------------------------- 04_tokens_and_masks

@claim("04_tokens_and_masks")
def the_lowest_and_highest_supervised_sources_are_the_tables(nb):
    c = cell(nb, starts="by_source = {name:")
    m = re.search(r"lowest (\S+) \(([\d.]+)%\), highest (\S+) \(([\d.]+)%\)", output(c))
    assert m, "notebook 04 prints no lowest/highest sentence"
    table = output(cell(nb, starts="identity = conversations_path if"))
    shares = {}
    for row in table_rows(table):  # source, conversations, tokens, supervised, supervised_fraction
        if len(row) == 5 and row[2].isdigit() and int(row[2]):
            shares[row[0]] = float(row[4])
    assert shares, "notebook 04 shows no supervised fraction per source"
    assert min(shares, key=shares.get) == m[1] and max(shares, key=shares.get) == m[3]


# ---------------------------------------------------------------- 07_identity_finetune

_VERDICT = re.compile(r"generated data: (?P<gen>[\d.]+), teacher (?P<teacher>[\d.]+), base (?P<base>[\d.]+) "
                      r"\((?P<ratio>[\d.]+|inf)x the base; target: [^:]*: (?P<met>met|not met)\)")


@claim("07_identity_finetune")
def the_generated_row_verdict_follows_from_its_scores(nb):
    text = output(cell(nb, starts='score_change = f"{before.score:.2f}'))
    m = _VERDICT.search(text)
    assert m, "notebook 07 prints no verdict for the generated row"
    gen, teacher, base = float(m["gen"]), float(m["teacher"]), float(m["base"])
    met = gen >= teacher and (base == 0 or gen / base >= 3)
    assert (m["met"] == "met") == met, f"says {m['met']!r} for generated {gen}, teacher {teacher}, base {base}"
    rows: dict[str, list[str]] = {}
    for r in table_rows(output(cell(nb, starts="def experiment(name, data_file, mix):"))):
        rows.setdefault(r[0], r[1:])  # a wide table is printed in blocks: the first holds the score
    assert float(rows["generated + general mix"][0]) == pytest.approx(gen, abs=0.006)
    assert float(rows["teacher (base model told the facts)"][0]) == pytest.approx(teacher, abs=0.006)


# ---------------------------------------------------------------- the runner

@pytest.mark.parametrize("notebook,check", [(nb, check) for nb, checks in CLAIMS.items() for check in checks],
                         ids=lambda v: v if isinstance(v, str) else v.__name__)
def test_stated_comparisons_hold_in_the_committed_outputs(notebook, check):
    check(nbformat.read(NOTEBOOKS / f"{notebook}.ipynb", as_version=4))


def test_a_sentence_that_contradicts_its_figures_fails():
    nb = nbformat.read(NOTEBOOKS / "03_data_quality.ipynb", as_version=4)
    calibration = cell(nb, tag="judge-calibration")
    for o in calibration.outputs:
        if o.get("output_type") == "stream" and "balanced agreement" in o["text"]:
            o["text"] = re.sub(r"balanced agreement [\d.]+", "balanced agreement 0.90", o["text"])
    with pytest.raises(AssertionError):
        judge_calibration_sentence_matches_its_counts(nb)
