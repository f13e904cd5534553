"""Is the data as diverse as we asked for, and what did each trainable token cost?

Diversity control is the creative core of synthetic data: the generator injects entropy (topic,
persona, dynamic, first-message style) and the quality stage checks what came out. This module
assembles the report of one conversation file: validity, the figures of kit.quality.diversity
(coverage, distinct-n, first-message repeats, style, lengths, cost), the near-duplicates of
kit.quality.neardup, content-rule counts, the judge's scores and the reject reasons; it compares the
report with the reference figure by figure and formats the table (the CLI: kit.commands.quality).

`python -m kit quality FILE` prints a table, or the report as JSON with --json.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from kit.paths import read_utf8, read_yaml
from kit.records import RecordError, load_json, read_records, write_records
from kit.rules import CONTENT_RULES, Rules, content_problems, errors, load_rules, validate_messages
from kit.quality.diversity import (_ratio, cost, coverage, distinct, first_messages, lengths, recipe_targets, style,
                                   summarise)
from kit.quality.neardup import NearDuplicates, _snippet, dedup, near_duplicates


# ---- validity ------------------------------------------------------------------------------------


def validity(records: Sequence[dict]) -> dict:
    """Records that kit.rules calls an error, counted by rule. kit.generation.generate's output holds none,
    but a hand-made or foreign file may, and the other figures then include data unfit to train on."""
    rules: Counter = Counter()
    ids = []
    for record in records:
        finish = (record.get("meta") or {}).get("finish_reason")
        broken = {p.rule for p in errors(validate_messages(record["messages"], finish_reason=finish, ascii_rule=False))}
        if broken:
            ids.append(record["id"])
            rules.update(broken)
    return {"invalid": len(ids), "rules": dict(rules.most_common()), "ids": ids[:10]}


# ---- content rules, judge scores, realized coverage -----------------------------------------------

# From this judge score on, a record counts as holding its sampled element (realized coverage).
REALIZED_MIN_SCORE = 4
# dimension -> the judge criterion that says whether a record holds its element
REALIZED_BY = {"topic_category": "on_topic", "topic": "on_topic", "persona": "persona_followed",
               "dynamic": "persona_followed"}


def content_rule_counts(records: Sequence[dict], rules: Rules | None = None, examples: int = 5) -> dict:
    """Content-rule findings (kit.rules's markup, too_short, shape, identity, degenerate) by rule:
    findings, records with one, and the first ids; severities as the rules give them per recipe."""
    rules = rules or load_rules()
    per_rule = {rule: {"findings": 0, "records": 0, "errors": 0, "warnings": 0, "ids": []} for rule in CONTENT_RULES}
    flagged = 0
    for record in records:
        found = content_problems(record["messages"], record.get("meta"), rules)
        flagged += bool(found)
        for rule in {p.rule for p in found}:
            entry = per_rule[rule]
            entry["records"] += 1
            if len(entry["ids"]) < examples:
                entry["ids"].append(record["id"])
        for p in found:
            per_rule[p.rule]["findings"] += 1
            per_rule[p.rule]["errors" if p.severity == "error" else "warnings"] += 1
    return {"n": len(records), "records_flagged": flagged,
            "severity": {rule: rules.severity[rule] for rule in CONTENT_RULES}, "rules": per_rule}


def judge_summary(records: Sequence[dict], scores: dict[str, dict]) -> dict:
    """The judge's score distribution over these records (scores from kit.quality.judge.load_scores, by id):
    counts of 1-5 and the mean per criterion; records unjudged (with the first reasons) or not in the file."""
    from kit.quality.judge import CRITERIA

    judged = [scores[r["id"]] for r in records if scores.get(r["id"], {}).get("status") == "judged"]
    unjudged = [scores[r["id"]] for r in records if scores.get(r["id"], {}).get("status") == "unjudged"]
    criteria = {}
    for key in CRITERIA:
        values = [s[key] for s in judged]
        criteria[key] = {"counts": {str(k): values.count(k) for k in range(1, 6)},
                         "mean": statistics.fmean(values) if values else None}
    return {"n_records": len(records), "judged": len(judged), "unjudged": len(unjudged),
            "not_scored": len(records) - len(judged) - len(unjudged),
            "unjudged_reasons": [s.get("reason", "") for s in unjudged[:5]], "criteria": criteria}


def realized_coverage(records: Sequence[dict], scores: dict[str, dict], targets: dict | None = None) -> dict:
    """Coverage of what the conversations hold, not what they asked for: a judged record counts for its
    topic (category) when its on_topic score reaches REALIZED_MIN_SCORE, and for its persona and dynamic
    when persona_followed does. Shares are over the judged records, so an element nobody wrote well
    shows as missing. Same layout as `coverage`, limited to the dimensions a criterion speaks for."""
    if targets is None:
        targets, _ = recipe_targets(records)
    judged = [r for r in records if scores.get(r["id"], {}).get("status") == "judged"]
    dims = {}
    for dim, criterion in REALIZED_BY.items():
        held = [r for r in judged if scores[r["id"]][criterion] >= REALIZED_MIN_SCORE]
        found = coverage(held, {dim: targets[dim]} if dim in targets else None)["dimensions"].get(dim)
        if found is None:
            continue
        for e in found["elements"]:  # shares over every judged record: not holding its element is a miss
            e["share"] = e["count"] / len(judged) if judged else 0.0
            e["diff"] = e["share"] - (e["target"] or 0.0)
        found.update(n=len(judged), held=len(held), criterion=criterion,
                     total_variation=0.5 * sum(abs(e["diff"]) for e in found["elements"])
                     + 0.5 * (1 - len(held) / len(judged) if judged else 0.0))
        dims[dim] = found
    return {"dimensions": dims, "judged": len(judged), "min_score": REALIZED_MIN_SCORE,
            "notes": [] if judged else ["no record of this file is judged: realized coverage needs `kit judge`"]}


# ---- side by side with the reference -------------------------------------------------------------


def default_reference() -> Path | None:
    """knowledge/reference/identity.jsonl, the hand-written yardstick, when it exists."""
    from kit import paths

    path = paths.knowledge_dir() / "reference" / "identity.jsonl"
    return path if path.exists() else None


def comparison(report: dict, reference: dict) -> list[dict]:
    """The report's headline figures beside the reference's: one row per figure, each value with the
    sample size it rests on (`n`), so a figure from 3 conversations is not read like one from 300."""
    rows = []

    def row(figure: str, get, pct: bool = False) -> None:
        cells = {}
        for side, r in (("generated", report), ("reference", reference)):
            value, n = get(r)
            cells[side], cells[f"n_{side}"] = value, n
        rows.append({"figure": figure, **cells, "pct": pct})

    def mean_of(name):
        return lambda r: ((r["lengths"].get(name) or {}).get("mean"), (r["lengths"].get(name) or {}).get("n", 0))

    row("conversations", lambda r: (r["n_records"], r["n_records"]))
    row("rejected by generation (n = asked)", lambda r: (_share((r.get("rejects") or {}).get("n", 0), _asked(r)), _asked(r)),
        pct=True)
    row("conversations with a content-rule finding", lambda r: (
        _share(r["content_rules"]["records_flagged"], r["n_records"]), r["n_records"]), pct=True)
    for rule in CONTENT_RULES:
        row(f"  {rule}", lambda r, rule=rule: (_share(r["content_rules"]["rules"][rule]["records"], r["n_records"]),
                                               r["n_records"]), pct=True)
    row("near-duplicate rate", lambda r: (r["near_duplicate_rate"], r["n_records"]), pct=True)
    row("first-message duplicate rate", lambda r: (r["first_messages"]["duplicate_rate"], r["first_messages"]["n"]), pct=True)
    row("distinct-2, assistant messages (n = words)", lambda r: (r["distinct"]["assistant"]["distinct_2"], r["distinct"]["assistant"]["words"]))
    row("messages per conversation (mean)", mean_of("turns"))
    row("characters per assistant message (mean)", mean_of("assistant_chars"))
    row(f"conversations where the assistant says '{report['style']['identity_name']}'",
        lambda r: (r["style"]["identity_mention_record_rate"], r["n_records"]), pct=True)
    row("messages with non-ASCII characters", lambda r: (r["style"]["non_ascii_message_rate"], _messages(r)), pct=True)
    for dim in ("topic_category", "topic", "persona", "dynamic", "first_message_category"):
        row(f"requested {dim}: elements covered", lambda r, dim=dim: covered_elements(r["coverage"], dim))
    if report.get("realized_coverage") or reference.get("realized_coverage"):
        for dim in REALIZED_BY:
            row(f"realized {dim}: elements covered", lambda r, dim=dim: covered_elements(r.get("realized_coverage"), dim))
    if report.get("judge") or reference.get("judge"):
        row("judge overall score (mean, 1-5)", lambda r: ((r.get("judge") or {}).get("criteria", {}).get("overall", {}).get("mean"),
                                                           (r.get("judge") or {}).get("judged", 0)))
    return rows


def _share(k: int, n: int) -> float | None:
    return k / n if n else None


def _asked(report: dict) -> int:
    return (report.get("rejects") or {}).get("n", 0) + report["n_records"]


def _messages(report: dict) -> int:
    return sum((report["lengths"].get(f"{role}_chars") or {}).get("n", 0) for role in ("user", "assistant"))


def covered_elements(cov: dict | None, dim: str) -> tuple[dict | None, int]:
    """({"covered": k, "of": K}, n): of the K elements with a target, the k that occur at least once, and the
    n drawn elements behind it."""
    d = (cov or {}).get("dimensions", {}).get(dim)
    if not d:
        return None, 0
    wanted = [e for e in d["elements"] if (e["target"] or 0) > 0]
    return {"covered": sum(e["count"] > 0 for e in wanted), "of": len(wanted)}, d["n"]


def covered_text(value: dict | None) -> str:
    """covered_elements's value as "k of K" ("-" when there is none)."""
    return "-" if value is None else f"{value['covered']} of {value['of']}"


def format_comparison(rows: list[dict], names: tuple[str, str] = ("generated", "reference")) -> str:
    """The comparison as a text table: value (n=sample size) for each side."""
    def cell(value, n, pct):
        return "-" if value is None else f"{covered_text(value) if isinstance(value, dict) else format_value(value, pct)} (n={n})"

    width = max(len(r["figure"]) for r in rows)
    lines = [f"{'':<{width}}  {names[0]:>22}  {names[1]:>22}"]
    for r in rows:
        lines.append(f"{r['figure']:<{width}}  {cell(r['generated'], r['n_generated'], r['pct']):>22}  "
                     f"{cell(r['reference'], r['n_reference'], r['pct']):>22}")
    return "\n".join(lines)


# ---- rejects and the whole report -----------------------------------------------------------------


def rejects_path(path: str | Path) -> Path | None:
    """The rejects file beside a conversation file: `<stem>.rejects.jsonl`, else `rejects.jsonl`."""
    path = Path(path)
    for candidate in (path.with_name(f"{path.stem}.rejects.jsonl"), path.with_name("rejects.jsonl")):
        if candidate.exists() and candidate != path:
            return candidate
    return None


def reject_reasons(path: str | Path | None) -> dict:
    """What the rejects file holds: counts by rule (kit.generation.generate writes `rules`; older or foreign
    files give `reasons` strings), and the API usage the rejected items still cost. A line that is
    not JSON is counted, not fatal."""
    out: dict[str, Any] = {"file": None, "n": 0, "reasons": {}, "unreadable_lines": 0,
                           "usage": {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}}
    if path is None or not Path(path).exists():
        return out
    reasons: Counter = Counter()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                given = entry.get("rules") or entry.get("reasons") or entry.get("reason") or ["unknown"]
            except (json.JSONDecodeError, AttributeError):
                out["unreadable_lines"] += 1
                continue
            out["n"] += 1
            reasons.update(str(r) for r in (given if isinstance(given, list) else [given]))
            usage = (entry.get("meta") or {}).get("usage") or {}
            for key in out["usage"]:
                out["usage"][key] += usage.get(key) or 0
    out["file"], out["reasons"] = str(path), dict(reasons.most_common())
    return out


def quality_report(
    records: Sequence[dict],
    *,
    targets: dict | None = None,
    tokenizer=None,
    threshold: float = 0.8,
    num_perm: int = 128,
    identity_name: str = "nanochat",
    near: NearDuplicates | None = None,
    rules: Rules | None = None,
    scores: dict[str, dict] | None = None,
    calibration: dict | None = None,
) -> dict:
    """Everything above in one JSON-serialisable dict. Pass `near` to reuse a near_duplicates result,
    `rules` for other content-rule settings, `scores` (kit.quality.judge.load_scores) for the judge's
    distribution and realized coverage. `coverage` is the requested coverage (from meta). With the judge's
    `calibration` (a `kit judge --calibrate` result) below the agreement threshold, realized coverage is
    refused: `{"refused": why}`; without one it carries a note that the judge is unchecked."""
    nd = near or near_duplicates(records, threshold=threshold, num_perm=num_perm)
    firsts = first_messages(records)
    lens = lengths(records, tokenizer)
    judged = {}
    if scores is not None:
        from kit.quality.judge import judge_refusal

        refused = judge_refusal(scores, calibration)
        real = {"refused": refused} if refused else realized_coverage(records, scores, targets)
        if calibration is None and not refused:
            real["notes"].append("the judge is not calibrated (kit judge --calibrate): these figures are unchecked")
        judged = {"judge": judge_summary(records, scores), "realized_coverage": real}
    return {
        "n_records": len(records),
        "records_without_meta": sum(not r.get("meta") for r in records),
        "validity": validity(records),
        "content_rules": content_rule_counts(records, rules),
        "near_duplicate_rate": nd.rate,
        "first_message_duplicate_rate": firsts["duplicate_rate"],
        "coverage": coverage(records, targets),
        **judged,
        "distinct": distinct(records),
        "first_messages": firsts,
        "near_duplicates": nd.to_dict(records),
        "style": style(records, identity_name),
        "lengths": {name: summarise(values) for name, values in lens.items()},
        "cost": cost(records, tokenizer),
    }


def file_report(
    path: str | Path, *, threshold: float = 0.8, num_perm: int = 128, dedup_out: str | Path | None = None, **kwargs
) -> tuple[dict, list[dict]]:
    """Read a conversation file (bad lines are reported, not fatal) and report on it, with its
    rejects file if there is one; with `dedup_out`, also write the records minus near-duplicates
    there. Other keyword arguments go to quality_report. Returns (report, records)."""
    result = read_records(path, strict=False)
    near = near_duplicates(result.records, threshold=threshold, num_perm=num_perm)
    report = quality_report(result.records, near=near, **kwargs)
    rejects = reject_reasons(rejects_path(path))
    c = report["cost"]
    if rejects["n"] and c["cost_usd"] is not None:
        # rejected items were paid for too: the honest price of a trainable token includes them
        c["cost_usd_with_rejects"] = c["cost_usd"] + rejects["usage"]["cost_usd"]
        c["usd_per_supervised_token_with_rejects"] = _ratio(c["cost_usd_with_rejects"], c["supervised_tokens"])
    report = {"file": str(path), **report, "read_errors": [_error_dict(e) for e in result.errors], "rejects": rejects}
    if dedup_out is not None:
        kept = dedup(result.records, near.clusters)
        write_records(dedup_out, kept)
        report["dedup_out"] = {"file": str(dedup_out), "kept": len(kept), "removed": len(result.records) - len(kept)}
    return report, result.records


def _error_dict(error: RecordError) -> dict:
    return {"file": error.path, "line": error.lineno, "reason": error.reason}


def load_targets(spec: str) -> dict:
    """--targets: a JSON/YAML file {dimension: {element: share}}, or a recipe name for kit.generation.sampling.
    A file that does not hold that shape is a ValueError naming the file and the place."""
    path = Path(spec)
    if path.suffix in (".json", ".yaml", ".yml") or path.exists():
        if path.suffix != ".json":
            return _checked_targets(read_yaml(path, "the target shares"), path)
        text = read_utf8(path)
        try:
            data = load_json(text)
        except ValueError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        return _checked_targets(data, path)
    from kit.generation.sampling import target_shares

    return target_shares(spec)


def _checked_targets(data: Any, path: Path) -> dict[str, dict[str, float]]:
    def shown(value: Any) -> str:
        return json.dumps(value)[:40] if isinstance(value, (int, float, str, type(None))) else type(value).__name__

    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected {{dimension: {{element: share}}}}, got {shown(data)}")
    for dim, shares in data.items():
        if not isinstance(shares, dict):
            raise ValueError(f"{path}: {dim}: expected {{element: share}}, got {shown(shares)}")
        for element, share in shares.items():
            if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
                raise ValueError(f"{path}: {dim}: {element}: a share is a number from 0 to 1, got {shown(share)}")
    return {str(dim): {str(e): float(share) for e, share in shares.items()} for dim, shares in data.items()}


# ---- the table ------------------------------------------------------------------------------------


def format_value(x, pct: bool = False) -> str:
    """A report value for a table: 4 significant digits, a percentage, or "-" for None."""
    if x is None:
        return "-"
    if pct:
        return f"{100 * x:.1f}%"
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def format_report(report: dict) -> str:
    lines = [f"{report.get('file', 'records')}: {report['n_records']} conversations"]
    for e in report.get("read_errors", []):
        lines.append(f"  unreadable: {e['file']}:{e['line']}: {e['reason']}")
    v = report["validity"]
    if v["invalid"]:
        rules = ", ".join(f"{rule} {n}" for rule, n in v["rules"].items())
        lines.append(f"  invalid: {v['invalid']} conversations break a validation rule ({rules}), e.g. {', '.join(v['ids'][:3])}; "
                     f"`python -m kit validate` lists them")
    rejects = report.get("rejects") or {}
    if rejects.get("n"):
        top = ", ".join(f"{r} {n}" for r, n in list(rejects["reasons"].items())[:5])
        lines.append(f"  rejects: {rejects['n']} ({top})")
    nd = report["near_duplicates"]
    lines += [
        "",
        "near-duplicates",
        f"  rate (removable share)  {format_value(nd['near_duplicate_rate'], True)}  "
        f"({nd['removable']} of {nd['n_records']}, {nd['clusters']} clusters, Jaccard >= {nd['threshold']} on {nd['shingle']})",
    ]
    for c in nd["largest"][:3]:
        lines.append(f"  cluster of {c['size']}: {', '.join(c.get('ids', map(str, c['positions']))[:5])}")
        lines.append(f"    {c['examples'][0]}" if c.get("examples") else "")
    lines += ["", "diversity", f"  first-message duplicate rate  {format_value(report['first_message_duplicate_rate'], True)}"]
    lines.append(f"  {'':<10} {'distinct-1':>10} {'distinct-2':>10} {'distinct-3':>10} {'words':>9}")
    for role, d in report["distinct"].items():
        lines.append(
            f"  {role:<10} {format_value(d['distinct_1']):>10} {format_value(d['distinct_2']):>10} {format_value(d['distinct_3']):>10} {d['words']:>9}"
        )
    cov = report["coverage"]
    lines += ["", "requested coverage (sampled elements in meta: share vs target; total variation = half the summed "
                  "absolute differences)"]
    for dim, d in cov["dimensions"].items():
        lines.append(
            f"  {dim:<24} covered {covered_text(covered_elements(cov, dim)[0]):>9}  total variation {format_value(d['total_variation'], True):>6}"
            f"  (n={d['n']}, targets: {d['source']})"
        )
    if cov["furthest_off"]:
        lines.append("  furthest off:")
        for e in cov["furthest_off"][:5]:
            lines.append(f"    {e['dimension']:<22} {_snippet(e['element'], 40):<40} {format_value(e['share'], True):>6} vs {format_value(e['target'], True)}")
    lines += [f"  note: {n}" for n in cov["notes"]]
    if (real := report.get("realized_coverage")) and real.get("refused"):
        lines += ["", f"realized coverage: not reported: {real['refused']}"]
    elif real:
        lines += ["", f"realized coverage (judged records holding their element: judge score >= {real['min_score']})"]
        for dim, d in real["dimensions"].items():
            lines.append(f"  {dim:<24} {d['held']:>3} of {d['n']} hold it ({d['criterion']})  total variation "
                         f"{format_value(d['total_variation'], True):>6}  missing {len(d['missing'])}")
        lines += [f"  note: {n}" for n in real["notes"]]
    cr = report["content_rules"]
    lines += ["", f"content rules  {cr['records_flagged']} of {cr['n']} conversations with a finding"]
    for rule, d in cr["rules"].items():
        ids = f"  e.g. {', '.join(d['ids'][:3])}" if d["ids"] else ""
        lines.append(f"  {rule:<11} {cr['severity'][rule]:<8} {d['records']:>4} conversations  {d['findings']:>4} findings{ids}")
    if j := report.get("judge"):
        lines += ["", f"judge  {j['judged']} of {j['n_records']} judged, {j['unjudged']} unjudged, {j['not_scored']} not in the scores file"]
        for key, d in j["criteria"].items():
            counts = " ".join(f"{k}:{v}" for k, v in d["counts"].items())
            lines.append(f"  {key:<17} mean {format_value(d['mean']):>6}   {counts}")
        lines += [f"  unjudged: {reason}" for reason in j["unjudged_reasons"][:3]]
    s = report["style"]
    langs = ", ".join(f"{k} {v}" for k, v in list(s["first_message_languages"].items())[:6])
    lines += [
        "",
        "style",
        f"  non-ASCII messages  {format_value(s['non_ascii_message_rate'], True)}   records {format_value(s['non_ascii_record_rate'], True)}",
        f"  '{s['identity_name']}' in assistant turns  {format_value(s['identity_mention_rate'], True)}   in conversations {format_value(s['identity_mention_record_rate'], True)}",
        f"  first-message language  {langs or '-'}",
    ]
    c = report["cost"]
    lines += ["", "cost"]
    lines.append(
        f"  records with usage {c['records_with_usage']}  cost {'-' if c['cost_usd'] is None else '$' + format_value(c['cost_usd'])}  "
        f"prompt {c['prompt_tokens']}  completion {c['completion_tokens']} tokens"
    )
    if c.get("supervised_tokens") is not None:
        lines.append(
            f"  supervised tokens {c['supervised_tokens']}  $/1M supervised {format_value(c['usd_per_million_supervised_tokens'])}  "
            f"completion/supervised {format_value(c['completion_tokens_per_supervised_token'])}  "
            f"API tokens/supervised {format_value(c['api_tokens_per_supervised_token'])}"
        )
    elif c.get("note"):
        lines.append(f"  {c['note']}")
    return "\n".join(lines)

