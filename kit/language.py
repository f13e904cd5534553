"""Which language is an answer in? A share of common words per language (knowledge/identity/languages.yaml).

A multilingual identity probe ("Comment tu t'appelles ?") checks that the answer states the name, and the name
is the same in every language: "I'm nanochat" would pass it in English. The probe asks in French, so the
answer must be in French too. A 135M model's answers are short and full of names (nanochat, Andrej Karpathy),
so a character-level detector has little to go on; the common words of each language (articles, pronouns,
"suis", "llamo", "creato") do, and a reader can check the verdict by counting them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from kit import paths

LANGUAGES_FILE = "languages.yaml"
_WORD = re.compile(r"[^\W\d_]+")


@dataclass(frozen=True)
class Languages:
    words: dict[str, frozenset[str]]
    min_share: float


def load_languages(path: str | Path | None = None) -> Languages:
    """The common words per language and the minimum share (knowledge/identity/languages.yaml, or `path`)."""
    path = paths.resolve(path) if path is not None else paths.knowledge_dir() / "identity" / LANGUAGES_FILE
    data = paths.read_yaml(path, "the common words per language")
    words = data.get("words") if isinstance(data, dict) else None
    share = data.get("min_share") if isinstance(data, dict) else None
    if not isinstance(words, dict) or not words or not all(isinstance(w, list) and w for w in words.values()):
        raise ValueError(f"{path}: expected 'words', a mapping of language code to a non-empty list of words")
    if not isinstance(share, (int, float)) or not 0 < share < 1:
        raise ValueError(f"{path}: min_share must be a number between 0 and 1")
    return Languages({lang: frozenset(str(w).lower() for w in ws) for lang, ws in words.items()}, float(share))


@lru_cache(maxsize=1)
def default_languages() -> Languages:
    return load_languages()


def words_of(text: str) -> list[str]:
    """Lowercase words, split at anything not a letter ("m'appelle" is "m", "appelle")."""
    return [w.lower() for w in _WORD.findall(text.replace("’", "'"))]


def shares(text: str, languages: Languages | None = None, question: str = "") -> dict[str, float]:
    """Per language, the share of the text's words that are among its common words; the question's own words
    are left out (an answer quoting "Wer hat dich?" is not German for it)."""
    languages = languages or default_languages()
    asked = set(words_of(question))
    words = [w for w in words_of(text) if w not in asked]
    return {lang: (sum(w in common for w in words) / len(words) if words else 0.0)
            for lang, common in languages.words.items()}


def language_verdict(text: str, lang: str, languages: Languages | None = None, question: str = "") -> dict:
    """Is `text` in language `lang`? Its common words are at least `min_share` of the text's words and no
    other language's are more. Returns {lang, ok, answered_in (the language with the most, or None when
    none reaches the minimum), share (of `lang`), shares, why}. Words of `question` are not counted."""
    languages = languages or default_languages()
    if lang not in languages.words:
        raise ValueError(f"no common words for language {lang!r} (languages: {', '.join(languages.words)})")
    found = shares(text, languages, question)
    top = max(found, key=lambda k: (found[k], k == lang))
    answered_in = top if found[top] >= languages.min_share else None
    ok = found[lang] >= languages.min_share and found[lang] >= found[top]
    shown = ", ".join(f"{k} {v:.2f}" for k, v in sorted(found.items(), key=lambda kv: -kv[1])[:3])
    why = "" if ok else (f"answered in {answered_in}, not {lang}" if answered_in else
                         f"too few common words of any language to say (need {languages.min_share:.2f} of "
                         f"{len(words_of(text))} words)") + f" (shares of common words: {shown})"
    return {"lang": lang, "ok": ok, "answered_in": answered_in, "share": found[lang], "shares": found, "why": why}
