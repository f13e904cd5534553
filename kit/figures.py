"""The course's pictures that are neither quality nor memory plots: one function per concept, each
returning a matplotlib Figure, so a notebook stores it as a PNG that GitHub shows (the HTML token view
loses its colours there: `token_figure` is its picture twin).

    token_figure      tokens as boxes, green where supervised (mask 1), specials outlined
    shift_figure      input / target / loss-mask rows: the mask that counts is the target's
    packing_grid      packed rows as a grid, one colour per conversation, padding and dropped tokens marked
    generation_funnel asked -> accepted first time / after a re-ask / rejected, by rule
    mixture_supervision  tokens per source, supervised and not
    loss_curves       loss per step with ln(V), tokens seen on the top axis, validation bits per byte

`show(fig, path)` saves a figure and displays it as a PNG in a notebook.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from kit.paths import save_figure
from kit.stats import gain_sentence, met, paired_gain, rate, wilson
from kit.tokens import packing
from kit.training.curves import loss_figure
from kit.truth import content_words, load_truth, stem

SUPERVISED, UNSUPERVISED, SPECIAL_EDGE, PAD = "#7BC47F", "#DDDDDD", "#333333", "#FFFFFF"


def _plt():
    import matplotlib.pyplot as plt

    return plt


def show(fig, path: str | Path | None = None):
    """In a notebook: store `fig` as one image/png output (saved to `path` too when given) and close it,
    so the figure is neither shown twice nor kept as text."""
    import io

    from IPython.display import Image, display

    if path is not None:
        save_figure(fig, path, bbox_inches="tight")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    display(Image(data=buffer.getvalue(), format="png"))


def _label(tok, token_id: int) -> str:
    from kit.tokens.view import visible

    return visible(tok.token_text(token_id)) or ""


def token_figure(tok, rendered, start: int = 0, stop: int | None = None, title: str | None = None,
                 width: int = 90):
    """Tokens start..stop as boxes wrapped into lines of about `width` characters: green when the
    token is supervised (mask 1), grey when not, special tokens outlined in black."""
    plt = _plt()
    stop = len(rendered.ids) if stop is None else min(stop, len(rendered.ids))
    placed, line, col = [], 0, 0
    for i in range(start, stop):
        text = _label(tok, rendered.ids[i])
        size = max(2, len(text)) + 1
        if col and col + size > width:
            line, col = line + 1, 0
        placed.append((i, text, line, col, size - 0.4))
        col += size
    lines = line + 1
    fig, ax = plt.subplots(figsize=(width * 0.095, 0.34 * lines + 0.7))
    for i, text, row, x, w in placed:
        special = tok.is_special(rendered.ids[i])
        ax.add_patch(plt.Rectangle((x, -row - 0.8), w, 0.7, facecolor=SUPERVISED if rendered.mask[i] else UNSUPERVISED,
                                   edgecolor=SPECIAL_EDGE if special else "none", lw=1.2))
        ax.text(x + w / 2, -row - 0.45, text, ha="center", va="center", fontsize=7, family="monospace")
    ax.set_xlim(-0.5, width + 0.5)
    ax.set_ylim(-lines - 0.1, 0.1)
    ax.axis("off")
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=SUPERVISED), plt.Rectangle((0, 0), 1, 1, color=UNSUPERVISED),
                       plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor=SPECIAL_EDGE)],
              labels=["mask 1: supervised", "mask 0", "special token"], loc="lower center",
              bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8, frameon=False)
    shown = f"tokens {start}-{stop - 1} of {len(rendered.ids)}"
    ax.set_title(f"{title}: {shown}" if title else shown, fontsize=9, pad=18)
    fig.tight_layout()
    return fig


def shift_figure(tok, rendered, start: int, stop: int, title: str | None = None):
    """Positions start..stop-1 as three rows: the input token, the target (the next token) and the
    target's mask, which is the one the SFT loss uses. Green cells are targets with loss."""
    plt = _plt()
    stop = min(stop, len(rendered.ids) - 1)
    positions = range(start, stop)
    fig, ax = plt.subplots(figsize=(1.05 * len(positions) + 2.2, 2.5))
    rows = (("input  ids[t]", lambda t: _label(tok, rendered.ids[t]), lambda t: rendered.mask[t]),
            ("target  ids[t+1]", lambda t: _label(tok, rendered.ids[t + 1]), lambda t: rendered.mask[t + 1]),
            ("loss mask  mask[t+1]", lambda t: str(rendered.mask[t + 1]), lambda t: rendered.mask[t + 1]))
    for r, (_, text, on) in enumerate(rows):
        for c, t in enumerate(positions):
            ax.add_patch(plt.Rectangle((c, -r - 0.9), 0.94, 0.8, facecolor=SUPERVISED if on(t) else UNSUPERVISED,
                                       edgecolor=SPECIAL_EDGE if r < 2 and tok.is_special(
                                           rendered.ids[t + r]) else "none"))
            ax.text(c + 0.47, -r - 0.5, text(t), ha="center", va="center", fontsize=7, family="monospace")
    for c, t in enumerate(positions):
        ax.annotate("", xy=(c + 0.3, -1.1), xytext=(c + 1.4 if c + 1 < len(positions) else c + 0.9, -0.9),
                    arrowprops={"arrowstyle": "->", "color": "#888888", "lw": 0.6})
        ax.text(c + 0.47, 0.15, str(t), ha="center", fontsize=7, color="#555555")
    ax.set_yticks([-r - 0.5 for r in range(3)], [name for name, _, _ in rows], fontsize=8)
    ax.set_xticks([])
    ax.set_xlim(0, len(positions))
    ax.set_ylim(-3.05, 0.45)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(title or "position t reads ids[t] and is scored on ids[t+1] with mask[t+1]", fontsize=9)
    fig.tight_layout()
    return fig


def packing_layout(lengths: Sequence[int], row_len: int, strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """(owner, dropped): owner[r, j] is the conversation whose token sits in row r, slot j (-1 for
    padding); dropped[k] is how many tokens of conversation k no row holds. The layout depends only
    on the lengths, so kit.tokens.packing packs stand-ins whose tokens after the BOS name their conversation.
    A lone BOS (a conversation cropped to one token) names none: such slots go to the conversations
    no other slot holds, shortest first, which is the one cropped."""
    stand_ins = [([0] + [k + 1] * (n - 1), [0] * n) for k, n in enumerate(lengths)]
    packed = packing.pack_rows(stand_ins, row_len, strategy=strategy, pad_id=-1, bos_id=0)
    ids = np.where(packed.pad, -1, packed.ids)
    owner = np.full(ids.shape, -1)
    lone = []
    for r in range(len(ids)):
        for j in range(row_len):
            if ids[r, j] > 0:
                owner[r, j] = ids[r, j] - 1
            elif ids[r, j] == 0:
                following = ids[r, j + 1] if j + 1 < row_len else -1
                if following > 0:
                    owner[r, j] = following - 1
                else:
                    lone.append((r, j))
    unplaced = sorted(set(range(len(lengths))) - set(owner[owner >= 0].tolist()), key=lambda k: (lengths[k], k))
    for (r, j), k in zip(lone, unplaced):
        owner[r, j] = k
    kept = Counter(owner[owner >= 0].tolist())
    dropped = np.array([n - kept.get(k, 0) for k, n in enumerate(lengths)], dtype=int)
    return owner, dropped


def packing_grid(sequences: Sequence[tuple[Sequence[int], Sequence[int]]], row_len: int,
                 strategies: Sequence[str] = packing.STRATEGIES, max_rows: int | None = None,
                 labels: bool | None = None, title: str | None = None):
    """One panel per strategy: each packed row as a line of cells, a colour per conversation in the
    row (darker where mask is 1), padding white and hatched, a red bar where a conversation was cut, and the
    tokens each row's cut conversations lost written at its right. `labels` writes B (a BOS) or the
    conversation number in each cell (default: when rows are short enough to read)."""
    plt = _plt()
    lengths = [len(ids) for ids, _ in sequences]
    masks = [list(mask) for _, mask in sequences]
    labels = row_len <= 40 if labels is None else labels
    layouts = [(s, *packing_layout(lengths, row_len, s)) for s in strategies]
    shown = [min(len(owner), max_rows or len(owner)) for _, owner, _ in layouts]
    cell = 0.32 if labels else max(0.03, min(0.32, 11 / row_len))
    fig, axes = plt.subplots(len(layouts), 1, squeeze=False,
                             figsize=(cell * row_len + 2.4, sum(0.3 * n + 0.6 for n in shown)),
                             gridspec_kw={"height_ratios": [n + 1.5 for n in shown]})
    palette = plt.get_cmap("tab10")
    for ax, (strategy, owner, dropped), n_rows in zip(axes[:, 0], layouts, shown):
        image = np.ones((n_rows, row_len, 3))
        for r in range(n_rows):
            at = Counter()
            order = list(dict.fromkeys(k for k in owner[r].tolist() if k >= 0))  # neighbours never share a colour
            for j in range(row_len):
                k = owner[r, j]
                if k < 0:
                    ax.add_patch(plt.Rectangle((j - 0.5, r - 0.5), 1, 1, facecolor="none", edgecolor="#BBBBBB",
                                               hatch="///", lw=0))
                    continue
                base = np.array(palette(order.index(k) % 10)[:3])
                supervised = masks[k][at[k]] if at[k] < len(masks[k]) else 0
                image[r, j] = base if supervised else 0.45 * base + 0.55
                if labels:
                    ax.text(j, r, "B" if at[k] == 0 else str(k + 1), ha="center", va="center", fontsize=7)
                at[k] += 1
            cut = [k for k in at if at[k] < lengths[k]]  # a conversation sits in one row only
            lost = sum(lengths[k] - at[k] for k in cut)
            for k in cut:
                end = int(np.nonzero(owner[r] == k)[0].max())
                ax.plot([end + 0.5, end + 0.5], [r - 0.5, r + 0.5], color="#D62728", lw=2.5)
            if lost:
                ax.text(row_len + 0.5, r, f"✂ {lost} dropped", va="center", fontsize=7, color="#D62728")
        ax.imshow(image, aspect="auto", interpolation="nearest", extent=(-0.5, row_len - 0.5, n_rows - 0.5, -0.5))
        more = f", first {n_rows} of {len(owner)} rows" if n_rows < len(owner) else ""
        ax.set_title(f"{strategy}: {len(owner)} rows of {row_len}, {int(dropped.sum())} tokens dropped, "
                     f"{int((owner == -1).sum())} padding{more}", fontsize=9, loc="left")
        ax.set_yticks(range(n_rows), [f"row {r}" for r in range(n_rows)], fontsize=7)
        ax.set_xticks([])
        ax.set_xlim(-0.5, row_len - 0.5)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def generation_funnel(asked: int, records: Sequence[dict], rejects: Sequence[dict], title: str | None = None):
    """How `asked` items ended: accepted on the first attempt, accepted after a re-ask, rejected (one
    bar per rule: an item that broke several rules counts under each), and not finished (asked but in
    neither file, e.g. after an API failure)."""
    plt = _plt()
    first = sum(1 for r in records if r.get("meta", {}).get("attempts", 1) == 1)
    reasked = len(records) - first
    rules = Counter(rule for r in rejects for rule in r.get("rules", []) or ["unknown"])
    bars = [("asked", asked, "#4C72B0"), ("accepted first time", first, "#55A868"),
            ("accepted after re-ask", reasked, "#8FD19E")]
    bars += [(f"rejected: {rule}", n, "#C44E52") for rule, n in rules.most_common()]
    unfinished = asked - len(records) - len(rejects)
    if unfinished > 0:
        bars.append(("not finished", unfinished, "#999999"))
    fig, ax = plt.subplots(figsize=(7, 0.42 * len(bars) + 1.2))
    names = [b[0] for b in bars][::-1]
    drawn = ax.barh(names, [b[1] for b in bars][::-1], color=[b[2] for b in bars][::-1])
    for bar, (_, n, _) in zip(drawn, bars[::-1]):
        ax.text(bar.get_width() + asked * 0.01 + 0.05, bar.get_y() + bar.get_height() / 2,
                f"{n} ({n / asked:.0%})" if asked else str(n), va="center", fontsize=8)
    ax.set_xlim(0, max(1, asked) * 1.2)
    ax.set_xlabel("conversations")
    ax.set_title(title or f"generation funnel: {len(records)} of {asked} accepted", fontsize=10)
    fig.tight_layout()
    return fig


def score_bars(passed: dict[str, tuple[int, int]], title: str | None = None):
    """One bar per run (name -> (probes passed, probes scored)), its share written beside it and its 95%
    Wilson interval drawn as a whisker: two bars whose whiskers overlap are not yet told apart."""
    plt = _plt()
    names = list(passed)[::-1]
    shares = [passed[n][0] / passed[n][1] if passed[n][1] else 0.0 for n in names]
    bounds = [wilson(*passed[n]) for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.2))
    errors = [[s - lo for s, (lo, _) in zip(shares, bounds)], [hi - s for s, (_, hi) in zip(shares, bounds)]]
    drawn = ax.barh(names, shares, color="#4C72B0", xerr=errors, error_kw={"ecolor": "#333333", "capsize": 3})
    for bar, n, (_, hi) in zip(drawn, names, bounds):
        k, total = passed[n]
        ax.text(hi + 0.01, bar.get_y() + bar.get_height() / 2, f"{k}/{total}", va="center", fontsize=8)
    ax.set_xlim(0, 1.15)
    ax.set_xlabel("identity score (share of probes passed; whiskers: 95% interval)")
    ax.set_title(title or "identity score", fontsize=10)
    fig.tight_layout()
    return fig


def mixture_supervision(by_source: dict[str, dict], title: str | None = None):
    """Tokens per source (a `file_stats(...)["by_source"]` mapping), split into supervised (mask 1)
    and not, with the supervised fraction written beside each bar."""
    plt = _plt()
    names = list(by_source)[::-1]
    supervised = [by_source[n]["supervised"] for n in names]
    other = [by_source[n]["tokens"] - by_source[n]["supervised"] for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.6))
    ax.barh(names, supervised, color=SUPERVISED, label="supervised (mask 1)")
    ax.barh(names, other, left=supervised, color=UNSUPERVISED, label="not supervised")
    for i, n in enumerate(names):
        s = by_source[n]
        ax.text(s["tokens"], i, f"  {s['supervised'] / s['tokens']:.0%} of {s['tokens']:,} ({s['conversations']} conv.)"
                if s["tokens"] else "  0 tokens", va="center", fontsize=8)
    ax.set_xlim(0, max([by_source[n]["tokens"] for n in names], default=1) * 1.45)
    ax.set_xlabel("tokens")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3 - 0.6 / max(1, len(names))), ncol=2, fontsize=8,
              frameon=False)
    ax.set_title(title or "task mixture: tokens per source and the share the SFT loss sees", fontsize=10)
    fig.tight_layout()
    return fig


def loss_curves(history: Sequence[dict], vocab_size: int, title: str | None = None):
    """kit.training.curves.loss_figure: train and validation loss per step with ln(V) and tokens seen,
    validation bits per byte beside them. `history` is kit.training.midtrain's (step, train_loss, tokens,
    val_loss, val_bpb)."""
    return loss_figure(history, title=title or "midtraining", vocab_size=vocab_size)


# ---- one generated item, accepted or rejected (notebooks 01 and 02) -------------------------------------


def item_meta(entry: dict) -> dict:
    """The meta of a generate_one / journal entry, accepted or rejected. A reject made before its first
    answer (an API error) has no `turns` and no attempts; its meta still names what the item drew."""
    if entry.get("status") == "accepted":
        return entry["record"].get("meta", {})
    return (entry.get("reject") or {}).get("meta") or {}


def distill_lines(entry: dict) -> list[str]:
    """What a distill item did, as lines: kept or rejected, per turn the candidates that passed and each
    one's failed checks, then the conversation (kept) or every reason (rejected)."""
    kept = entry.get("status") == "accepted"
    meta = item_meta(entry)
    lines = [f"=== distill item {entry['index']}: {'kept' if kept else 'rejected'}; topic: {meta.get('topic', '?')}"]
    turns = meta.get("turns") or []
    if not turns and not kept:
        lines.append("  rejected before its first answer: nothing was sampled")
    for t, turn in enumerate(turns):
        # each candidate as the model wrote it, the checks it failed so, and what the verifier kept of the chosen one
        written, as_written = turn.get("written") or [], turn.get("as_written") or []
        uncut = f" ({sum(not v for v in as_written)} of {len(as_written)} as written)" if as_written else ""
        lines.append(f"  turn {t + 1}: {turn['passed']} of {turn['candidates']} candidates passed after the cut{uncut}; "
                     f"failed checks per candidate after the cut: {[', '.join(v) or 'none' for v in turn['verdicts']]}")
        for j, text in enumerate(written):
            failed = ", ".join(as_written[j]) if j < len(as_written) else "?"
            chosen = "  (chosen)" if j == turn.get("chosen") else ""
            lines.append(f"    candidate {j + 1}{chosen}, as written: {text.strip()!r}; failed as written: {failed or 'none'}")
        if written and turn.get("chosen") is not None:
            cut = turn.get("cut") or {}
            why = "; ".join(r for rs in (cut.get("why") or {}).values() for r in rs)
            own = turn.get("model_sentences")
            lines.append(f"    kept of the chosen: {own} sentence(s) of the model's"
                         + (" (the planned opening alone)" if own == 0 else "")
                         + (f"; cut: {cut.get('sentences')}, because {why}" if cut else "; nothing cut"))
    if kept:
        lines += [f"  {m['role']:>9}: {m['content']}" for m in entry["record"]["messages"]]
    else:
        lines += [f"  {reason}" for reason in entry["reject"].get("reasons", [])]
    return lines


def topic_words_said(record: dict) -> tuple[list[str], list[str]]:
    """(said, unsaid): the content words of an item's planned topic that its conversation uses, and those
    it never uses, matched as the truth check matches words (kit.truth: stopwords out, first letters
    compared, "arithmetic" finds "arithmetically"). A rough first look at whether a well-formed
    conversation is about what was asked: the content rules check form, and a reply can pass them all
    while it answers nothing."""
    rules = load_truth()
    words = dict.fromkeys(content_words((record.get("meta") or {}).get("topic") or "", rules))
    text = " ".join(str(m.get("content", "")) for m in record.get("messages", []))
    stems = {stem(w, rules.stem_chars) for w in content_words(text, rules)}
    said = [w for w in words if stem(w, rules.stem_chars) in stems]
    return said, [w for w in words if w not in said]


QUESTION_STYLES = ("direct_questions", "curious_openers")
# words of an opener question that the assistant's name answers ("Who am I talking to?", "Are you GPT?"), and
# greetings: neither asks for anything beyond the introduction every distill answer opens with
NAME_ANSWERS = frozenset({"hi", "hey", "hello", "hiya", "yo", "talking", "gpt", "chatbot", "name", "story"})


def unanswered_opener(record: dict) -> tuple[str, list[str]] | None:
    """(opener, its words) when an item's opener asks a question of its own (an opener style of
    QUESTION_STYLES) and the first answer uses none of its content words, else None. A distill plan answers the
    topic's question put after the opener ("Can you help me code? Is this project open source?"), so such an
    opener is answered only by chance. Rough, like topic_words_said: an answer in other words ("built by" for
    "who made you") is flagged too, and an opener asking only what the name answers ("who are you?", "Are you
    GPT?", greetings aside: NAME_ANSWERS) never is."""
    meta = record.get("meta") or {}
    styles, openers = meta.get("first_message_categories") or [], meta.get("first_message_examples") or []
    messages = record.get("messages") or []
    if not styles or styles[0] not in QUESTION_STYLES or not openers or len(messages) < 2:
        return None
    if not str(messages[0].get("content", "")).startswith(openers[0]):
        return None  # the opener stood alone as a turn of its own, or was not used
    rules = load_truth()
    words = [w for w in content_words(openers[0], rules) if w.lower() not in NAME_ANSWERS]
    answer = {stem(w, rules.stem_chars) for w in content_words(str(messages[1].get("content", "")), rules)}
    if not words or any(stem(w, rules.stem_chars) in answer for w in words):
        return None
    return openers[0], words


def reject_rows(entries: Sequence[dict], reason_chars: int = 90, raw_chars: int = 80) -> list[tuple]:
    """(item, attempt, rules failed, first reason, raw reply) per attempt of every rejected entry; a reject
    with no attempt recorded (distill, or an API error before the first answer) gives one row of its own."""
    rows = []
    for e in entries:
        if e.get("status") != "rejected":
            continue
        reject = e["reject"]
        attempts = reject.get("attempts") or [{"rules": reject.get("rules", []), "reasons": reject.get("reasons", []),
                                               "raw": reject.get("raw", "")}]
        for k, a in enumerate(attempts):
            reasons = a.get("reasons") or ["-"]
            more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
            rows.append((e["index"], k + 1, ", ".join(a.get("rules", [])), reasons[0][:reason_chars] + more,
                         (a.get("raw") or "")[:raw_chars]))
    return rows


def cost_per_kept(kept: int, asked: int, history: Sequence[dict]) -> str:
    """One line: what a kept conversation cost in requests and seconds, over every call of a generation's
    manifest history that sent requests (a call served from the reply cache sent none)."""
    paid = [h for h in history if h.get("requests")]
    requests, seconds = sum(h["requests"] for h in paid), sum(h.get("elapsed_s", 0) for h in paid)
    head = f"{kept} conversations kept of {asked} asked"
    if not paid:
        return f"{head}; every reply came from the reply cache"
    if not kept:
        return f"{head}; {requests} requests in {seconds:.0f} s kept nothing"
    return (f"{head}; {requests} requests in {seconds:.0f} s: {requests / kept:.1f} requests and "
            f"{seconds / kept:.1f} s per kept conversation")


def counts_caveat(n: int, seeds: int = 1) -> str:
    """What counts over `n` prompts and `seeds` seeds can tell apart: the 95% interval around half of them."""
    half = n // 2
    lo, hi = wilson(half, n)
    return (f"These counts rest on **{n} prompts and {seeds} seed{'s' if seeds != 1 else ''}**: a count of {half} of "
            f"{n} has a 95% interval of {100 * lo:.0f}-{100 * hi:.0f}%, so a difference of one or two replies between "
            f"the columns is noise, not a finding.")
