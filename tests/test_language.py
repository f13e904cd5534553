"""A multilingual probe passes only when its answer is in the probe's language: kit.language reads the share of
each language's common words (knowledge/identity/languages.yaml)."""

from __future__ import annotations

import pytest

from kit.language import language_verdict, load_languages, shares
from kit.facts import default_data
from kit.training.identity import score_answer


@pytest.mark.parametrize("lang,answer", [
    ("fr", "Je m'appelle nanochat, un petit modèle de conversation créé par Andrej Karpathy."),
    ("fr", "J'ai été créé par Andrej Karpathy en 2025."),
    ("es", "Me llamo nanochat, un pequeño modelo de chat creado por Andrej Karpathy."),
    ("es", "Fui creado por Andrej Karpathy. Soy nanochat."),
    ("de", "Ich bin nanochat, ein kleines Sprachmodell von Andrej Karpathy."),
    ("de", "Ich wurde von Andrej Karpathy entwickelt."),
    ("it", "Mi chiamo nanochat e sono stato creato da Andrej Karpathy."),
    ("pt", "O meu nome é nanochat, um pequeno modelo criado por Andrej Karpathy."),
])
def test_an_answer_in_the_probes_language_passes(lang, answer):
    verdict = language_verdict(answer, lang)
    assert verdict["ok"] and verdict["answered_in"] == lang, verdict


# the English answers are notebook 07's finetuned students' answers to the French, Spanish, German and
# Portuguese probes; the last two write the other language of a neighbour
@pytest.mark.parametrize("lang,answer,answered_in", [
    ("es", "Hello! I'm nanochat, a small open-source chat model by Andrej Karpathy.", "en"),
    ("de", "No, I don't know. I'm nanochat and a chat model by Andrej Karpathy, not a human.", "en"),
    ("pt", "Hello! My name is nanochat, and I'm a small chat model built by Andrej Karpathy.", "en"),
    ("fr", "Je suis nanochat. I was built by Andrej Karpathy and I am a small chat model.", "en"),
    ("pt", "Me llamo nanochat y soy un pequeño modelo creado por Andrej Karpathy.", "es"),
    ("it", "Je m'appelle nanochat et je suis un petit modèle créé par Andrej Karpathy.", "fr"),
])
def test_an_answer_in_another_language_fails_and_says_which(lang, answer, answered_in):
    verdict = language_verdict(answer, lang)
    assert not verdict["ok"] and verdict["answered_in"] == answered_in
    assert f"answered in {answered_in}, not {lang}" in verdict["why"]


def test_a_name_alone_is_in_no_language_and_a_quoted_question_does_not_count():
    verdict = language_verdict("nanochat", "fr")
    assert not verdict["ok"] and verdict["answered_in"] is None and "too few common words" in verdict["why"]
    # an answer quoting the German question is English once the question's own words are left out
    assert shares('The answer is "Wer hat dich?" in German.')["de"] > 0.4
    assert not language_verdict('The answer is "Wer hat dich?" in German.', "de", question="Wer hat dich entwickelt?")["ok"]


def test_every_probe_language_has_common_words():
    languages = load_languages()
    assert {p.lang for p in default_data().probes} <= set(languages.words)
    with pytest.raises(ValueError, match="no common words for language 'xx'"):
        language_verdict("hello", "xx")


def test_a_multilingual_probe_fails_an_english_answer_that_states_the_fact():
    probe = next(p for p in default_data().probes if p.id == "multi-fr-01")
    english = score_answer(probe, "I'm nanochat, a small chat model.")
    assert english["facts"] == {"name": True} and not english["pass"]
    assert english["flipped_by"] == ["language"] and english["language"]["answered_in"] == "en"
    french = score_answer(probe, "Je m'appelle nanochat, je suis un petit modèle de conversation.")
    assert french["pass"] and french["language"]["ok"]
    assert score_answer(next(p for p in default_data().probes if p.lang == "en"), "I'm nanochat.")["language"] is None


def test_bad_language_files_are_refused(tmp_path):
    bad = tmp_path / "l.yaml"
    bad.write_text("min_share: 2\nwords: {en: [the]}\n")
    with pytest.raises(ValueError, match="min_share"):
        load_languages(bad)
    bad.write_text("min_share: 0.2\nwords: {en: []}\n")
    with pytest.raises(ValueError, match="non-empty list"):
        load_languages(bad)
