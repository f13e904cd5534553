"""The generated data beside the hand-written reference, in figures that cannot flatter (notebook 03).

Every helper here answers one way a comparison can mislead:

- a figure the plan guarantees (distill's planned openings state the name) is labelled *planned*, and a
  dimension the recipe draws but never puts into a request is labelled *unused*;
- distinct-n falls as a sample grows, so it is compared on the same number of words;
- coverage and total variation depend on n, so the larger sample is cut to the smaller one's n many times
  (`equal_n_coverage`) and a value inside that 95% range is a tie;
- text the kit's templates wrote (composed user turns, planned openings) is counted apart from the model's
  (`text_sources`), so a figure of that text is not read as a finding about the model.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from kit.stats import rate, wilson
from kit.quality.diversity import coverage, distinct_n, role_texts, words
from kit.records import message_text

# Dimensions a recipe draws but never puts into a request: their coverage says nothing about the data.
RECIPE_UNUSED = {"distill": ("persona",)}


def _recipes(records: Sequence[dict]) -> set:
    return {r.get("meta", {}).get("recipe") for r in records}


def unused_dimensions(records: Sequence[dict]) -> set[str]:
    """The diversity dimensions no record's recipe used (coverage of them is shown as unused)."""
    recipes = _recipes(records)
    sets = [set(RECIPE_UNUSED.get(r, ())) for r in recipes]
    return set.intersection(*sets) if sets else set()


def name_is_planned(records: Sequence[dict]) -> bool:
    """True when every record's first answer opened with a planned sentence that states the name (distill
    with planned openers): then 'says the name' is guaranteed by the plan, not a finding."""
    return bool(records) and all(r.get("meta", {}).get("recipe") == "distill"
                                 and r.get("meta", {}).get("opener") == "planned" for r in records)


def distinct_equal_words(records: Sequence[dict], other: Sequence[dict], n: int = 2,
                         role: str = "assistant") -> tuple[float | None, float | None, int]:
    """distinct-n of `role`'s messages over the same number of words on both sides (the first words of
    each, in file order), since distinct-n falls as a sample grows: (records', other's, words each)."""
    def first(texts, budget):
        out = []
        for t in texts:
            w = words(t)[:budget]
            if not w:
                continue
            out.append(" ".join(w))
            budget -= len(w)
            if budget <= 0:
                break
        return out

    a, b = role_texts(records, role), role_texts(other, role)
    size = min(sum(len(words(t)) for t in a), sum(len(words(t)) for t in b))
    return distinct_n(first(a, size), n), distinct_n(first(b, size), n), size


def comparison_frame(rows: Sequence[dict], records: Sequence[dict], reference: Sequence[dict]):
    """kit.quality.report.comparison's rows as a table a reader cannot misread: every share with its count
    and, where n < 100, its 95% interval; distinct-2 on equal word counts; a figure the plan guarantees
    labelled 'planned', coverage of a dimension the recipe never uses labelled 'unused', coverage beside the
    reference cut to the same n (a tie inside its 95% range), and per row whose text it measures."""
    import pandas as pd
    from kit.quality.report import covered_text, format_value

    unused, planned = unused_dimensions(records), name_is_planned(records)
    noise = equal_n_coverage(coverage(records), coverage(reference))
    measured = measured_text(text_sources(records))
    out = []
    for r in rows:
        figure, note = r["figure"], ""
        cells = {}
        for side in ("generated", "reference"):
            value, n = r[side], r[f"n_{side}"]
            if value is None:
                cells[side] = "-"
            elif isinstance(value, dict):
                cells[side] = covered_text(value)
            elif r["pct"] and isinstance(n, int):
                cells[side] = rate(round(value * n), n)
            else:
                cells[side] = format_value(value, r["pct"])
            cells[f"n ({side[:3]}.)"] = n
        if figure.startswith("distinct-2"):
            gen, ref, size = distinct_equal_words(records, reference)
            figure = "distinct-2, assistant messages, equal samples (n = words each)"
            cells.update({"generated": format_value(gen) if gen is not None else "-", "n (gen.)": size,
                          "reference": format_value(ref) if ref is not None else "-", "n (ref.)": size})
        dim = _requested_dim(figure)
        if "says '" in figure and planned:
            cells["generated"], note = "planned", "every first answer opens with a planned sentence stating the name"
        elif dim in unused:
            cells["generated"], note = "unused", "the recipe never puts this dimension into a request"
        elif dim in noise:
            note = noise_note(noise[dim], "covered")
        out.append({"figure": figure, "generated": cells["generated"], "n (gen.)": cells["n (gen.)"],
                    "reference": cells["reference"], "n (ref.)": cells["n (ref.)"],
                    "generated text measured": measured(figure), "note": note})
    return pd.DataFrame(out).set_index("figure")


def _requested_dim(figure: str) -> str | None:
    if figure.startswith("requested ") and figure.endswith(": elements covered"):
        return figure[len("requested "):-len(": elements covered")]
    return None


def findings_only(rows: Sequence[dict], records: Sequence[dict], reference: Sequence[dict] = ()) -> list[dict]:
    """The comparison rows without those that are not findings (a planned figure, an unused dimension).
    A rate from fewer than 100 carries its 95% Wilson interval (`band_generated`, `band_reference`). Given the
    reference, a coverage row compares the generated data with the reference cut to the same n: its reference
    value is that cut's median, with the 95% range as `band_reference` (shares of elements)."""
    unused, planned = unused_dimensions(records), name_is_planned(records)
    noise = equal_n_coverage(coverage(records), coverage(reference)) if reference else {}
    out = []
    for r in rows:
        dim = _requested_dim(r["figure"])
        if (planned and "says '" in r["figure"]) or dim in unused:
            continue
        band = noise.get(dim)
        if r["pct"]:  # a rate from fewer than 100 gets its Wilson interval as a whisker
            r = {**r, **{f"band_{side}": wilson(round(r[side] * r[f"n_{side}"]), r[f"n_{side}"])
                         for side in ("generated", "reference") if r[side] is not None and 0 < r[f"n_{side}"] < 100}}
        if band and band["resampled"] == "reference":
            lo, hi = band["covered_range"]
            r = {**r, "figure": f"{r['figure']} (reference cut to n={band['n']})", "n_reference": band["n"],
                 "reference": {"covered": band["covered_median"], "of": band["elements"]},
                 "band_reference": (lo / band["elements"], hi / band["elements"])}
        out.append(r)
    return out


# ---- noise: the larger sample cut to the smaller one's n ---------------------------------------------


def equal_n_coverage(generated: dict, reference: dict, draws: int = 1000, seed: int = 0) -> dict[str, dict]:
    """Per dimension both coverage results (kit.quality.diversity.coverage) hold: the smaller sample's
    elements covered and total variation, beside the 95% range of the same figures for the larger sample
    cut to the smaller one's n (elements drawn without replacement, `draws` times, against the larger
    sample's own targets). A value inside its range is a tie at this n: the difference is sampling noise."""
    rng = np.random.default_rng(seed)
    out = {}
    for dim, g in generated["dimensions"].items():
        r = reference["dimensions"].get(dim)
        if dim == "recipe" or r is None or not g["n"] or not r["n"]:
            continue
        (point_side, point), (resampled, pool_cov) = sorted((("generated", g), ("reference", r)),
                                                            key=lambda s: s[1]["n"])
        n = point["n"]
        elements = pool_cov["elements"]
        pool = np.repeat(np.arange(len(elements)), [e["count"] for e in elements])
        targets = np.array([e["target"] or 0.0 for e in elements])
        covered, tv = [], []
        for _ in range(draws):
            counts = np.bincount(rng.choice(pool, size=n, replace=False), minlength=len(elements))
            covered.append(int(((counts > 0) & (targets > 0)).sum()))
            tv.append(0.5 * float(np.abs(counts / n - targets).sum()))
        wanted = [e for e in point["elements"] if (e["target"] or 0) > 0]
        k = sum(e["count"] > 0 for e in wanted)
        out[dim] = {"point": point_side, "resampled": resampled, "n": n, "elements": len(wanted),
                    "covered": k, "covered_range": tuple(int(x) for x in np.percentile(covered, [2.5, 97.5])),
                    "covered_median": int(np.median(covered)),
                    "tv": point["total_variation"], "tv_range": tuple(float(x) for x in np.percentile(tv, [2.5, 97.5]))}
    return out


def noise_verdict(value: float, bounds: tuple[float, float], more: str, less: str) -> str:
    """'tie' when `value` lies inside `bounds`, else which way it falls outside."""
    lo, hi = bounds
    return "tie" if lo <= value <= hi else more if value > hi else less


def noise_note(d: dict, figure: str) -> str:
    """One equal_n_coverage entry, in words: the smaller sample's value against the larger one's range."""
    other = d["resampled"]
    if figure == "covered":
        lo, hi = d["covered_range"]
        verdict = noise_verdict(d["covered"], d["covered_range"], "more elements", "fewer elements")
        return f"{other} cut to n={d['n']}: {lo}-{hi} of {d['elements']} (95%): {verdict}"
    lo, hi = d["tv_range"]
    verdict = noise_verdict(d["tv"], d["tv_range"], "further from target", "closer to target")
    return f"{other} cut to n={d['n']}: TV {lo:.2f}-{hi:.2f} (95%): {verdict}"


def coverage_frame(gen_cov: dict, ref_cov: dict, records: Sequence[dict]):
    """Requested coverage per dimension, both files, and the verdict against the larger file cut to the
    smaller one's n; a dimension the recipe never uses says so instead of a figure."""
    import pandas as pd
    from kit.quality.report import covered_elements, covered_text

    unused, noise = unused_dimensions(records), equal_n_coverage(gen_cov, ref_cov)
    rows = {}
    for dim, d in gen_cov["dimensions"].items():
        if dim == "recipe":
            continue
        ref = ref_cov["dimensions"].get(dim)
        row = {"generated": f"{covered_text(covered_elements(gen_cov, dim)[0])}, TV {d['total_variation']:.2f} (n={d['n']})",
               "reference": f"{covered_text(covered_elements(ref_cov, dim)[0])}, TV {ref['total_variation']:.2f} "
                            f"(n={ref['n']})" if ref else "-"}
        if dim in unused:
            row["generated"] = "unused by the recipe"
            row["elements covered, equal n"] = row["total variation, equal n"] = "not compared"
        elif dim in noise:
            row["elements covered, equal n"] = noise_note(noise[dim], "covered")
            row["total variation, equal n"] = noise_note(noise[dim], "tv")
        rows[dim] = row
    return pd.DataFrame(rows).T


# ---- whose text a figure measures --------------------------------------------------------------------


def text_sources(records: Sequence[dict]) -> dict:
    """Words per role written by the kit's templates (`kit`: composed user turns, planned openings) and by
    the writer (`writer`: the model for generated data, a person for the reference)."""
    count = {"user": {"kit": 0, "writer": 0}, "assistant": {"kit": 0, "writer": 0}}
    for r in records:
        meta = r.get("meta") or {}
        turns = meta.get("turns") or []
        answers = 0
        for m in r["messages"]:
            text = message_text(m["content"])
            n = len(words(text))
            if m["role"] == "user":
                count["user"]["kit" if meta.get("user_turns") == "composed" else "writer"] += n
            elif m["role"] == "assistant":
                opener = turns[answers].get("opener") if answers < len(turns) and meta.get("opener") == "planned" else None
                planned = len(words(opener)) if opener and text.startswith(opener) else 0
                count["assistant"]["kit"] += planned
                count["assistant"]["writer"] += n - planned
                answers += 1
    return count


def _who(d: dict, what: str) -> str:
    """'planned' when the kit wrote every word of `what`, 'mostly planned' when it wrote most of them."""
    total = d["kit"] + d["writer"]
    if not total:
        return f"{what}: no words"
    if not d["writer"]:
        return f"planned: {what} written by the kit"
    head = "mostly planned" if d["kit"] > d["writer"] else "the model's"
    return f"{head}: {what}, {d['writer']} of {total} words the model's"


def measured_text(sources: dict):
    """figure name -> whose text that comparison row measures on the generated side."""
    whole = {k: sources["user"][k] + sources["assistant"][k] for k in ("kit", "writer")}

    def label(figure: str) -> str:
        if figure in ("conversations", "rejected by generation (n = asked)") or _requested_dim(figure):
            return "-" if not _requested_dim(figure) else "meta: what was asked"
        if figure.startswith("first-message"):
            return _who(sources["user"], "user text")
        if figure.startswith("messages per conversation"):
            return "planned: the dynamic sets the rounds" if sources["user"]["kit"] and not sources["user"]["writer"] \
                else "the writer's"
        if "says '" in figure or "assistant" in figure:
            return _who(sources["assistant"], "assistant text")
        return _who(whole, "whole conversation")
    return label


def sources_sentence(sources: dict) -> str:
    """Who wrote the generated words, in one sentence a reader keeps in mind for every figure below."""
    user, assistant = sources["user"], sources["assistant"]
    total = sum(user.values()) + sum(assistant.values())
    kit = user["kit"] + assistant["kit"]
    text = (f"Of the generated conversations' **{total} words**, the kit's templates wrote **{rate(kit, total)}**: "
            f"{user['kit']} of {sum(user.values())} user words (composed turns) and {assistant['kit']} of "
            f"{sum(assistant.values())} assistant words (planned openings). The model wrote "
            f"**{assistant['writer'] + user['writer']}**.")
    if total and kit / total > 0.5:
        text += (" A figure of this text (length, distinct-n, naming, languages) measures the templates more than the "
                 "model: the table marks each row with the text it measures.")
    return text


def accepted_errors(records: Sequence[dict], rules) -> dict[str, list[str]]:
    """id -> the error-severity content findings of each record that has one, checked whole with `rules`
    and the severities of the record's own recipe."""
    from kit.rules import content_problems

    found = {}
    for r in records:
        problems = [str(p) for p in content_problems(r["messages"], r.get("meta"), rules) if p.severity == "error"]
        if problems:
            found[r["id"]] = problems
    return found


def accepted_errors_sentence(records: Sequence[dict], reference: Sequence[dict], rules) -> str:
    """The sentence under notebook 03's content-rule table, from the values."""
    gen, ref = accepted_errors(records, rules), accepted_errors(reference, rules)
    text = (f"**{len(gen)} of {len(records)}** accepted generated conversations hold an error-severity finding when "
            f"checked whole now; the reference: **{len(ref)} of {len(reference)}**.")
    if gen:
        first = next(iter(gen))
        text += (f" Generation's per-answer check let {'it' if len(gen) == 1 else 'them'} through: read "
                 f"{', '.join(list(gen)[:5])} (`{first}`: {gen[first][0]}).")
    else:
        text += " What generation kept passes every error rule here too."
    return text


def minhash_sentence(rows: Sequence[dict], num_perm: int) -> str:
    """The MinHash estimates of notebook 03's controlled pair against the exact Jaccard, in words."""
    gaps = [r["MinHash estimate"] - r["exact Jaccard"] for r in rows]
    worst = max(range(len(rows)), key=lambda i: abs(gaps[i]))
    j = rows[worst]["exact Jaccard"]
    se = (j * (1 - j) / num_perm) ** 0.5
    lower = sum(g < 0 for g in gaps)
    return (f"The largest gap is **{abs(gaps[worst]):.3f}** (at {rows[worst]['words replaced']} words replaced, exact "
            f"{j:.3f}), {abs(gaps[worst]) / se:.1f} standard errors of {se:.3f} at {num_perm} permutations; the estimate "
            f"is below the exact value in {lower} of {len(rows)} rows. "
            + ("Gaps this size are what sampling error gives" if abs(gaps[worst]) <= 3 * se else
               "That is more than sampling error gives: look at the hashing")
            + "; more permutations narrow them (the error shrinks as 1/sqrt(num_perm)).")


def sweep_sentence(sweep: dict[str, dict[int, int]], n: dict[str, int]) -> str:
    """Notebook 03's min_words try-it, said from its table: whether each count never falls as the bar rises,
    and the first bar at which each file has a conversation with a shorter reply."""
    parts = []
    for side, counts in sweep.items():
        bars = sorted(counts)
        monotone = all(counts[a] <= counts[b] for a, b in zip(bars, bars[1:]))
        first = next((w for w in bars if counts[w]), None)
        parts.append(f"{side}: {counts[bars[0]]} of {n[side]} at {bars[0]} words, {counts[bars[-1]]} at {bars[-1]}; "
                     f"{'never falls' if monotone else 'FALLS'} as the bar rises; "
                     + (f"first fails at {first} words" if first else f"none fails up to {bars[-1]} words"))
    return "; ".join(parts) + "."

