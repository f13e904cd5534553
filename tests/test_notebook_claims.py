"""Prose that cannot drift: the committed notebooks' sentences checked against their own outputs.

nbval re-runs a notebook and compares some outputs, but it never reads a sentence. A notebook that says
"the MinHash estimate follows the exact Jaccard within a few hundredths" or "the judge does not tell good
from bad" beside a table that shows otherwise passes nbval. Each claim here reads the *committed* outputs
of one notebook and fails when a stated comparison (greater, smaller, within, never falls, passed) is
false for the figures printed beside it.

Hooks for every notebook: write `@claim("NN_name")` above a function taking the notebook (nbformat)
and asserting what its prose says; `cell(nb, ...)` finds a cell by tag or by the start of its source
and `output(cell)` gives its printed text. Claims are listed per notebook in CLAIMS.

A sentence that states a result is either checked here against the outputs beside it or printed by the
notebook from the run's values (a Markdown cell made in code). A computed cell is checked twice: its source
must build the sentence from values (`computed`), and once executed, what it printed must agree with the
figures it summarises. A cell without outputs (edited since the notebooks were last executed) is checked on
its source only, until `make notebooks` refreshes it.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable

import nbformat
import pytest

from kit.paths import project_root

# KIT_CLAIMS_NOTEBOOKS=DIR checks the notebooks (and README.md) in DIR instead, e.g. an earlier commit's
# copies: `git show HEAD~3:notebooks/03_data_quality.ipynb > DIR/03_data_quality.ipynb`.
NOTEBOOKS = Path(os.environ.get("KIT_CLAIMS_NOTEBOOKS") or project_root() / "notebooks")
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
            parts.append(o["data"].get("text/markdown") or o["data"].get("text/plain", ""))
    return "".join(parts)


def markdown(nb) -> list[str]:
    """The markdown cells' text, each run of whitespace one space (a sentence may wrap anywhere)."""
    return [" ".join(c.source.split()) for c in nb.cells if c.cell_type == "markdown"]


def parameters(nb) -> dict:
    """The notebook's parameters cell, evaluated (plain assignments of literals)."""
    values: dict = {}
    exec(cell(nb, tag="parameters").source, {}, values)
    return values


def row_cells(text: str, label: str) -> list[str]:
    """The cells of the DataFrame row whose index starts with `label`, across the blocks pandas wraps a
    wide table into (index cells have single spaces; cells are parted by two or more)."""
    cells: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith(label):
            rest = re.split(r"\s{2,}", line.strip(), maxsplit=1)
            cells += [c for c in re.split(r"\s{2,}", rest[1].strip()) if c != "\\"] if len(rest) > 1 else []
    assert cells, f"no row {label!r} in the table"
    return cells


def computed(c, *needles: str) -> str | None:
    """A cell that prints a result from the run's values: its source must hold every needle (what it is
    computed from); its printed text, or None while the cell has not been executed since it was edited."""
    for needle in needles:
        assert needle in c.source, f"the cell does not compute its sentence from {needle!r}: {c.source[:80]!r}"
    return output(c) if c.get("outputs") else None


def table_rows(text: str) -> list[list[str]]:
    """The rows of a DataFrame's text/plain output, split on runs of spaces (the index first)."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()[1:] if line.strip()]


# ---------------------------------------------------------------- 03_data_quality

_CALIBRATION = re.compile(
    r"The judge \((?P<model>[^)]*)\) called (?P<good_ok>\d+) of (?P<good>\d+) good conversations good and "
    r"(?P<bad_ok>\d+) of (?P<bad>\d+) bad ones bad \((?P<unjudged>\d+) unjudged\): balanced agreement "
    r"(?P<balanced>[\d.]+) against the (?P<threshold>[\d.]+) required(?: \((?P<met>met|not met)\))?, so (?P<meaning>[^\n]*)")


def _calibration(nb) -> dict | None:
    m = _CALIBRATION.search(output(cell(nb, tag="judge-calibration")))
    if m is None:
        return None
    d = {k: float(v) if k not in ("model", "meaning", "met") else v for k, v in m.groupdict().items()}
    d["trusted"] = d["balanced"] >= d["threshold"]
    assert d["met"] in (None, "met" if d["trusted"] else "not met"), "the threshold's verdict follows from the values"
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
    rows = table_rows(output(cell(nb, starts="# NBVAL_CHECK_OUTPUT\nplan_recipe = ")))
    assert rows and all(float(r[3]) <= 0.1 and r[4] == "0" for r in rows)
    # distill draws a persona it never puts into a request: the plan says so instead of counting it as balance
    if "recipe distill" in output(cell(nb, starts='print("\\n".join(report["coverage"]["notes"]))')):
        assert [r[5] for r in rows if r[1] == "persona"] == ["no"], rows


def _minhash_table(nb) -> list[tuple[float, float]]:
    rows = table_rows(output(cell(nb, starts="# NBVAL_CHECK_OUTPUT\nimport random")))
    return [(float(r[2]), float(r[3])) for r in rows]


@claim("03_data_quality")
def what_is_said_about_minhash_is_what_the_table_shows(nb):
    table = _minhash_table(nb)
    exact = [e for e, _ in table]
    assert exact == sorted(exact, reverse=True), "the exact Jaccard falls as words are replaced"
    gap = max(abs(e - m) for e, m in table)
    said = "\n".join(markdown(nb))
    if "within a few hundredths" in said:  # what the notebook once said beside gaps of 0.05
        assert gap <= 0.03, f"'within a few hundredths', but the estimate is off by {gap:.3f}"
    if re.search(r"estimate (?:is )?always (?:lower|below)", said):
        assert all(m < e for e, m in table if e < 1)
    text = computed(cell(nb, starts="display(Markdown(compare.minhash_sentence(rows, num_perm)))"), "minhash_sentence(rows")
    if text is not None:
        m = re.search(r"largest gap is \*\*([\d.]+)\*\*", text)
        assert m and float(m[1]) == pytest.approx(gap, abs=0.0015), "the printed gap is the table's"
        lower = re.search(r"below the exact value in (\d+) of (\d+) rows", text)
        assert lower and int(lower[1]) == sum(m < e for e, m in table) and int(lower[2]) == len(table)


def _planted_copies() -> tuple[int, list[dict]]:
    from kit.records import read_records

    fixture = read_records(project_root() / "tests" / "fixtures" / "quality_near_dups.jsonl").records
    groups = Counter(r["id"].rsplit("-", 1)[0] for r in fixture if not r["id"].startswith("other-"))
    return sum(n - 1 for n in groups.values()), fixture


@claim("03_data_quality")
def the_dedup_try_it_says_what_the_thresholds_do(nb):
    rows = table_rows(output(cell(nb, starts="# NBVAL_CHECK_OUTPUT\nfixture = ")))
    by_threshold = {float(r[1]): int(r[2]) for r in rows}
    ordered = [by_threshold[t] for t in sorted(by_threshold)]
    assert ordered == sorted(ordered, reverse=True), "the removable count never falls as the threshold drops"
    planted, _ = _planted_copies()
    assert by_threshold[1.0] == 0 and by_threshold[0.9] < by_threshold[0.8] == planted
    try_it = next(m for m in markdown(nb) if "Try it: the dedup threshold" in m)
    if "more pairs count as duplicates" in try_it:  # said once while 0.3 to 0.8 all removed the same
        below = [by_threshold[t] for t in sorted(by_threshold) if t <= 0.8]
        assert len(set(below)) == len(below), f"'more pairs count as duplicates', but removable is {below}"
    for number in re.findall(r"every planted copy \((\d+)\)|stays at (\d+)", try_it):
        assert int(next(filter(None, number))) == planted
    assert all(by_threshold[t] == planted for t in by_threshold if t <= 0.8) or "stays at" not in try_it


def test_the_dedup_try_it_holds_when_run():
    """The try-it's expectation, run once on the fixture: 0.8 finds every planted copy, lower finds no more."""
    from kit.quality.neardup import near_duplicates

    planted, fixture = _planted_copies()
    removable = {t: near_duplicates(fixture, threshold=t, num_perm=128).removable for t in (0.3, 0.5, 0.8, 0.9, 1.0)}
    assert removable[0.3] == removable[0.5] == removable[0.8] == planted
    assert 0 < removable[0.9] < planted and removable[1.0] == 0


@claim("03_data_quality")
def the_min_words_try_it_says_what_its_table_shows(nb):
    try_it = next(m for m in markdown(nb) if "Try it: stricter content rules" in m)
    default = output(cell(nb, starts="def rule_rows(counts):"))
    short_now = next((r for r in table_rows(default) if r and r[0] == "too_short"), None)
    if "more of the generated conversations fail" in try_it:  # said once beside "0 of 44"
        text = output(cell(nb, starts="from dataclasses import replace"))
        found = re.search(r"generated: (\d+) of (\d+) conversations have a reply under 8 words", text)
        assert found and short_now and int(found[1]) > int(short_now[2].split(" of ")[0]), \
            "'more of the generated conversations fail', but the count did not grow"
    c = cell(nb, starts="from dataclasses import replace")
    text = computed(c, "sweep_sentence(", "min_words=w")
    if text is not None:
        assert "FALLS" not in text, "a stricter rule passed what a looser one failed"
        assert re.search(r"reference: 0 of \d+ at 3 words", text)


def test_the_min_words_try_it_holds_on_the_reference():
    """Run once: the reference has no reply under 8 words, and the count never falls as min_words rises."""
    from dataclasses import replace

    from kit.quality.report import content_rule_counts
    from kit.records import read_records
    from kit.rules import load_rules

    reference = read_records(project_root() / "knowledge" / "reference" / "identity.jsonl").records
    rules = load_rules()
    counts = [content_rule_counts(reference, replace(rules, min_words=w))["rules"]["too_short"]["records"]
              for w in (3, 8, 15, 25)]
    assert counts[:2] == [0, 0] and counts == sorted(counts)


@claim("03_data_quality")
def no_sentence_says_accepted_data_is_free_of_errors_unless_the_table_does(nb):
    section = next(m for m in markdown(nb) if m.startswith("## 2. Content rules"))
    table = table_rows(output(cell(nb, starts="def rule_rows(counts):")))
    errors_found = max((int(r[2].split(" of ")[0]) for r in table if len(r) > 2 and r[1] == "error"), default=0)
    if re.search(r"holds? no error-severity finding", section):
        assert errors_found == 0, f"'no error-severity finding', but the table shows {errors_found} with one"
    text = computed(cell(nb, starts="display(Markdown(compare.accepted_errors_sentence("), "accepted_errors_sentence(records")
    if text is not None:
        m = re.search(r"\*\*(\d+) of (\d+)\*\* accepted generated conversations", text)
        assert m and int(m[1]) >= errors_found, "the sentence counts at least the table's error findings"


@claim("03_data_quality")
def planned_figures_and_unused_dimensions_are_not_compared_as_findings(nb):
    recipe = re.search(r"targets from recipe (\w+)", output(cell(nb, starts='print("\\n".join(report["coverage"]["notes"]))')) or "")
    c = cell(nb, starts="rows = quality.comparison(report, ref_report)")
    text = computed(c, "compare.comparison_frame(")
    if text is None:
        return
    says = row_cells(text, "conversations where the assistant says")
    persona = row_cells(text, "requested persona")
    if recipe and recipe[1] == "distill":
        assert says[0] == "planned" and persona[0] == "unused", (says, persona)
    distinct = row_cells(text, "distinct-2")  # generated, n (gen.), reference, n (ref.), note
    assert distinct[1] == distinct[3], f"distinct-2 compared on samples of different sizes: {distinct}"


@claim("03_data_quality")
def every_share_in_the_comparison_shows_its_count(nb):
    text = computed(cell(nb, starts="rows = quality.comparison(report, ref_report)"), "compare.comparison_frame(")
    if text is not None:
        rejected = row_cells(text, "rejected by generation")
        assert re.fullmatch(r"\d+ of (\d+) \(\d+%(, 95% CI \d+-\d+%)?\)", rejected[0]), rejected
        share = row_cells(text, "conversations with a content-rule finding")
        assert re.fullmatch(r"\d+ of (\d+) \(\d+%(, 95% CI \d+-\d+%)?\)", share[0]), share
        n = int(share[0].split(" of ")[1].split()[0])
        assert (n < 100) == ("95% CI" in share[0]), "an interval exactly where n < 100"



_EQUAL_N = re.compile(r"(\w+) cut to n=(\d+): (?:TV )?([\d.]+)-([\d.]+)(?: of \d+)? \(95%\): (tie|more elements|fewer elements|"
                      r"further from target|closer to target)")


@claim("03_data_quality")
def a_coverage_difference_inside_the_equal_n_range_is_called_a_tie(nb):
    text = output(cell(nb, starts='print("\\n".join(report["coverage"]["notes"]))'))
    for line in text.splitlines()[1:]:
        cells = re.split(r"\s{2,}", line.strip())
        point = re.match(r"(\d+) of \d+, TV ([\d.]+)", cells[1]) if len(cells) > 1 else None
        for found in _EQUAL_N.finditer(line):
            if point is None:
                continue
            value = float(point[2]) if "TV" in found[0] else int(point[1])
            lo, hi = float(found[3]), float(found[4])
            inside = lo - 0.005 <= value <= hi + 0.005 if "TV" in found[0] else lo <= value <= hi
            assert (found[5] == "tie") == inside, f"{cells[0]}: {value} against {lo}-{hi} says {found[5]}"
    recipe = re.search(r"targets from recipe (\w+)", text)
    if recipe and recipe[1] == "distill":
        assert re.search(r"persona\s+unused by the recipe", text), "persona is not a coverage finding for distill"
        assert "never puts it into a request" in output(cell(nb, starts='pair = "dynamic" if "persona" in unused')), \
            "the plan heatmap does not pair with a dimension distill never asks for"


@claim("03_data_quality")
def figures_of_text_the_kit_wrote_are_marked_planned(nb):
    text = computed(cell(nb, starts="sources = compare.text_sources(records)"), "sources_sentence(sources)")
    if text is None:
        return
    m = re.search(r"\*\*(\d+) words\*\*, the kit's templates wrote \*\*(\d+) of \d+ \(\d+%\)\*\*: (\d+) of (\d+) user words "
                  r"\(composed turns\) and (\d+) of (\d+) assistant words \(planned openings\)\. The model wrote \*\*(\d+)\*\*", text)
    assert m, text
    total, kit, user_kit, user, assistant_kit, assistant, model = map(int, m.groups())
    assert kit == user_kit + assistant_kit and total == user + assistant == kit + model
    table = output(cell(nb, starts="rows = quality.comparison(report, ref_report)"))
    measured = row_cells(table, "characters per assistant message")[-1] if "text measured" in table else ""
    if assistant_kit > assistant - assistant_kit:
        assert "measures the templates more than the model" in text
        assert "planned" in " ".join(row_cells(table, "characters per assistant message")), measured


@claim("03_data_quality")
def a_judge_that_fills_in_the_form_is_named(nb):
    text = output(cell(nb, starts="if scores:\n    from kit.quality.judge import degenerate_scores"))
    m = re.search(r"Of \*\*(\d+) judgements\*\*, \*\*(\d+)\*\* are the scale in order .* \*\*(\d+)\*\* give every criterion "
                  r"one score, and \*\*(\d+) of \d+\*\* are the same row", text)
    if m is None:
        assert "no judgements" in text
        return
    n, in_order, constant, same = map(int, m.groups())
    assert ("fills in the form" in text) == ((in_order + constant) * 2 > n or same == n > 1), text
    scores = table_rows(output(cell(nb, starts="scores = {}\nif judge_limit and records:")))
    rows = [tuple(r[2:7]) for r in scores if len(r) >= 7 and r[1] == "judged"]
    if rows and all(r == ("1", "2", "3", "4", "5") for r in rows):
        assert in_order >= len(rows), "the sample's 1-2-3-4-5 rows are counted"


# ---------------------------------------------------------------- 02_bulk_generation

_PER_KEPT = re.compile(r"(?P<kept>\d+) conversations kept of (?P<asked>\d+) asked; (?P<requests>\d+) requests in "
                       r"(?P<seconds>\d+) s: (?P<rk>[\d.]+) requests and (?P<sk>[\d.]+) s per kept conversation")


@claim("02_bulk_generation")
def cost_per_kept_conversation_is_the_run_divided_by_what_it_kept(nb):
    c = cell(nb, starts="entries = journal_entries(output)")
    text = computed(c, "figures.cost_per_kept(len(records)")
    if text is None:
        return
    m = _PER_KEPT.search(text)
    if m is None:  # a run served wholly from the reply cache says so instead
        assert "every reply came from the reply cache" in text or "kept nothing" in text
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
    if not text:  # edited since the last execution: the reference-target claim checks its source
        return
    m = _VERDICT.search(text)
    assert m, "notebook 07 prints no verdict for the generated row"
    gen, teacher, base = float(m["gen"]), float(m["teacher"]), float(m["base"])
    met = gen >= teacher and (base == 0 or gen / base >= 3)
    assert (m["met"] == "met") == met, f"says {m['met']!r} for generated {gen}, teacher {teacher}, base {base}"
    rows: dict[str, list[str]] = {}
    for r in table_rows(output(cell(nb, starts="def experiment(name, records):"))):
        rows.setdefault(r[0], r[1:])  # a wide table is printed in blocks: the first holds the score
    assert float(rows["generated student"][0]) == pytest.approx(gen, abs=0.006)
    assert float(rows["teacher (base model told the facts)"][0]) == pytest.approx(teacher, abs=0.006)


# ---------------------------------------------------------------- 01_prompt_design

@claim("01_prompt_design")
def a_rule_that_rejects_is_shown_as_an_error_for_its_recipe(nb):
    """The rule table once showed cut_off as a warning ("the item is kept") beside "still rejected (cut_off)"."""
    recipe = parameters(nb)["recipe"]
    still = re.findall(r"item \d+: still rejected \(([^)]*)\)", output(cell(nb, starts="from dataclasses import replace")))
    table = next(c for c in nb.cells if c.cell_type == "code" and "for rule in CONTENT_RULES]" in c.source)
    text = computed(table, "rules.severity_of(rule, r)")
    if text is None:
        return
    rows = {r[0]: r[1:] for r in table_rows(text)}
    assert recipe in rows, f"the rule table shows no severity for recipe {recipe}, only {sorted(rows)}"
    header = re.split(r"\s{2,}", text.splitlines()[0].strip())  # rule, markup, too_short, ... (transposed)
    for named in still:
        for rule in named.split(", "):
            if rule in header:
                column = header.index(rule)
                assert rows[recipe][column - 1] == "error", f"{rule} rejected an item but shows as {rows[recipe]}"


def _said_ungrounded(text: str) -> list[str]:
    """The names the grounding check called ungrounded; the truth check's "K-precision 0.50 < 0.9: not in the
    knowledge base or the question: big" names words (compared by their first letters), not names, and is skipped."""
    names = []
    for m in re.finditer(r"not in the knowledge base or the question: ([^|;\n]+)", text):
        if re.search(r"precision [\d.]+ < [\d.]+: $", text[max(0, m.start() - 40):m.start()]):
            continue
        names += [n.strip(" .") for n in m[1].split(",") if n.strip(" .") and not n.strip().endswith("...")]
    return names


@claim("01_prompt_design")
def a_name_called_ungrounded_is_not_in_the_knowledge_base(nb):
    """'not in the knowledge base or the question: GPT-2' beside a knowledge base saying 'GPT-2-level'."""
    from kit.truth import ungrounded
    from kit.generation.prompts import load_knowledge

    knowledge = load_knowledge()
    text = output(cell(nb, starts="print(knowledge_system_prompt()"))
    for name in _said_ungrounded(text):
        assert ungrounded(f"Then {name} is it.", "", knowledge), f"{name!r} is in the knowledge base"


@claim("01_prompt_design")
def v2_spreads_openers_over_styles_and_v1_has_none(nb):
    text = output(cell(nb, starts="from collections import Counter"))
    shown = dict((r, (int(k), int(n))) for r, k, n in re.findall(r"(v\d): (\d+) of (\d+) openers shown", text))
    assert all(k >= 0.9 * n for k, n in shown.values()), "both reach almost all of their openers"
    assert "styles {'flat'" in text
    top = [int(x) for x in re.findall(r"'\w+': (\d+)", text.split("v2:")[1])]
    assert len(top) == 8, "every style's count is printed, so 'evenly' can be checked"
    assert max(top) <= 1.15 * 500 * 3 / 8 and min(top) >= 0.85 * 500 * 3 / 8, "v2 spreads its openers evenly over the 8 styles"


@claim("01_prompt_design")
def every_bad_example_is_caught(nb):
    from kit.records import read_records

    text = output(cell(nb, starts="# NBVAL_CHECK_OUTPUT\nrecipes = "))
    if not text:
        return
    fixtures = project_root() / "tests" / "fixtures"
    ids = [r["id"] for r in read_records(fixtures / "bad_examples.jsonl").records]
    ids += [r["id"] for r in read_records(fixtures / "generator_output.jsonl").records if r["meta"]["label"] == "junk"]
    assert all(i in text for i in ids), "every bad example has a verdict row"
    reference = re.search(r"(\d+) of (\d+) reference conversations pass every rule", text)
    assert reference, "the count of reference conversations that pass is printed"
    said = re.search(r"(\d+) of (\d+) bad examples rejected by the defaults; kept: (.*)", text)
    assert said and int(said[2]) == len(ids), text
    kept = [] if said[3].strip() == "none" else said[3].strip().split(", ")
    assert int(said[1]) + len(kept) == len(ids) and set(kept) <= set(ids)
    prose = next(t for t in markdown(nb) if t.startswith("## The content rules"))
    assert "fail the bad examples" not in prose or not kept, f"the prose says every bad example fails; kept: {kept}"
    if "pass every reference conversation" in prose:
        assert reference[1] == reference[2], "the prose says every reference conversation passes"


def test_the_markup_try_it_holds_when_run():
    """01's try-it, run once: the reference conversation with a bold label in front of its first answer is
    rejected with markup as its only error, and kept with markup counted as a warning once markup is one."""
    from dataclasses import replace

    from kit.records import read_records
    from kit.rules import errors, load_rules, validate_messages

    rules = load_rules()
    lenient = replace(rules, severity={**rules.severity, "markup": "warning"})
    reference = read_records(project_root() / "knowledge" / "reference" / "identity.jsonl").records
    example = next(r for r in reference if r["meta"].get("dynamic", "").startswith("deep"))
    assert not validate_messages(example["messages"], rules=rules, meta=example["meta"])
    marked = [dict(m) for m in example["messages"]]
    marked[1]["content"] = f"<b>Short answer:</b> {marked[1]['content']}"
    strict = validate_messages(marked, rules=rules, meta=example["meta"])
    assert {p.rule for p in errors(strict)} == {"markup"}
    relaxed = validate_messages(marked, rules=lenient, meta=example["meta"])
    assert not errors(relaxed) and {p.rule for p in relaxed} == {"markup"}


@claim("01_prompt_design")
def the_plan_heatmap_sentence_is_computed_and_its_verdict_follows(nb):
    """The heatmap's colour range once ran from the fewest to the most draws, so chance looked like gaps."""
    text = computed(cell(nb, starts="plan = [{"), "plots.pair_counts(plan", "plots.pairs_sentence(")
    if text is None:
        return
    m = re.search(r"(\d+) of (\d+) topic_category x persona pairs are drawn at least once in (\d+) items .*?; (\d+) fall "
                  r"outside (\d+)-(\d+), .*? where about (\d+) would: (.*)\.", text)
    assert m, text
    drawn, pairs, outside, by_chance = int(m[1]), int(m[2]), int(m[4]), int(m[7])
    if "the plan is balanced" in m[8]:
        assert drawn == pairs and outside <= 2 * by_chance + 2, "called balanced with pairs never drawn or far outside"


_KEPT = re.compile(r"(\w+) kept (\d+) of (\d+) \(\d+%, 95% CI (\d+)-(\d+)%\)")


@claim("01_prompt_design")
def the_recipe_comparison_shows_its_n_and_calls_overlapping_intervals_a_tie(nb):
    """'v2: 1 of 2 kept; distill: 2 of 2 kept' once stood as a comparison with no n or interval."""
    text = computed(cell(nb, starts="from kit.generation.plots import kept_sentence"), "kept_sentence(", "len(entries)",
                    "len(distilled)")
    if text is None:
        return
    found = {m[1]: (int(m[4]), int(m[5])) for m in _KEPT.finditer(text)}
    assert set(found) == {"v2", "distill"}, text
    (lo_a, hi_a), (lo_b, hi_b) = found.values()
    assert ("a tie" in text) == (lo_a <= hi_b and lo_b <= hi_a), text


@claim("01_prompt_design")
def the_warning_try_it_shows_markup_rejected_then_kept(nb):
    """The try-it once re-validated only items whose errors were not markup, so it showed nothing."""
    text = output(cell(nb, starts="from dataclasses import replace"))
    if not text:
        return
    assert re.search(r"with <b> tags, default rules: rejected \(errors: markup\); warnings: none", text), text
    assert re.search(r"with <b> tags, markup as a warning: kept; warnings: markup", text), text
    for rules in re.findall(r"item \d+: still rejected \(([^)]*)\)", text):
        assert set(rules.split(", ")) - {"markup"}, "an item whose only error was markup would be kept"


# ---------------------------------------------------------------- 02_bulk_generation (more)

@claim("02_bulk_generation")
def a_name_called_ungrounded_in_the_rejects_is_not_in_the_knowledge_base(nb):
    from kit.truth import ungrounded
    from kit.generation.prompts import load_knowledge

    knowledge = load_knowledge()
    for name in _said_ungrounded(output(cell(nb, starts='rejects = [json.loads(line)'))):
        assert ungrounded(f"Then {name} is it.", "", knowledge), f"{name!r} is in the knowledge base"


@claim("02_bulk_generation")
def the_resume_try_its_cost_nothing_and_rebuild_the_same_records(nb):
    kept = len(re.findall(r"^\d+\s+distill-|^\d+\s+v\d-", output(cell(nb, starts="records = read_records(output).records")), re.M))
    written = re.search(r"(\d+) records in ", output(cell(nb, starts="records = read_records(output).records")))
    again = re.search(r"second call: (\d+) requests, (\d+) of (\d+) already done, (\d+) records in the output \(([\d.]+) s\)",
                      output(cell(nb, starts="t0 = time.perf_counter()\nagain = generate(")))
    assert again and again[1] == "0" and again[2] == again[3], "expect 0 requests and every index already done"
    assert float(again[5]) < 1.0, "in well under a second"
    rebuilt = re.search(r"rebuilt (\d+) records from the journal with (\d+) requests: identical bytes",
                        output(cell(nb, starts="before = output.read_bytes()")))
    assert rebuilt and rebuilt[2] == "0" and written and rebuilt[1] == written[1] == again[4]
    assert kept in (0, int(written[1]))  # the table lists what was written (0: too long to show whole)


@claim("02_bulk_generation")
def the_terminal_command_is_the_notebooks_run(nb):
    params = parameters(nb)
    command = re.search(r"python -m kit generate --recipe (\w+) --num (\d+) --candidates (\d+)", markdown(nb)[0])
    assert command and (command[1], int(command[2]), int(command[3])) == (params["recipe"], params["num"], params["candidates"])


@claim("02_bulk_generation")
def every_index_is_in_the_output_or_the_rejects(nb):
    m = re.search(r"(\d+) accepted, (\d+) rejected .*?, (\d+) already done; (\d+) records in",
                  output(cell(nb, starts="summary = generate(num, output")))
    assert m, "notebook 02 prints no summary"
    assert int(m[1]) + int(m[2]) + int(m[3]) == parameters(nb)["num"] and int(m[4]) == int(m[1]) + int(m[3])


@claim("02_bulk_generation")
def most_kept_answers_are_the_planned_opening_alone_as_the_prose_says(nb):
    """"Most of what the 135M model adds fails that bar, so most kept answers are the planned opening alone"."""
    said = next(t for t in markdown(nb) if t.startswith("### Ten kept conversations"))
    text = computed(cell(nb, starts="from kit.figures import unanswered_opener"), "model_sentences") or ""
    m = re.search(r"Of all (\d+) kept answers: (\d+) are the planned opening alone", text)
    if "most kept answers are the planned opening alone" in said and text:
        assert m and 2 * int(m[2]) > int(m[1]), f"'most' said of {m and m[2]} of {m and m[1]}"
    recap = next(t for t in markdown(nb) if t.startswith("## Recap"))
    if "most often cut back to its planned opening" in recap and text:
        assert m and 2 * int(m[2]) > int(m[1]), f"the recap says 'most often' of {m and m[2]} of {m and m[1]}"


@claim("02_bulk_generation")
def the_funnel_counts_every_item_asked_and_its_check_table_matches_the_reject_reasons(nb):
    """The funnel once said "43 of 51" for 52 asked, and lost 0 candidates 'on topic' beside 7 rejects naming it."""
    c = cell(nb, starts="entries = journal_entries(output)")
    text = computed(c, "distill_funnel(entries, summary.asked)", "check_counts(entries)", "reasons_sentence(counts)")
    summary = output(cell(nb, starts="summary = generate(num, output"))
    if text is None or parameters(nb)["recipe"] != "distill":
        return
    reasons = {k.strip(): int(v) for k, v in re.findall(r"([a-z ]+): (\d+)", re.search(r"rejected \(([^)]*)\)", summary)[1])}
    table = {check: tuple(int(x) for x in row_cells(text.split("The reject table")[0], check)) for check in
             ("finished", "content rules", "grounded", "facts", "supported", "on topic")}
    assert all(len(v) == 3 for v in table.values()), table
    for check, (stopped, failed, items) in table.items():
        assert items == reasons.get(check, 0), f"{check}: the table and the summary count different rejects"
        assert stopped <= failed
        if failed > stopped:
            assert re.search(rf"{check} is named by {items} rejected items and failed by {failed} candidates, "
                             rf"{stopped} of them first", text), f"the difference at {check} is not explained"


@claim("02_bulk_generation")
def the_candidate_checks_are_counted_as_written_beside_after_the_cut(nb):
    """The funnel once defined supported as "every sentence the model wrote kept by the truth check" and showed
    196 of 237 candidates supported, while 2 of 79 answers kept the model's text whole: it counted after the cut."""
    prose = next(t for t in markdown(nb) if t.startswith("## Where every index went"))
    assert "every sentence the model wrote kept by the truth check" not in prose
    assert "as the model wrote them" in prose and "after the cut" in prose
    text = computed(cell(nb, starts="entries = journal_entries(output)"), "as_written_sentence(entries)")
    if text is None or parameters(nb)["recipe"] != "distill":
        return
    m = re.search(r"As the model wrote them, (\d+) of (\d+) .*?candidates passed every check with nothing cut", text)
    assert m, text
    sampled = re.search(r"^all\s+\d+\s+(\d+)", text, re.M)  # the funnel table's 'all' row: items, sampled
    assert sampled is None or int(sampled[1]) == int(m[2]), "the as-written count is over every candidate sampled"


@claim("02_bulk_generation")
def the_ten_conversations_say_what_the_truth_check_cannot_see(nb):
    """"The truth check keeps 10 of these 10 conversations whole" once stood as a finding; it holds by construction,
    and three of the ten left the user's opening question unanswered."""
    text = computed(cell(nb, starts="from kit.figures import unanswered_opener"), "keepable_share(shown)",
                    "unanswered_opener(r)")
    if text is None:
        return
    m = re.search(r"keeps (\d+) of these (\d+) conversations whole", text)
    assert m and (("by construction" in text) == (m[1] == m[2])), text
    listed = re.search(r"(\d+) of these (\d+) open with a question of their own", text)
    assert listed and int(listed[1]) == len(re.findall(r"^  \S+-\d+: ", text, re.M)), text


# ---------------------------------------------------------------- 04_tokens_and_masks (more)

def _packing(nb) -> dict[str, list[str]]:
    text = output(cell(nb, starts="display(pd.DataFrame(packing.compare_strategies("))
    found = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 7 and parts[1] in ("greedy_crop", "best_fit_crop", "best_fit_pad"):
            found[parts[1]] = parts[2:7]  # rows, utilization %, padded %, cropped %, truncated
    return found


@claim("04_tokens_and_masks")
def the_recap_says_what_each_packing_pads_and_drops(nb):
    recap = next(m for m in markdown(nb) if m.lstrip().startswith("## Recap"))
    table = _packing(nb)
    row_len = parameters(nb)["row_len"]
    for strategy in ("greedy_crop", "best_fit_crop"):
        rows, padded = int(table[strategy][0]), float(table[strategy][2])
        if "wastes no slot" in recap:
            assert padded == 0, f"'cropping wastes no slot', but {strategy} padded {padded}%"
        if "pads only what is left of the last row" in recap:
            assert padded * rows * row_len / 100 < row_len, f"{strategy} pads more than the last row"
    if "drops nothing that fits a row" in recap:
        assert float(table["best_fit_pad"][3]) == 0 or int(table["best_fit_pad"][4]) > 0


@claim("04_tokens_and_masks")
def the_worked_example_has_nanochats_regions(nb):
    said = re.search(r"(\d+) special\s+tokens around (\d+) text regions", "\n".join(markdown(nb)))
    shown = re.search(r"(\d+) regions: (\d+) special tokens, (\d+) text regions",
                      output(cell(nb, starts="# NBVAL_CHECK_OUTPUT\nregions = ")))
    assert said and shown and (said[1], said[2]) == (shown[2], shown[3])


@claim("04_tokens_and_masks")
def nanochats_token_counts_are_the_fixtures(nb):
    """The counts quoted for nanochat's own tokenizer come from the seed's token table, for this very
    conversation (the notebook writes it inline; the fixture holds the seed's copy)."""
    import json

    fixture = json.loads((project_root() / "tests" / "fixtures" / "gsm8k_example.json").read_text())
    table = fixture["seed_table"]
    said = re.search(r"nanochat's own tokenizer, 65,536 tokens, made (\d+) tokens of this conversation, (\d+) of them "
                     r"supervised", "\n".join(markdown(nb)))
    assert said and (int(said[1]), int(said[2])) == (len(table), sum(mask for _, _, mask in table))
    source = cell(nb, starts="gsm8k = {").source
    for message in fixture["conversation"]["messages"]:
        parts = message["content"] if isinstance(message["content"], list) else [{"text": message["content"]}]
        assert all(json.dumps(part["text"]) in source for part in parts), "the notebook's conversation is the fixture's"


@claim("04_tokens_and_masks")
def the_wrong_shift_moves_only_region_boundaries(nb):
    text = output(cell(nb, starts="wrong = rendered.mask[:-1]"))
    moved = re.findall(r"^\s+\d+\s+('.*?')\s+->\s+('.*?')\s+[01]\s+[01]$", text, re.M)
    count = re.search(r"(\d+) of (\d+) positions change", text)
    assert count and int(count[1]) == len(moved) > 0
    assert all("<|" in read or "<|" in target for read, target in moved), "a difference only at region boundaries"
    assert any("assistant_start" in read for read, _ in moved) and any("python_end" in read for read, _ in moved)


@claim("04_tokens_and_masks")
def a_small_vocabulary_needs_more_tokens_and_keeps_the_supervised_fraction(nb):
    text = output(cell(nb, starts="for size in (512, 4096):"))
    runs = {int(v): (int(h.replace(",", "")), int(f.replace(",", "")), float(s)) for v, h, f, s in
            re.findall(r"vocab\s+(\d+): held-out\s+([\d,]+) tokens; file\s+([\d,]+) tokens, ([\d.]+)% supervised", text)}
    assert runs[512][0] > 1.1 * runs[4096][0], "clearly more tokens with 512 on the held-out text"
    assert runs[512][1] > 1.1 * runs[4096][1], "clearly more tokens with 512 on the file"
    assert abs(runs[512][2] - runs[4096][2]) <= 1.0, "the supervised fraction barely moves"


@claim("04_tokens_and_masks")
def compression_is_measured_on_held_out_text_and_said_from_the_sweep(nb):
    c = cell(nb, starts="train_texts, held_texts = split_corpus(")
    text = computed(c, "compression_sentence(sweep)", "split_corpus(")
    if text is None:
        return
    rows = re.findall(r"(?m)^\d+\s+\d+\s+\d+\s+([\d.]+)\s+([\d.]+)\s+(\d+\.\d+)", text)  # the sweep's table
    train, held = [float(r[0]) for r in rows], [float(r[1]) for r in rows]
    assert len(rows) >= 2 and all(h < t for h, t in zip(held, train)), "'a tokenizer compresses its own training text best'"
    assert held == sorted(held), "a larger vocabulary needs fewer tokens for the same held-out text"
    assert sum(float(r[2]) for r in rows) < 3.0, "'a second or two in all'"
    m = re.search(r"held-out text goes from \*\*([\d.]+) to ([\d.]+)\*\* characters per token \(x([\d.]+)\); the training "
                  r"text from ([\d.]+) to ([\d.]+) \(x([\d.]+)\)", text)
    assert m and (float(m[1]), float(m[2]), float(m[4]), float(m[5])) == (held[0], held[-1], train[0], train[-1])
    assert ("The training text gains more" in text) == (float(m[6]) > float(m[3]))
    splits = re.findall(r"vocab (\d+): (\d+) tokens for a held-out sentence", text)
    assert len(splits) == 2 and int(splits[0][1]) > int(splits[1][1]), "the small vocabulary splits the sentence finer"


@claim("04_tokens_and_masks")
def the_tokenizer_sees_a_few_hundred_thousand_characters(nb):
    m = re.search(r"trained on ([\d,]+) characters", output(cell(nb, starts="extra = [conversations_path]")))
    assert m and 100_000 <= int(m[1].replace(",", "")) < 1_000_000, "'the few hundred thousand printed below'"


# ---------------------------------------------------------------- 05_midtrain_smoke

def _run_table(nb) -> dict[str, str]:
    return {r[0]: r[1] for r in table_rows(output(cell(nb, starts="rows_seen = steps *"))) if len(r) == 2}


@claim("05_midtrain_smoke")
def the_size_and_time_said_are_the_runs(nb):
    """'a 2M-parameter model trained for a minute' beside 1,310,720 parameters and 25 s."""
    table = _run_table(nb)
    params, seconds = int(table["parameters"].replace(",", "")), float(table["wall time, sampling included"].split()[0])
    steps = parameters(nb)["steps"]
    said = "\n".join(markdown(nb))
    for claimed in re.findall(r"(\d+(?:\.\d+)?)M-parameter", said):
        assert abs(float(claimed) * 1e6 - params) <= 0.15 * params, f"{claimed}M parameters said, {params:,} trained"
    if "trained for a minute" in said:
        assert 40 <= seconds <= 90, f"'trained for a minute', but it took {seconds:.0f} s"
    words = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "ten": 10}
    for m in re.finditer(r"\(about (\w+) minutes", said):
        expected = seconds * 400 / steps / 60
        assert abs(words.get(m[1], 0) - expected) <= 0.3 * expected, f"about {m[1]} minutes said, {expected:.1f} expected"
    text = computed(cell(nb, starts="loop_k, loop_n = counts[loss_mode]"), "result.num_params", "train_seconds")
    if text is not None:
        m = re.search(r"\*\*([\d,]+) parameters\*\* trained for (\d+) steps in \*\*(\d+) s\*\*", text)
        assert m and int(m[1].replace(",", "")) == params and int(m[2]) == steps and abs(int(m[3]) - seconds) <= 1


@claim("05_midtrain_smoke")
def best_fit_with_padding_drops_nothing_that_fits(nb):
    m = re.search(r"(\d+) tokens dropped \((\d+) conversations longer than a row\)",
                  output(cell(nb, starts="packed = packing.pack_rows(sequences")))
    assert m and (m[1] == "0" or m[2] != "0")


@claim("05_midtrain_smoke")
def before_training_every_prompt_gets_the_same_babble_from_about_ln_v(nb):
    text = output(cell(nb, starts="for before, after in zip(result.samples_before"))
    before = re.findall(r"^  before: (.*)$", text, re.M)
    assert len(before) > 1 and len(set(before)) == 1
    m = re.search(r"train loss ([\d.]+) at step 1 \(ln V = ([\d.]+)\)", output(cell(nb, tag="figure:loss")))
    assert m and abs(float(m[1]) - float(m[2])) <= 0.5


_RATE = re.compile(r"(\d+) of (\d+)(?: \(\d+%(?:, 95% CI (\d+)-(\d+)%)?\))?")


def _rates(text: str) -> list[tuple[int, int]]:
    return [(int(m[1]), int(m[2])) for m in _RATE.finditer(text)]


@claim("05_midtrain_smoke")
def mid_and_sft_are_told_apart_only_outside_their_intervals(nb):
    """The issue's finding: a table of 4 prompts and one seed read as a difference. Each trait now has its
    n and interval, and the verdict is a tie while the 95% intervals overlap."""
    from kit.figures import wilson

    from kit.training.probes import TRAITS

    text = output(cell(nb, starts="t0 = time.perf_counter()\nother = midtrain("))
    rows = [[trait, *row_cells(text, trait)] for trait in TRAITS if trait in text]
    assert rows and all(len(r) == 4 for r in rows), "the mid-vs-sft table has a verdict column"
    ties = 0
    for trait, a, b, said in rows:
        (ka, na), (kb, nb_) = _rates(a)[0], _rates(b)[0]
        assert na == nb_ and (na >= 100 or "95% CI" in a), (trait, a, b)
        (lo_a, hi_a), (lo_b, hi_b) = wilson(ka, na), wilson(kb, nb_)
        overlap = lo_a <= hi_b and lo_b <= hi_a
        assert (said == "tie") == overlap, (trait, a, b, said)
        ties += overlap
    text = computed(cell(nb, starts="figures.show(probing.trait_bars(counts"), 'comparison["verdict"] == "tie"')
    if text is not None:
        m = re.search(r"(\d+) of (\d+) traits are a \*\*tie\*\*", text)
        assert m and int(m[1]) == ties and int(m[2]) == len(rows)
    said = " ".join(markdown(nb))
    assert "Expect different replies to the same prompts and different counts" not in said
    if "Expect most traits to be a tie" in said:
        assert 2 * ties > len(rows), f"most traits a tie said, {ties} of {len(rows)} are"


@claim("05_midtrain_smoke")
def the_answer_format_is_counted_apart_from_the_right_answer_and_the_name_is_asked(nb):
    text = output(cell(nb, starts="for before, after in zip(result.samples_before"))
    rows = {r[0]: r[1] for r in table_rows(text) if len(r) == 2}
    if not rows:
        return  # not executed since it was edited
    assert "a #### line (format only)" in rows and "#### with the right number" in rows
    assert _rates(rows["#### with the right number"])[0][1] == _rates(rows["a #### line (format only)"])[0][1]
    assert _rates(rows["#### with the right number"])[0][0] <= _rates(rows["a #### line (format only)"])[0][0]
    assert "says its name" in rows and _rates(rows["says its name"])[0][1] == parameters(nb)["identity_probes"]
    m = re.search(r"\*\*[\d,]+ parameters\*\*.*?(\d+) of (\d+) \(\d+%.*?\) replies to the held-out probes loop",
                  output(cell(nb, starts="loop_k, loop_n = counts[loss_mode]")))
    assert m and (int(m[1]), int(m[2])) == _rates(rows["a loop"])[0]


@claim("05_midtrain_smoke")
def the_cost_ratio_is_in_one_unit(nb):
    """The issue's finding: API tokens (the generator's tokenizer) divided by supervised tokens (ours)."""
    c = cell(nb, starts="identity_records = read_records(identity_path)")
    computed(c, "cost_in_one_unit(", "token_counts")
    text = output(c)
    assert "completion tokens per supervised token" not in text.split("in the generator's tokens:")[0]
    m = re.search(r"the loss trains on ([\d,]+) tokens of this notebook's.*?([\d,]+) tokens of the generator's "
                  r"tokenizer \(this notebook's tokenizer cuts it into ([\d.]+) tokens per generator token", text, re.S)
    if text:
        assert m and float(m[3]) == pytest.approx(int(m[1].replace(",", "")) / int(m[2].replace(",", "")), abs=0.01)


# ---------------------------------------------------------------- 06_memory_benchmark

@claim("06_memory_benchmark")
def per_category_figures_show_the_questions_behind_them(nb):
    """The issue's finding: recall to two decimals over 1-3 questions with no n. Every rate is k of n with
    its 95% interval, in the tables and in figures with whiskers (plot_rates)."""
    for start in ("ks = sorted({1, recall_k, 3})", "# recent's top 1 is the last session"):
        c = cell(nb, starts=start)
        text = computed(c, '"questions"', "figures.rate(")
        if text is None:
            continue
        rows = [r for r in table_rows(text) if r and r[0] in CATEGORIES_06]
        assert rows and all(_rates(v) and "95% CI" in v for r in rows for v in r[2:]), start
    assert "plot_rates(" in cell(nb, starts="ks = sorted({1, recall_k, 3})").source


CATEGORIES_06 = ("time_range_scene_amount", "time_range_multiple_scenes_amount", "time_range_total_amount", "max_scene",
                 "max_frequency_date", "max_single_amount", "single_date_scene_amount", "total_amount", "overall")


@claim("06_memory_benchmark")
def the_accuracy_figure_shows_every_condition_evaluated(nb):
    c = cell(nb, starts="# recent's top 1 is the last session")
    assert "conditions = {**{c: category_counts(r) for c, r in results.items()}" in c.source
    figure = next(x for x in nb.cells if x.cell_type == "code" and "plot_rates(conditions" in x.source)
    assert "image/png" in str(figure.get("outputs")) or not figure.get("outputs")
    header = output(c).splitlines()[:1]
    evaluated = re.findall(r"^\s*(\S+): \d+ of \d+", output(c), re.M)
    if header and evaluated:
        assert all(name in header[0] for name in evaluated + ["oracle"]), (header, evaluated)


@claim("06_memory_benchmark")
def the_off_topic_agreement_is_printed_with_its_n(nb):
    said = " ".join(markdown(nb))
    assert not re.search(r"catches \d+% of non sequiturs", said), "a precision/recall said without its n"
    text = computed(cell(nb, starts="# real SmolLM2-135M replies, each labelled"), "off_topic_agreement(", "figures.rate(")
    if text is not None:
        m = re.search(r"on (\d+) hand-labelled replies \((\d+) non sequiturs\): recall (\d+) of (\d+) .*?precision "
                      r"(\d+) of (\d+)", text)
        assert m and int(m[2]) == int(m[4]) and int(m[3]) == int(m[5]) and int(m[4]) <= int(m[1])


@claim("06_memory_benchmark")
def the_last_session_oracle_keeps_one_day_questions_and_loses_whole_history(nb):
    rows = [r for r in table_rows(output(cell(nb, starts="ledger = transactions(record)"))) if r[-1] in ("True", "False")]
    assert rows
    assert all(r[-1] == "True" for r in rows if r[1] == "single_date_scene_amount"), "questions about one day stay right"
    assert all(r[-1] == "False" for r in rows if r[1] == "total_amount"), "the overall total goes wrong"


@claim("06_memory_benchmark")
def the_history_is_longer_than_the_window_and_all_recalls_everything(nb):
    m = re.search(r"([\d.]+)x the embedded (?:model|server)'s", output(cell(nb, starts="per_session = token_counts(")))
    assert m and float(m[1]) > 1.0, "a memory test only when the history does not fit the window"
    text = output(cell(nb, starts="ks = sorted({1, recall_k, 3})"))
    overall = re.search(r"all ([\d.]+);", text)
    assert not text or (overall and float(overall[1]) == 1.0), "'all' hands over every session: recall 1"


# ---------------------------------------------------------------- 07_identity_finetune (more)

_TARGET = re.compile(r"identity score on (\d+) held-out probes: ([\d.]+) -> ([\d.]+) with the reference .*?"
                     r"target: at least ([\d.]+) after(?:: (met|not met))?\)")


@claim("07_identity_finetune")
def the_reference_target_is_said_met_or_not_met_from_the_score(nb):
    c = cell(nb, starts='score_change = f"{before.score:.2f}')
    text = computed(c, "figures.met(after.score >=")
    if text is not None:
        m = _TARGET.search(text)
        assert m and m[5], "the 0.8 target is printed without a verdict"
        assert (m[5] == "met") == (float(m[3]) >= float(m[4]))
        assert float(m[2]) < 0.5, "most of the base model's answers fail (section 2 says so)"


@claim("07_identity_finetune")
def the_untrue_answers_verdict_follows_from_the_counts(nb):
    text = output(cell(nb, starts='score_change = f"{before.score:.2f}'))
    m = re.search(r"answers with an untrue sentence: generated student (\d+) of \d+ .*?, reference student (\d+) of \d+ "
                  r".*?: (met|not met)\)", text)
    if m:
        assert (m[3] == "met") == (int(m[1]) < int(m[2]))
    gain = re.search(r"the generated student minus the teacher: ([+-][\d.]+) over \d+ probes \(95% CI ([+-][\d.]+) to "
                     r"([+-][\d.]+);.*: (a real difference|a tie)", text)
    if gain:
        tie = float(gain[2]) <= 0 <= float(gain[3])
        assert (gain[4] == "a tie") == tie
        recap = next(t for t in markdown(nb) if t.startswith("## Recap"))
        assert not tie or "better than the teacher" not in recap


@claim("07_identity_finetune")
def the_objectives_and_try_its_claim_only_rows_that_ran(nb):
    objectives = markdown(nb)[0]
    rows = [r[0] for r in table_rows(output(cell(nb, starts="def experiment(name, records):")))]
    if re.search(r"with and without general conversations", objectives):
        assert any("identity only" in r or "no mix" in r for r in rows), "no row was trained without the general mix"


def _share(text: str) -> float | None:
    """0.75 from '0.75' or from '6 of 8 (75%, ...)'."""
    m = re.match(r"(\d+) of (\d+)", text) or re.match(r"([\d.]+)$", text)
    if m is None or (m.lastindex == 2 and m[2] == "0"):
        return None
    return int(m[1]) / int(m[2]) if m.lastindex == 2 else float(m[1])


@claim("07_identity_finetune")
def a_kind_said_to_be_hardest_is_among_the_lowest(nb):
    """'Expect the multilingual and license probes to stay the hardest': adversarial scored lower, and no
    license probe was among those scored."""
    new = any(c.source.startswith("def rates(per):") for c in nb.cells)
    text = output(cell(nb, starts="def rates(per):" if new else "kinds = pd.DataFrame("))
    after = {r[0]: r[2] for r in table_rows(text) if len(r) >= 3}
    for claim_ in re.findall(r"Expect the ([\w ]+?) probes to stay the hardest", "\n".join(markdown(nb))):
        kinds = [k.strip() for k in claim_.split(" and ")]
        rates = {k: _share(v) for k, v in after.items() if _share(v) is not None}
        for kind in kinds:
            assert kind in rates, f"'{kind}' probes are said to be hardest but none was scored"
            assert rates[kind] <= sorted(rates.values())[len(kinds) - 1], f"'{kind}' is not among the hardest"


@claim("07_identity_finetune")
def the_students_differ_only_in_their_data_and_every_tie_is_called_one(nb):
    """Issue 29: the students are compared on the same conversations count, steps, mix and seed; a difference
    whose interval holds 0 is printed as a tie."""
    c = cell(nb, starts='score_change = f"{before.score:.2f}')
    text = output(c)
    if not text:
        assert "figures.gain_sentence(" in c.source and "paired_gain" in c.source
        return
    same = re.search(r"Every student learnt from (\d+) identity conversations, (\d+) steps", text)
    assert same, "the recap does not say what every student learnt from"
    ran = re.findall(r"^([\w -]+ student): (\d+) steps", output(cell(nb, starts="def experiment(")), re.M)
    assert ran and all(int(n) == int(same[2]) for _, n in ran), ran
    gains = re.findall(r"over \d+ probes \(95% CI ([+-][\d.]+) to ([+-][\d.]+);[^)]*\): (a real difference|a tie)", text)
    assert gains, "no paired comparison printed"
    for lo, hi, verdict in gains:
        assert (verdict == "a tie") == (float(lo) <= 0 <= float(hi))


@claim("07_identity_finetune")
def rates_by_kind_show_their_probes(nb):
    text = computed(cell(nb, starts="def rates(per):"), "figures.rate(")
    if text is not None:
        assert re.search(r"\d+ of \d+ \(\d+%, 95% CI", text)


@claim("07_identity_finetune")
def every_try_it_prints_a_concrete_expectation(nb):
    """A reader found that no try-it had a code cell or an expectation ("how the scores move is what your run shows")."""
    for i, c in enumerate(nb.cells):
        if c.cell_type == "markdown" and c.source.startswith("**Try it"):
            after = nb.cells[i + 1]
            assert after.cell_type == "code" and "expect, " in after.source, f"try-it {c.source[:40]!r}: no expectation"
            assert not after.get("outputs") or "expect, " in output(after), output(after)
            assert "is what your run shows" not in c.source


@claim("07_identity_finetune")
def the_loss_is_read_over_steps_and_the_served_reply_says_why(nb):
    """'loss 3.78 -> 1.99' once read one batch's dip as the end of training; the served model said "I'm Alex" under
    the label nanochat, its verdict printed without the reason."""
    text = computed(cell(nb, starts="t0 = time.perf_counter()"), "mixed.loss_ends(k)")
    if text is not None:
        m = re.search(r"(\d+) steps in .*mean loss of the first (\d+) steps [\d.]+ -> of the last (\d+) [\d.]+", text)
        assert m and m[2] == m[3] and int(m[2]) == min(5, int(m[1])), text
    text = computed(cell(nb, starts='question = "Before I log off'), "facts.verdict_reasons(reply")
    if text is not None:
        assert "nanochat (served GGUF)" not in text and "finetuned model (served GGUF):" in text
        stated = re.search(r"facts stated: \{'name': (True|False), 'creator': (True|False)\}", text)
        assert stated, text
        for fact, ok in zip(("name", "creator"), stated.groups()):
            assert re.search(rf"^  {fact}: {'stated' if ok == 'True' else 'not stated: '}", text, re.M), (fact, text)


def _students_table(nb) -> dict[str, list[str]]:
    text = output(cell(nb, starts="def experiment(name, records):"))
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():  # a wide table is printed in blocks: each row's cells, block after block
        label = re.match(r"(base model|teacher \(base model told the facts\)|[\w-]+ student)\s{2,}", line)
        if label:
            rows.setdefault(label[1], []).extend(re.split(r"\s{2,}", line[label.end():].strip()))
    return rows


@claim("07_identity_finetune")
def the_generated_and_planned_gap_is_read_without_the_truth_check_and_per_sentence(nb):
    """The recap once compared the generated and planned-openings students without saying that both pass as many
    probes without the truth check, and counted answers with an untrue sentence beside answers three times as long."""
    c = cell(nb, starts='score_change = f"{before.score:.2f}')
    text = computed(c, 'passed_without("truth")', "paired_with(control_scored, without=\"truth\")", ".sentences()")
    if not text or "generated student" not in text:
        return
    assert re.search(r"one finetune \(seed \d+\): each 95% interval here covers which \d+ probes were asked, not training "
                     r"noise", text)
    m = re.search(r"without the truth check\*\*: (\d+) of (\d+) .*? against (\d+) of \d+ [^:.]*(: the same number)?", text)
    assert m, "the recap does not compare the two students without the truth check"
    assert bool(m[4]) == (m[1] == m[3]), m[0]
    # each row's rates in the table's order: probes passed, passed without the truth check, answers with an untrue
    # sentence, untrue sentences
    rates = {name: [v for v in cells if re.match(r"\d+ of \d+", v)] for name, cells in _students_table(nb).items()}
    assert rates["generated student"][1].startswith(f"{m[1]} of ") and rates["planned-openings student"][1].startswith(f"{m[3]} of ")
    lengths = re.search(r"The generated student answers in ([\d.]+) sentences on average, the reference student in "
                        r"([\d.]+) .*?\)(: with fewer sentences|: the lengths do not favour it)", text)
    assert lengths, "the recap does not say how long each student's answers are"
    assert (lengths[3] == ": with fewer sentences") == (float(lengths[1]) < float(lengths[2]))
    for name in ("generated student", "reference student", "planned-openings student"):
        said = re.search(rf"Per sentence: .*?{name} (\d+ of \d+)", text)
        assert said and (rates[name][3] + " ").startswith(said[1] + " "), (name, rates[name])


@claim("07_identity_finetune")
def the_leak_check_counts_shared_word_runs_too(nb):
    text = computed(cell(nb, starts="def experiment(name, records):"), "students.shared_runs(")
    if text and "generated conversations (" in text:
        m = re.search(r"(\d+) of the (\d+) generated conversations hold a run of 8 words of a probe's user turns", text)
        assert m, text
        assert int(m[1]) == 0 or re.search(r"^  \S+: '", text, re.M), "a leak found is shown"


# ---------------------------------------------------------------- notebooks/README.md

def _readme_row(stem: str) -> str:
    text = (NOTEBOOKS / "README.md").read_text(encoding="utf-8")
    return next(line for line in text.splitlines() if line.startswith(f"| `{stem}`"))


def _read(stem: str):
    return nbformat.read(NOTEBOOKS / f"{stem}.ipynb", as_version=4)


def test_the_readme_counts_what_the_notebooks_run():
    """'six live generations' (4 shown), '6 conversations' (52 asked), '3 finetunes' (2 run)."""
    words = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}
    p01 = parameters(_read("01_prompt_design"))
    row = _readme_row("01_prompt_design")
    for word in re.findall(r"(\w+) live generations", row):
        assert words.get(word, -1) == p01["live_generations"] + p01["distill_items"], row
    pair = re.search(r"(\d+) \+ (\d+) at the smoke size", row)
    assert pair is None or (int(pair[1]), int(pair[2])) == (p01["live_generations"], p01["distill_items"])
    row = _readme_row("02_bulk_generation")
    for n in re.findall(r"(\d+) conversations (?:asked of|from) the embedded model", row):
        assert int(n) == parameters(_read("02_bulk_generation"))["num"], row
    nb07 = _read("07_identity_finetune")
    ran = 1 + len(re.findall(r"^[\w -]+ student: \d+ steps", output(cell(nb07, starts="def experiment(")), re.M))
    for n in re.findall(r"(\d+) finetunes", _readme_row("07_identity_finetune")):
        assert int(n) == ran, f"the README says {n} finetunes, the notebook ran {ran}"
    for n in re.findall(r"(\d+) evaluations on (\d+) probes", _readme_row("07_identity_finetune")):
        assert int(n[1]) == parameters(nb07)["probe_limit"]
    row = _readme_row("05_midtrain_smoke")
    for n in re.findall(r"(\d+)-step runs", row):
        assert int(n) == parameters(_read("05_midtrain_smoke"))["steps"]


def test_the_readme_states_notebook_06s_sizes():
    nb = _read("06_memory_benchmark")
    m = re.search(r"\((\d+) sessions, (\d+) messages, (\d+) questions, (\d+) evaluations\)", _readme_row("06_memory_benchmark"))
    text = output(cell(nb, starts="records = generate(config, dataset_path"))
    kept = re.search(r"(\d+) of \d+ planned sessions kept", text)
    messages = re.search(r"(\d+) messages \(", text)
    questions = re.search(r"(\d+) questions \(task", text)
    evaluations = len(re.findall(r"right, context cut for", output(cell(nb, starts="# recent's top 1 is the last session"))))
    assert m and kept and messages and questions
    assert (int(m[1]), int(m[2]), int(m[3])) == (int(kept[1]), int(messages[1]), int(questions[1]))
    assert evaluations in (0, int(m[4]))  # 0: the cell is not executed since it was edited


def test_every_notebook_has_claims():
    assert set(CLAIMS) == {p.stem for p in (project_root() / "notebooks").glob("0*.ipynb")}


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


def test_the_more_conversations_try_it_holds(tmp_path, fake_openai):
    """02's try-it, run once on a loopback endpoint: `append=True` with `num = 2` asks two new indices after
    the last one, and the output grows by the ones kept."""
    from fake_openai import Reply
    from kit.generation.generate import generate

    srv = fake_openai(lambda request, n_seen: Reply(
        content="My code is open source under the MIT license, and Andrej Karpathy built me in 2025."))
    out = tmp_path / "conversations.jsonl"
    common = dict(endpoint=srv.base_url, model="fake-model", recipe="distill", candidates=1, workers=1, progress=False)
    first = generate(3, out, **common)
    more = generate(2, out, append=True, **common)
    assert (more.asked, more.already_done) == (first.asked + 2, first.asked), "the first run's indices are done"
    assert more.accepted + more.rejected == 2 and more.in_output == first.in_output + more.accepted
    try_it = next(m for m in markdown(nbformat.read(NOTEBOOKS / "02_bulk_generation.ipynb", as_version=4))
                  if "Try it: more conversations" in m)
    assert "summary to say 2 asked" not in try_it, "the summary counts every index, the first run's as already done"


# ---------------------------------------------------------------- the display helpers the notebooks print through

def test_a_rate_shows_its_count_and_an_interval_under_100():
    from kit.figures import met, rate, wilson

    assert rate(22, 29) == "22 of 29 (76%, 95% CI 58-88%)"
    assert rate(120, 300) == "120 of 300 (40%)" and rate(0, 0) == "0 of 0"
    lo, hi = wilson(0, 16)
    assert lo == 0.0 and hi == pytest.approx(0.194, abs=0.001)  # the Wilson bound, not 0 +- 0
    assert wilson(5, 5)[1] == pytest.approx(1.0) and wilson(5, 5)[0] == pytest.approx(0.566, abs=0.001)
    assert (met(True), met(False)) == ("met", "not met")


def test_rejects_made_before_any_answer_are_shown_like_the_others():
    from kit.figures import distill_lines, item_meta, reject_rows

    api = {"index": 3, "status": "rejected", "reject": {"index": 3, "rules": ["api_error"], "reasons": ["API error: 503"],
                                                        "raw": "", "attempts": [], "meta": {"topic": "t"}}}
    bare = {"index": 4, "status": "rejected", "reject": {"index": 4, "rules": ["api_error"], "reasons": ["API error"], "raw": ""}}
    kept = {"index": 0, "status": "accepted", "record": {"messages": [{"role": "user", "content": "hi"},
                                                                      {"role": "assistant", "content": "Hello."}],
                                                         "meta": {"topic": "t", "turns": [
                                                             {"passed": 1, "candidates": 2, "verdicts": [["grounded"], []]}]}}}
    assert item_meta(bare) == {} and item_meta(kept)["topic"] == "t"
    assert distill_lines(api) == ["=== distill item 3: rejected; topic: t",
                                  "  rejected before its first answer: nothing was sampled", "  API error: 503"]
    assert ("  turn 1: 1 of 2 candidates passed after the cut; failed checks per candidate after the cut: "
            "['grounded', 'none']") in distill_lines(kept)
    assert distill_lines(bare)[0] == "=== distill item 4: rejected; topic: ?"
    assert reject_rows([api, bare, kept]) == [(3, 1, "api_error", "API error: 503", ""), (4, 1, "api_error", "API error", "")]


def test_the_comparison_labels_what_the_plan_guarantees_and_compares_distinct_n_on_equal_samples(tmp_path):
    from kit.figures import cost_per_kept
    from kit.quality.compare import comparison_frame, findings_only, sweep_sentence
    from kit.quality import report as quality
    from kit.records import read_records, write_records
    from kit.rules import load_rules

    reference_path = project_root() / "knowledge" / "reference" / "identity.jsonl"
    reference = read_records(reference_path).records
    generated = [dict(r, meta={**r["meta"], "recipe": "distill", "opener": "planned"}) for r in reference[:30]]
    write_records(tmp_path / "g.jsonl", generated)
    common = dict(threshold=0.8, num_perm=64, identity_name="nanochat", rules=load_rules())
    report, records = quality.file_report(tmp_path / "g.jsonl", **common)
    ref_report, ref_records = quality.file_report(reference_path, **common)
    rows = quality.comparison(report, ref_report)
    table = comparison_frame(rows, records, ref_records)
    says = next(i for i in table.index if "the assistant says" in i)
    assert table.loc[says, "generated"] == "planned" and table.loc["requested persona: elements covered", "generated"] == "unused"
    distinct = next(i for i in table.index if i.startswith("distinct-2"))
    assert table.loc[distinct, "n (gen.)"] == table.loc[distinct, "n (ref.)"] > 0
    assert "95% CI" in table.loc["conversations with a content-rule finding", "generated"]  # n = 30
    assert "95% CI" not in table.loc["conversations with a content-rule finding", "reference"]  # n = 132
    assert len(findings_only(rows, records, ref_records)) == len(rows) - 2
    assert "FALLS" in sweep_sentence({"g": {3: 2, 8: 1}}, {"g": 10}) and "never falls" in sweep_sentence({"g": {3: 0, 8: 1}}, {"g": 10})
    assert cost_per_kept(0, 4, [{"requests": 5, "elapsed_s": 3.0}]).endswith("kept nothing")
    assert cost_per_kept(2, 4, []).endswith("every reply came from the reply cache")


def test_figures_quoted_from_the_readme_are_the_readmes():
    """07's sampled-openings try-it quotes the README's measured kept counts."""
    readme = (project_root() / "README.md").read_text(encoding="utf-8")
    measured = {kind: (int(k), int(n)) for kind, n, k in
                re.findall(r"\| distill, (planned openings|sampled answers) \| (\d+) \| (\d+) \(", readme)}
    nb02 = nbformat.read(NOTEBOOKS / "02_bulk_generation.ipynb", as_version=4)
    quoted = re.search(r"sampled = \((\d+), (\d+)\)  # README", cell(nb02, starts="# the two try-its' expectations").source)
    assert quoted and (int(quoted[1]), int(quoted[2])) == measured["sampled answers"], "02's try-it quotes the README"
    said = " ".join(markdown(nbformat.read(NOTEBOOKS / "07_identity_finetune.ipynb", as_version=4)))
    quote = re.search(r"measured (\d+) of (\d+) on the embedded model against (\d+) of (\d+) with planned openings", said)
    if quote:
        assert measured["sampled answers"] == (int(quote[1]), int(quote[2]))
        assert measured["planned openings"] == (int(quote[3]), int(quote[4]))
    sampled = re.search(r"measured (\d+) of (\d+) on the embedded model with sampled answers", said)
    if sampled:
        assert measured["sampled answers"] == (int(sampled[1]), int(sampled[2]))
    nb07 = nbformat.read(NOTEBOOKS / "07_identity_finetune.ipynb", as_version=4)
    for c in nb07.cells:  # the try-it's code computes with the README's kept count
        for kept in re.findall(r"^sampled_kept = (\d+)", c.source, re.M):
            assert int(kept) == measured["sampled answers"][0]


@pytest.mark.slow
def test_the_more_steps_try_it_holds_on_a_tiny_model(trained_tokenizer):
    """05's try-it, run once on a tiny model: more steps end at a lower train loss than fewer."""
    from kit.training.midtrain import midtrain
    from kit.training.tasks import default_mixture

    records = list(default_mixture(None, seed=0, size=120))
    tiny = dict(n_layer=2, n_head=2, n_embd=64, sequence_len=64, batch_size=4, device="cpu", progress=False,
                cpu_threads=1, eval_every=1000)
    short, more = (midtrain(records, trained_tokenizer, steps=steps, **tiny) for steps in (9, 60))
    last = lambda r: sum(h["train_loss"] for h in r.history[-3:]) / 3
    assert last(more) < last(short)


def test_a_sentence_02_quotes_from_its_ten_conversations_is_printed_there():
    """02 names a false sentence the truth check kept: it must be one the notebook printed."""
    nb = nbformat.read(NOTEBOOKS / "02_bulk_generation.ipynb", as_version=4)
    said = " ".join(markdown(nb))
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" and "sentence_table" in c.source
                      for o in c.get("outputs", []))
    for quote in re.findall(r'in the committed run it\s+kept "([^"]+)"', said):
        assert quote in printed, quote
