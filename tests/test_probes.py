"""kit.training.probes: held-out prompts, and traits that tell a right answer from the right format."""

from __future__ import annotations

import matplotlib

from kit.training.probes import Probe, compare, draw_probes, trait_bars, trait_counts, traits, verdict
from kit.training.tasks import default_mixture

matplotlib.use("Agg")


def test_probes_are_held_out_and_know_their_answers():
    mixture = list(default_mixture(None, seed=0, size=200))
    probes = draw_probes(mixture, per_task=5, identity=3)
    seen = {m["content"] for r in mixture for m in r["messages"] if m["role"] == "user"}
    assert not {p.prompt for p in probes} & seen
    assert [sum(p.task == t for p in probes) for t in ("spelling", "spelling_bee", "arithmetic", "identity")] == [5, 5, 5, 3]
    spell = next(p for p in probes if p.task == "spelling")
    word = spell.prompt.split(": ")[1]
    assert spell.expected == f"{word}:{','.join(word)}"
    assert draw_probes(mixture, per_task=1, identity=0)[-1].task != "identity"


def _sample(reply: str, calls: int = 0) -> dict:
    return {"prompt": "", "reply": reply, "calls": [{"expression": "1+1", "output": "2"}] * calls}


def test_the_format_is_counted_apart_from_the_right_number():
    problem = Probe("arithmetic", "A book has 120 pages. Ava reads 10 pages a day. How many days?", "12")
    right = traits(problem, _sample("It takes <|python_start|>120/10<|python_end|>...\n#### 12", calls=1))
    wrong = traits(problem, _sample("It takes 200 days.\n#### 200"))
    assert right["a #### line (format only)"] and right["#### with the right number"]
    assert wrong["a #### line (format only)"] and not wrong["#### with the right number"]
    assert right["a call the calculator ran"] and not wrong["a call the calculator ran"]
    assert "says its name" not in right and "spells the word right" not in right


def test_identity_and_spelling_traits():
    name = Probe("identity", "Could you tell me your name?", "name")
    assert traits(name, _sample("I am nanochat, a small chat model."))["says its name"]
    assert not traits(name, _sample("I'll spell 'l'."))["says its name"]
    spell = Probe("spelling", "Spell the word: garden", "garden:g,a,r,d,e,n")
    assert traits(spell, _sample("garden:g,a,r,d,e,n"))["spells the word right"]
    assert not traits(spell, _sample("garden:g,a,r,d,e"))["spells the word right"]


def test_counts_have_the_n_of_the_probes_a_trait_applies_to():
    probes = [Probe("spelling", "Spell the word: ab", "ab:a,b"), Probe("arithmetic", "2+2?", "4"),
              Probe("spelling_bee", "How many a in ab?", "1")]
    counts = trait_counts(probes, [_sample("ab:a,b"), _sample("#### 4"), _sample("#### 2")])
    assert counts["spells the word right"] == (1, 1)
    assert counts["#### with the right number"] == (1, 2) and counts["a #### line (format only)"] == (2, 2)
    assert counts["a loop"] == (0, 3) and "says its name" not in counts


def test_a_difference_inside_the_intervals_is_a_tie():
    assert verdict((2, 4), (3, 4), ("mid", "sft")) == "tie"
    assert verdict((0, 40), (30, 40), ("mid", "sft")) == "sft higher"
    table = compare({"mid": {"a loop": (3, 4)}, "sft": {"a loop": (2, 4)}})
    assert table.loc["a loop", "verdict"] == "tie" and "95% CI" in table.loc["a loop", "mid"]


def test_trait_bars_draw_every_run():
    fig = trait_bars({"mid": {"a loop": (3, 4), "spells the word right": (0, 2)},
                      "sft": {"a loop": (1, 4), "spells the word right": (1, 2)}})
    assert len(fig.axes[0].patches) == 4
