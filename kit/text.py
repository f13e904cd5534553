"""How the kit reads prose, one definition each: where a sentence ends and what a number looks like.

The content rules, the truth check, the facts screen, the memory benchmark and the forgetting check all
cut replies into sentences or pick numbers out of them. Each wrote its own pattern, and they drifted
apart. Here is each once; a reader that needs another on purpose builds it from these parts, and the
name says what differs.
"""

from __future__ import annotations

import re

_ENDS = r"[.!?]"  # the marks that end a sentence
_CLOSERS = r"[\"')\]]"  # quotes and brackets after them, still inside the sentence

# A sentence ends at a run of end marks and the closers after them, before a space or the text's end.
SENTENCE_END = re.compile(rf"{_ENDS}+{_CLOSERS}*(?=\s|$)")
# The text ends a sentence (nothing after the closers).
ENDS_SENTENCE = re.compile(rf"{_ENDS}+{_CLOSERS}*$")
# Where the content rules look for a sentence said twice: the space after an end mark (closers not
# skipped), and every line break (a line is a sentence of its own).
SENTENCE_OR_LINE_BREAK = re.compile(rf"(?<={_ENDS})\s+|\n+")
# A statement ends also at ; and : (the facts screen reads "Not Qwen; I am nanochat" as two).
STATEMENT_END = re.compile(r"[.!?;:]+(?=\s|$)|\n")

# Numbers as they are written: 1234 and 12.5, or thousands grouped by commas (1,234 and 1,234.50).
PLAIN_NUMBER = r"\d+(?:\.\d+)?"
GROUPED_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?"
NUMBER = rf"{GROUPED_NUMBER}|{PLAIN_NUMBER}"  # grouped first, so 1,234 is one number
# Digit groups joined by any . or , (3.11.7, 1,2): what the truth check compares, as written.
DIGIT_GROUPS = r"\d+(?:[.,]\d+)*"


def number_value(text: str) -> float:
    """A number matched by one of these patterns as a float (its grouping commas dropped)."""
    return float(text.replace(",", ""))
