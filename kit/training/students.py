"""Students of different identity data, made comparable: the same number of conversations, chosen by one rule,
and a control that holds only the kit's own planned sentences.

Notebook 07 finetunes one student per data source (the hand-written reference, the kit's generated
conversations, and their planned openings alone) with the same steps, general mix and seed. What differs
between two students is then the data, and `data_size` says how much of it each saw.

The planned-openings control answers the question the generated data raises: its answers open with a
sentence the kit planned (stating the asked fact) and the embedded model writes the rest. Cut every reply to
its planned opening (`planned_openings`) and a student of that data learns the plan alone; the difference from
the generated student is what the model's own words add or cost.
"""

from __future__ import annotations

from typing import Sequence

from kit import facts

TAUGHT = ("name", "creator")  # the facts most probes ask for


def said(record: dict) -> str:
    """Every assistant message of a conversation, joined."""
    return " ".join(m["content"] for m in record["messages"] if m["role"] == "assistant" and isinstance(m["content"], str))


def stating(records: Sequence[dict], fact_ids: Sequence[str] = TAUGHT) -> list[dict]:
    """The conversations whose answers state every fact of `fact_ids`, shortest first (ties in file order)."""
    found = [r for r in records if all(facts.facts_stated(said(r), list(fact_ids)).values())]
    return sorted(found, key=lambda r: sum(len(m["content"]) for m in r["messages"] if isinstance(m["content"], str)))


def same_size(sources: dict[str, Sequence[dict]], limit: int | None) -> tuple[dict[str, list[dict]], int]:
    """From each source, the same number of conversations by one rule: the shortest that state the name and the
    creator (the facts most probes ask for, in the fewest tokens), as many as the smallest source has (and at
    most `limit`; None: no cap). Returns ({source: chosen}, the number chosen from each)."""
    found = {name: stating(records) for name, records in sources.items()}
    n = min([len(v) for v in found.values()] + ([limit] if limit is not None else []))
    return {name: v[:n] for name, v in found.items()}, n


def shared_runs(records: Sequence[dict], texts: Sequence[str], n: int = 8) -> list[dict]:
    """The conversations of `records` that hold a run of `n` words of one of `texts` (all of a text's words, in
    order, when it has fewer than `n`): a leak an exact comparison of messages misses ("... so, could you tell me
    your name? ..."). Words are kit.quality.diversity's (lower-cased, punctuation dropped). Returns one
    {id, message, text, run} per such conversation, the first run found."""
    from kit.quality.diversity import words

    runs: dict[tuple[str, ...], str] = {}
    for text in texts:
        w = words(text)
        k = min(n, len(w))
        for i in range(len(w) - k + 1 if k else 0):
            runs.setdefault(tuple(w[i:i + k]), text)
    sizes = sorted({len(r) for r in runs})
    found = []
    for record in records:
        hit = None
        for m in record["messages"]:
            w = words(m["content"]) if isinstance(m.get("content"), str) else []
            hit = next(((m["content"], runs[tuple(w[i:i + k])], " ".join(w[i:i + k])) for k in sizes
                        for i in range(len(w) - k + 1) if tuple(w[i:i + k]) in runs), None)
            if hit:
                break
        if hit:
            found.append({"id": record.get("id"), "message": hit[0], "text": hit[1], "run": hit[2]})
    return found


def planned_openings(records: Sequence[dict]) -> list[dict]:
    """The records with each assistant reply cut to its planned opening (the distill recipe's `meta.turns[i]
    .opener`): the same user turns, only the kit's own sentences in the replies. A record with no plan for a
    reply (not written by the distill recipe with planned openings) is refused, naming it."""
    out = []
    for record in records:
        turns = record.get("meta", {}).get("turns") or []
        replies = [i for i, m in enumerate(record["messages"]) if m["role"] == "assistant"]
        if len(turns) != len(replies) or not all(isinstance(t.get("opener"), str) and t["opener"] for t in turns):
            raise ValueError(f"record {record.get('id')}: no planned opening for every reply (meta.turns[].opener); "
                             f"only the distill recipe with opener='planned' writes them")
        messages = [dict(m) for m in record["messages"]]
        for i, turn in zip(replies, turns):
            messages[i]["content"] = turn["opener"]
        out.append({**record, "messages": messages,
                    "meta": {**record.get("meta", {}), "source": "planned openings of " + str(record.get("id"))}})
    return out


def data_size(tokenizer, records: Sequence[dict], max_tokens: int = 512) -> dict:
    """{conversations, replies, supervised (assistant tokens the loss sees, rendered as finetuning renders)}."""
    from kit.training.finetune import render_examples

    rows, _ = render_examples(tokenizer, records, max_tokens)
    return {"conversations": len(records), "replies": sum(m["role"] == "assistant" for r in records for m in r["messages"]),
            "supervised": sum(sum(mask) for _, mask in rows)}


def width_at(k: int, n: int, more: int) -> tuple[float, float]:
    """(width of the 95% Wilson interval of k of n, its width at the same rate over `more` items): what asking
    more probes would do to an interval, before asking them."""
    from kit.stats import wilson

    lo, hi = wilson(k, n)
    lo_more, hi_more = wilson(round(k / n * more) if n else 0, more)
    return hi - lo, hi_more - lo_more


def drift_bars(drift: dict[str, tuple[float, float, float]], title: str | None = None):
    """One bar per student (name -> (KL per token, 95% low, 95% high)) of the drift on the base model's own
    answers: how far each moved from what the base model would have said (0 for an unchanged model)."""
    import matplotlib.pyplot as plt

    names = list(drift)[::-1]
    kl = [drift[n][0] for n in names]
    errors = [[drift[n][0] - drift[n][1] for n in names], [drift[n][2] - drift[n][0] for n in names]]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.3))
    bars = ax.barh(names, kl, color="#C44E52", xerr=errors, error_kw={"ecolor": "#333333", "capsize": 3})
    top = max([drift[n][2] for n in names], default=1.0)
    for bar, n in zip(bars, names):
        ax.text(drift[n][2] + 0.02 * top, bar.get_y() + bar.get_height() / 2, f"{drift[n][0]:.2f}", va="center",
                fontsize=8)
    ax.set_xlim(0, top * 1.2)
    ax.set_xlabel("KL(base || student), nats per token of the base model's own answers (whiskers: 95% interval)")
    ax.set_title(title or "drift: how far each student moved from the base model", fontsize=10)
    fig.tight_layout()
    return fig
