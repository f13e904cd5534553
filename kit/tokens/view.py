"""Seeing tokens and the loss mask: an HTML view for notebooks, a table, a terminal view, file stats.

Display only: everything here reads a `kit.tokens.render.Rendered`, nothing feeds back into the core.
Whitespace is made visible (␣ for a space, ↵ for a newline, ⇥ for a tab) because a token boundary
inside whitespace is exactly what one needs to see; hovering a token shows its position, id,
role/part, mask, and the target it is trained to predict (the next token, with *its* mask).
`python -m kit tokens` (kit.commands.tokens) shows the terminal views.
"""

from __future__ import annotations

import html
import os
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Iterable

from kit.tokens.render import Rendered, render_batch, render_conversation, token_table

WHITESPACE = str.maketrans({" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"})

TABLE_COLUMNS = ["idx", "token", "id", "mask", "role", "part", "target", "target_mask"]


def visible(text: str | None) -> str | None:
    """Token text with whitespace made visible."""
    return None if text is None else text.translate(WHITESPACE)


# ---- notebooks --------------------------------------------------------------------------------

# Inline styles, not a <style> block: JupyterLab strips <style> from outputs of untrusted notebooks
# (any notebook executed elsewhere), and the view must look the same there.
_BOX = "padding:1px 2px;margin:0 1px;border-radius:3px;white-space:pre;border:1px solid;"
_STYLE = {  # (supervised, special) -> style
    (True, False): _BOX + "background:#c7f0c2;border-color:#8fd18a;color:#1f2328",
    (False, False): _BOX + "background:#eceff1;border-color:#d0d7de;color:#57606a",
    (True, True): _BOX + "background:#6cc96a;border-color:#1f2328;color:#0b3d0a;font-weight:600",
    (False, True): _BOX + "background:#9aa5b1;border-color:#1f2328;color:#ffffff;font-weight:600",
}
_FRAME = "font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px;line-height:2.1;color:#1f2328"
_LEGEND = "font-family:system-ui,sans-serif;font-size:12px;margin-bottom:6px;line-height:1.8"
_WARN = "font-family:system-ui,sans-serif;color:#b42318;font-size:12px"
_WS = "color:#8c959f"


def _token_html(text: str) -> str:
    shown = html.escape(visible(text))
    for mark in "␣↵⇥␍":
        shown = shown.replace(mark, f'<span class="ws" style="{_WS}">{mark}</span>')
    return shown


def _chip(classes: str, supervised: bool, special: bool, inner: str, title: str = "") -> str:
    hover = f' title="{html.escape(title)}"' if title else ""
    return f'<span class="{classes}"{hover} style="{_STYLE[supervised, special]}">{inner}</span>'


def html_view(tokenizer, rendered: Rendered, title: str | None = None) -> str:
    """An HTML fragment: tokens coloured green where supervised (mask 1), grey where not, specials
    outlined and bold; a line break after each newline token; hover shows the details."""
    rows = token_table(tokenizer, rendered)
    n_sup = sum(rendered.mask)
    parts = [f'<div class="kit-tokens" style="{_FRAME}">']
    if title:
        parts.append(f"<div><b>{html.escape(title)}</b></div>")
    summary = f"{len(rows)} tokens, {n_sup} supervised ({100 * n_sup / max(len(rows), 1):.1f}%)"
    if rendered.truncated:
        summary += f' <span class="cut" style="{_WARN}">truncated: {rendered.n_truncated} tokens dropped</span>'
    if rendered.all_masked:
        summary += f' <span class="cut" style="{_WARN}">nothing supervised: this conversation teaches nothing under an SFT mask</span>'
    legend = (_chip("t sup", True, False, "supervised (mask 1)") + " " + _chip("t unsup", False, False, "not supervised (mask 0)")
              + " " + _chip("t sup special", True, True, "special (mask 1)") + " " + _chip("t unsup special", False, True, "special (mask 0)"))
    parts.append(f'<div class="legend" style="{_LEGEND}">{legend} &nbsp;{summary} · hover a token for its target</div><div>')
    for row in rows:
        special = tokenizer.is_special(row["id"])
        classes = "t " + ("sup" if row["mask"] else "unsup") + (" special" if special else "")
        target = "none (last position)" if row["target_id"] is None else f"{visible(row['target'])!r} (id {row['target_id']}, mask {row['target_mask']})"
        hover = f"idx {row['idx']} · id {row['id']} · {row['role']}/{row['part']} · mask {row['mask']}\npredicts → {target}"
        # <wbr>: whitespace is drawn as ␣, so without it a line could never wrap between tokens
        parts.append(_chip(classes, bool(row["mask"]), special, _token_html(row["token"]), hover) + "<wbr>")
        if row["token"].endswith("\n") and not special:
            parts.append("<br>")
    parts.append("</div></div>")
    return "".join(parts)


class TokenView:
    """What a notebook cell shows for a rendered conversation; `.table()` is the DataFrame."""

    def __init__(self, tokenizer, rendered: Rendered, title: str | None = None):
        self.tokenizer, self.rendered, self.title = tokenizer, rendered, title

    def _repr_html_(self) -> str:
        return html_view(self.tokenizer, self.rendered, self.title)

    def table(self):
        return dataframe(self.tokenizer, self.rendered)

    def save(self, path: str | os.PathLike) -> Path:
        """A standalone HTML page with the view."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        title = html.escape(self.title or "tokens")
        path.write_text(f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head><body>{self._repr_html_()}</body></html>\n', encoding="utf-8")
        return path

    def __repr__(self) -> str:
        return terminal_line(self.tokenizer, self.rendered, color=False)


def view(tokenizer, conversation, max_tokens: int | None = None, title: str | None = None) -> TokenView:
    """Render a conversation (or take a Rendered) and wrap it for display."""
    rendered = conversation if isinstance(conversation, Rendered) else render_conversation(tokenizer, conversation, max_tokens)
    return TokenView(tokenizer, rendered, title)


def dataframe(tokenizer, rendered: Rendered):
    """Seed 003's table, one row per position, plus role/part and the shifted target with its mask."""
    import pandas as pd

    rows = token_table(tokenizer, rendered)
    for row in rows:
        row["token"], row["target"] = visible(row["token"]), visible(row["target"])
    frame = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    frame["target_mask"] = frame["target_mask"].astype("Int64")  # the last position has no target
    return frame.set_index("idx")


def region_table(tokenizer, rendered: Rendered):
    """The conversation as regions (seed 003's symbolic stream): each special token, and each run of
    text between two specials decoded whole, with role, part, mask and token count. Only the token
    counts depend on the vocabulary; the rest is fixed by the rendering rules."""
    import pandas as pd

    rows = []
    for span in rendered.spans:
        masks = set(rendered.mask[span.start : span.end])
        rows.append({
            "text": visible(tokenizer.decode(rendered.ids[span.start : span.end])),
            "role": span.role,
            "part": span.part,
            "mask": masks.pop() if len(masks) == 1 else "mixed",
            "tokens": span.end - span.start,
        })
    return pd.DataFrame(rows, columns=["text", "role", "part", "mask", "tokens"]).rename_axis("region")


# ---- terminals --------------------------------------------------------------------------------

_GREEN, _GREY, _BOLD, _RESET = "\033[42;30m", "\033[47;30m", "\033[1m", "\033[0m"


def terminal_line(tokenizer, rendered: Rendered, color: bool = True) -> str:
    """Tokens one after another; with color, supervised on green and the rest on grey, specials bold.
    Without color, supervised tokens are wrapped in [ ] and the rest in ( )."""
    out = []
    for token_id, mask in zip(rendered.ids, rendered.mask):
        text = visible(tokenizer.token_text(token_id))
        if color:
            style = (_GREEN if mask else _GREY) + (_BOLD if tokenizer.is_special(token_id) else "")
            out.append(f"{style}{text}{_RESET}")
        else:
            out.append(f"[{text}]" if mask else f"({text})")
        if text.endswith("↵"):
            out.append("\n")
    return "".join(out)


def terminal_legend() -> str:
    """What `terminal_line`'s colours mean."""
    return f"{_GREEN}supervised{_RESET} {_GREY}not supervised{_RESET} {_BOLD}special{_RESET}"


def terminal_regions(tokenizer, rendered: Rendered) -> str:
    """`region_table` as aligned text, the text column last and left-aligned so it reads as a stream."""
    regions = region_table(tokenizer, rendered)
    lines = [f"{'region':>6}  mask  {'role/part':<24}  {'tokens':>6}  text"]
    lines += [f"{i:>6}  {r['mask']:>4}  {r['role'] + '/' + r['part']:<24}  {r['tokens']:>6}  {r['text']}" for i, r in regions.iterrows()]
    return "\n".join(lines)


def terminal_table(tokenizer, rendered: Rendered) -> str:
    rows = token_table(tokenizer, rendered)
    header = ["idx", "token", "id", "mask", "role/part", "target", "t_mask"]
    body = [
        [str(r["idx"]), repr(r["token"]), str(r["id"]), str(r["mask"]), f"{r['role']}/{r['part']}",
         "" if r["target"] is None else repr(r["target"]), "" if r["target_mask"] is None else str(r["target_mask"])]
        for r in rows
    ]
    widths = [max(len(h), *(len(b[k]) for b in body)) for k, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


# ---- whole files ------------------------------------------------------------------------------


def source_of(record: dict) -> str:
    meta = record.get("meta") or {}
    named = meta.get("source") or meta.get("task")
    if named:
        return str(named)
    # kit.generation.generate's records carry their recipe instead
    return f"generated ({meta['recipe']})" if meta.get("recipe") else "unknown"


def file_stats(tokenizer, records: Iterable[dict], max_tokens: int | None = None) -> dict:
    """Tokens per conversation, supervised fraction overall and per source (meta "source", else
    "task", else "generated (<recipe>)" for kit.generation.generate's records, else "unknown"), truncation and
    all-masked counts. Renders on every core."""
    records = list(records)
    batch = render_batch(tokenizer, records, max_tokens=max_tokens)
    lengths = batch.lengths.tolist()
    by_source: dict[str, dict] = defaultdict(lambda: {"conversations": 0, "tokens": 0, "supervised": 0})
    for record, length, supervised in zip(records, lengths, batch.supervised.tolist()):
        entry = by_source[source_of(record)]
        entry["conversations"] += 1
        entry["tokens"] += length
        entry["supervised"] += supervised
    for entry in by_source.values():
        entry["supervised_fraction"] = round(entry["supervised"] / entry["tokens"], 4) if entry["tokens"] else 0.0
    tokens, supervised = sum(lengths), sum(e["supervised"] for e in by_source.values())
    return {
        "conversations": len(records),
        "tokens": tokens,
        "supervised": supervised,
        "supervised_fraction": round(supervised / tokens, 4) if tokens else 0.0,
        "tokens_per_conversation": _summary(lengths),
        "max_tokens": max_tokens,
        "truncated": int((batch.n_truncated > 0).sum()),
        "truncated_tokens": int(batch.n_truncated.sum()),
        "all_masked": int(batch.all_masked.sum()),
        "by_source": dict(sorted(by_source.items())),
    }


def _summary(values: list[int]) -> dict:
    if not values:
        return {"min": 0, "mean": 0.0, "median": 0.0, "p95": 0, "max": 0}
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "mean": round(statistics.fmean(ordered), 1),
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max": ordered[-1],
    }


def format_stats(stats: dict) -> str:
    t = stats["tokens_per_conversation"]
    lines = [
        f"conversations      {stats['conversations']}",
        f"tokens             {stats['tokens']}  (per conversation: min {t['min']}, median {t['median']}, mean {t['mean']}, p95 {t['p95']}, max {t['max']})",
        f"supervised         {stats['supervised']}  ({100 * stats['supervised_fraction']:.1f}% of tokens)",
        f"truncated          {stats['truncated']} conversations, {stats['truncated_tokens']} tokens dropped (max_tokens={stats['max_tokens']})",
        f"nothing supervised {stats['all_masked']} conversations",
        "by source:",
    ]
    width = max((len(s) for s in stats["by_source"]), default=0)
    for source, e in stats["by_source"].items():
        lines.append(f"  {source:<{width}}  {e['conversations']:>7} conv  {e['tokens']:>9} tokens  {100 * e['supervised_fraction']:5.1f}% supervised")
    return "\n".join(lines)
