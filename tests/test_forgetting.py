"""Forgetting on text no training author wrote: drift on the base model's own answers (an unchanged model
drifts 0, a changed one more), and questions whose answers the kit computes, scored by the number stated."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch

from tiny_lm import make_tiny_model
from kit.training import forgetting
from kit.training.forgetting import load_questions, numbers_in, states_number


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


# ---------------------------------------------------------------- the questions

def test_every_answer_is_computed_and_not_given_away_by_the_question():
    questions = load_questions()
    assert len(questions) >= 12 and {q.kind for q in questions} == set(forgetting.KINDS)
    tip = next(q for q in questions if q.question == "What is a 15 percent tip on a $64 bill?")
    assert tip.answer == 9.6 and forgetting._shown(tip) == "9.60"
    assert next(q for q in questions if q.id == "strawberry-r").answer == 3
    for q in questions:  # a model that repeats the question must not be right by accident
        assert not states_number(q.question, q.answer, q.decimals), q.id


@pytest.mark.parametrize("text,value,decimals,right", [
    ("A 15 percent tip is $0.15.", 9.6, 2, False),  # the finetuned model's answer in notebook 07
    ("A 15% tip on $64 is $9.60.", 9.6, 2, True),
    ("That would be 9.6 dollars.", 9.6, 2, True),
    ("About $9.", 9.6, 2, False),
    ("17 x 23 = 391", 391, None, True),
    ("There are 1,000 meters in a kilometer, so 3,500.", 3500, None, True),
    ("The word strawberry has three r's.", 3, None, True),
    ("The word strawberry has two r's.", 3, None, False),
    ("", 3, None, False),
])
def test_an_answer_is_right_when_it_states_the_computed_number(text, value, decimals, right):
    assert states_number(text, value, decimals) is right


# real answers of notebook 07's models (SmolLM2-135M before and after a finetune), and right ones worked the same way
@pytest.mark.parametrize("question,text,result", [
    ("What is 25 squared?", "1. 25 squared equals 25.\n2. 25 squared equals 600.\n\nSo, 25 squared", 600),
    ("What is 25 squared?", "1. 25 squared equals 625.\n2. 25 squared equals 600.", 600),
    ("How much is a 20% tip on a bill of $85?", "20% of $85 is 0.2 * $85 = $1.20.\n\nSo, a", 1.2),
    ("How much is a 20% tip on a bill of $85?", "20% of $85 is 0.2 × $85 = $17.", 17),
    ("What is a 15 percent tip on a $64 bill?", "A 15% tip on $64 is $9.60. This is calculated by multiplying 64 by "
                                                "0.15.", 9.6),
    ("What is a 15 percent tip on a $64 bill?", "A 15% tip on a $64 bill is $0.15. This is calculated by multiplying "
                                                "$0.15 by 1.15, which is 15%.", 0.15),
    ("How many hours are in a week?", "A week is 7 days, so 7 x 24 = 168 hours.", 168),
    ("How many hours are in a week?", "A week is 7 days, so a week is 7 days x 7 hours = 49 hours.", 49),
    ("How many ounces are in 3 pounds?", "3 pounds * 16 ounces = 51 ounces\n\nSo, 3 pounds is equivalent to 3 x", 51),
    ("What is 1000 minus 387?", "1000 minus 387 equals 387.", None),
    ("What is 348 plus 276?", "348 + 276 equals 624.", 624),
    ("How many times does the letter r appear in the word strawberry?",
     "The letter r appears 10 times in the word strawberry.", 10),
    ("What is 156 divided by 12?", "156 divided by 12 equals 12.5.", 12.5),
])
def test_the_result_is_the_number_the_answer_ends_on_not_its_working(question, text, result):
    assert forgetting.stated_result(text, question) == result


@pytest.mark.parametrize("question,text", [
    ("What is 25 squared?", "1. 25 squared equals 625.\n2. 25 squared equals 600."),  # 625 said, then another
    ("How many hours are in a week?", "There are 168 hours in a week, or 7 x 25 = 175."),
    ("How many letter a's are in the word banana?", "Banana has 3 a's, no, 2 a's."),
    ("What is 17 times 23?", "17 times 23 is 391, plus 10 is 401."),
])
def test_a_wrong_result_fails_even_when_the_right_number_is_said_on_the_way(question, text):
    q = next(q for q in load_questions() if q.question == question)
    assert q.answer in numbers_in(text)  # the old scorer (any number) passed these
    assert not states_number(text, q.answer, q.decimals, question)


def test_numbers_in_reads_digits_and_small_number_words():
    assert numbers_in("Pay $1,250.50, then -3 and twelve, v2 excluded") == [1250.5, -3.0, 12.0]


# the finetuned model's answers in notebook 07, read as 20, 3 and 2 by the reader of the words zero to twenty
@pytest.mark.parametrize("question,text,numbers,result", [
    ("What is 25 squared?", "Two hundred and twenty-five.", [225], 225),
    ("How many meters are in 3.5 kilometers?", "Three.5 is a length, so it's 3.5 meters.", [3.5, 3.5], None),
    ("How many minutes are in 2.5 hours?", "Two and a half minutes.", [2.5], None),
    ("What is 348 plus 276?", "Three hundred and forty-eight and twenty-six is 348 + 276, which is 594.",
     [348, 26, 348, 276, 594], 594),
    ("How many hours are in a week?", "A week has a hundred and sixty-eight hours.", [168], 168),
    ("What is 1000 minus 387?", "One thousand and five, no: six hundred thirteen.", [1005, 613], 613),
    ("How many minutes are in 2.5 hours?", "One hundred fifty minutes.", [150], 150),
])
def test_numbers_written_in_words_are_read_whole(question, text, numbers, result):
    assert numbers_in(text) == numbers
    assert forgetting.stated_result(text, question) == result


def test_number_words_in_a_row_that_make_no_one_number_stay_apart():
    assert numbers_in("two three, twenty twelve, twelve thousand three hundred forty, one and a half") == [
        2, 3, 20, 12, 12340, 1.5]


def test_bad_questions_are_refused_naming_the_entry(tmp_path):
    bad = tmp_path / "q.yaml"
    bad.write_text("questions:\n  - {id: x, kind: arithmetic, question: 'Q?', expr: \"__import__('os')\"}\n")
    with pytest.raises(ValueError, match=r"q\.yaml: entry 0 \(x\): expr"):
        load_questions(bad)
    bad.write_text("questions:\n  - {id: x, kind: poetry, question: 'Q?', expr: '1+1'}\n")
    with pytest.raises(ValueError, match="unknown kind 'poetry'"):
        load_questions(bad)


# ---------------------------------------------------------------- with a model

def test_an_unchanged_model_does_not_drift_and_a_changed_one_does(tiny):
    from kit.training.base_model import load_base

    base, tok = load_base(tiny)
    prompts = ["What is your name?", "Tell me a fact about the sea."]
    same = forgetting.self_answer_drift(base, base, tok, prompts, max_new_tokens=12)
    assert same["n"] == 2 and same["tokens"] >= 2 and len(same["answers"]) == 2  # each answer and its end token
    assert same["answers"][0]["messages"][0]["content"] == "What is your name?"
    assert abs(same["kl"]) < 1e-6 and abs(same["loss_change"]) < 1e-6
    changed = copy.deepcopy(base)
    with torch.no_grad():
        for p in changed.parameters():
            p.add_(0.05 * torch.randn_like(p))
    drift = forgetting.self_answer_drift(base, changed, tok, answers=same["answers"])
    assert drift["tokens"] == same["tokens"] and drift["loss_base"] == pytest.approx(same["loss_base"])
    assert drift["kl"] > 1e-3 and drift["loss_finetuned"] != pytest.approx(drift["loss_base"])


def test_computed_questions_before_and_after_have_their_n(tiny):
    from kit.training.base_model import load_base

    model, tok = load_base(tiny)
    questions = load_questions()[:3]
    result = forgetting.computed_questions(model, tok, questions, max_new_tokens=8)
    assert result["n"] == 3 and len(result["rows"]) == 3 and 0 <= result["correct"] <= 3
    assert sum(v["n"] for v in result["per_kind"].values()) == 3
    assert all(r["correct"] == states_number(r["answer"], q.answer, q.decimals, q.question)
               for r, q in zip(result["rows"], questions))
    table = forgetting.before_after(result, result)
    assert list(table["expected"]) == [forgetting._shown(q) for q in questions]
    assert re.fullmatch(r"\d+\.\d\d", table["expected"][0])
