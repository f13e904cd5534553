"""What a finetune cost the model, measured on text no training author wrote.

`retention` (kit.training.identity) measures the loss on held-out general conversations, but those were
written by the same hands as the general conversations mixed into training: their loss can fall while
the model gets worse at everything else (notebook 07's finetuned model answered "A 15 percent tip is
$0.15." for a $64 bill). Two measurements that no author's style can flatter:

- `self_answer_drift`: the *base* model answers held-out prompts greedily; the finetuned model is scored
  on those answers. The base model's own text is what it would have said, so any rise of the finetuned
  model's loss on it, and the per-token KL divergence KL(base || finetuned) over the answer tokens, is
  drift away from the base model's behaviour (0 for an unchanged model).
- `computed_questions`: hand-written questions whose answers the kit computes with its own safe calculator
  (arithmetic, unit conversions, tips, letter counts: knowledge/computed_questions.yaml), asked greedily
  and scored before and after. An answer is right when the number it gives as its result (`stated_result`:
  its last number, leaving out the question's own numbers and the operands of its working) is the computed
  one; a right number somewhere in a wrong answer ("25 squared equals 25. ... equals 625. So 25") is not enough
  to pass unless it is the one the answer ends on.

Every result carries its n (prompts, tokens, questions), so a reader can weigh it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from kit import paths
from kit.text import GROUPED_NUMBER, PLAIN_NUMBER, number_value
from kit.training.base_model import causal_lm, chat_messages
from kit.training.calculator import CalculatorError, evaluate
from kit.training.finetune import IGNORE, collate, render_examples
from kit.training.identity import generate_answers

QUESTIONS_FILE = "computed_questions.yaml"
KINDS = ("arithmetic", "units", "tip", "letters")
MAX_NEW_TOKENS = 96


# ---------------------------------------------------------------- drift on the base model's own answers

def base_answers(model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int = MAX_NEW_TOKENS,
                 show_progress: bool = False) -> list[dict]:
    """The model's greedy answers to `prompts` as conversation records (user prompt, assistant answer),
    asked with the kit's system prompt as training and evaluation ask."""
    answers = generate_answers(model, tokenizer, [chat_messages(p) for p in prompts], max_tokens=max_new_tokens,
                               show_progress=show_progress)
    return [{"id": f"base-answer-{i}", "messages": [{"role": "user", "content": p}, {"role": "assistant", "content": a}],
             "meta": {"source": "base model, greedy"}} for i, (p, a) in enumerate(zip(prompts, answers))]


def first_prompts(records: Sequence[dict]) -> list[str]:
    """The first user message of each conversation: held-out general conversations become held-out prompts."""
    prompts = []
    for r in records:
        first = next((m["content"] for m in r["messages"] if m["role"] == "user"), None)
        if isinstance(first, str) and first.strip():
            prompts.append(first)
    return prompts


def self_answer_drift(base, finetuned, tokenizer, prompts: Sequence[str] | None = None, *,
                      answers: Sequence[dict] | None = None, max_new_tokens: int = MAX_NEW_TOKENS,
                      max_tokens: int = 1024) -> dict:
    """How far the finetuned model moved from the base model on the base model's own greedy answers.

    base, finetuned: models sharing `tokenizer` (a kit.training.base_model ChatTokenizer); prompts: held-out
    prompts (the base model answers them here), or `answers`: records base_answers made earlier.
    Returns {n (answers), tokens (answer tokens scored), loss_base, loss_finetuned (mean nats per answer token),
    loss_change (finetuned - base), kl (mean per-token KL(base || finetuned), nats), kl_per_answer ([(KL summed
    over an answer, its tokens)], for `kl_interval`), answers (the records)}.
    """
    if answers is None:
        if not prompts:
            raise ValueError("self_answer_drift: give prompts (or the base model's answers)")
        answers = base_answers(base, tokenizer, prompts, max_new_tokens=max_new_tokens)
    rows, _ = render_examples(tokenizer, answers, max_tokens)
    if not rows:
        raise ValueError("self_answer_drift: no answer has a token to score (all empty or cut off)")
    total_base = total_ft = total_kl = 0.0
    n_tokens = 0
    per_answer = []  # (KL summed over the answer's tokens, its tokens): for an interval over the answers
    with torch.no_grad():
        for row in rows:  # one at a time: no padding, so nothing but the answer's own context is seen
            inputs, targets = collate([row], tokenizer.pad_id)
            keep = targets != IGNORE
            logp_base = _log_probs(base, inputs, keep)
            logp_ft = _log_probs(finetuned, inputs, keep)
            target = targets[keep].to(logp_base.device)
            total_base += float(F.nll_loss(logp_base, target, reduction="sum"))
            total_ft += float(F.nll_loss(logp_ft.to(logp_base.device), target, reduction="sum"))
            kl = float(F.kl_div(logp_ft.to(logp_base.device), logp_base, log_target=True, reduction="sum"))
            total_kl += kl
            n_tokens += int(keep.sum())
            per_answer.append((kl, int(keep.sum())))
    loss_base, loss_ft = total_base / n_tokens, total_ft / n_tokens
    return {"n": len(rows), "tokens": n_tokens, "loss_base": loss_base, "loss_finetuned": loss_ft,
            "loss_change": loss_ft - loss_base, "kl": total_kl / n_tokens, "kl_per_answer": per_answer,
            "answers": list(answers)}


def kl_interval(drift: dict, draws: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """A 95% interval of `self_answer_drift`'s KL per token, resampling its answers (a bootstrap over the prompts:
    16 answers are a small sample of what the base model says)."""
    per = np.asarray(drift["kl_per_answer"], dtype=float)
    picks = np.random.default_rng(seed).integers(0, len(per), size=(draws, len(per)))
    lo, hi = np.percentile(per[picks, 0].sum(axis=1) / per[picks, 1].sum(axis=1), [2.5, 97.5])
    return float(lo), float(hi)


def _log_probs(model, inputs: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Log-probabilities over the vocabulary at the kept positions (float32)."""
    device = next(model.parameters()).device
    lm = causal_lm(model)
    was_training = lm.training
    lm.eval()
    hidden = lm.base_model(input_ids=inputs.to(device)).last_hidden_state
    logits = lm.get_output_embeddings()(hidden[keep.to(device)])
    lm.train(was_training)
    return F.log_softmax(logits.float(), dim=-1)


# ---------------------------------------------------------------- questions with computed answers

@dataclass(frozen=True)
class ComputedQuestion:
    id: str
    kind: str
    question: str
    expr: str
    answer: float  # computed by kit.training.calculator from expr
    decimals: int | None = None


def load_questions(path: str | Path | None = None) -> list[ComputedQuestion]:
    """knowledge/computed_questions.yaml (or `path`), each answer computed from its expression; a bad entry
    is an error naming the file and the entry."""
    path = paths.resolve(path) if path is not None else paths.knowledge_dir() / QUESTIONS_FILE
    try:
        data = paths.read_yaml(path, "the computed questions")  # malformed: a ValueError naming it
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc})") from None
    items = data.get("questions") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ValueError(f"{path}: expected a mapping with a non-empty list under 'questions'")
    questions: list[ComputedQuestion] = []
    for i, item in enumerate(items):
        where = f"{path}: entry {i}" + (f" ({item.get('id')})" if isinstance(item, dict) and item.get("id") else "")
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) and item[k] for k in ("id", "kind", "question", "expr")):
            raise ValueError(f"{where}: needs id, kind, question and expr as text")
        if item["kind"] not in KINDS:
            raise ValueError(f"{where}: unknown kind {item['kind']!r} (kinds: {', '.join(KINDS)})")
        if any(q.id == item["id"] for q in questions):
            raise ValueError(f"{where}: id used twice")
        try:
            answer = float(evaluate(item["expr"]))
        except CalculatorError as exc:
            raise ValueError(f"{where}: expr {item['expr']!r}: {exc}") from None
        decimals = item.get("decimals")
        if decimals is not None and (not isinstance(decimals, int) or decimals < 0):
            raise ValueError(f"{where}: decimals must be a whole number >= 0")
        questions.append(ComputedQuestion(item["id"], item["kind"], item["question"], item["expr"],
                                          round(answer, decimals) if decimals is not None else answer, decimals))
    return questions


# signed, not inside a word, and a grouped number not run on into more digits ("1,2345" is 1 and 2345)
_NUMBER = re.compile(rf"(?<![\w.])-?(?:{GROUPED_NUMBER}(?!\d)|{PLAIN_NUMBER})")
# English number words: "two hundred and twenty-five" is 225, "two and a half" 2.5, "Three.5" 3.5, "one thousand
# and five" 1005; "forty-eight and twenty-six" is two numbers (an "and" joins only after hundred or thousand)
_SMALL = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                     "fourteen fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_WORD_TOKEN = re.compile(r"[A-Za-z]+")
_JOIN = re.compile(r"(?:\s+|\s*-\s*)$")  # what may stand between two words of one number
_FRACTION = re.compile(r"\.(\d+)(?![\d.,]\d)")  # "Three.5": a word number written on with digits


def _word_numbers(text: str) -> list[tuple[int, int, float]]:
    """(start, end, value) of every number written in English words, in order."""
    tokens = [(m.start(), m.end(), m.group().lower()) for m in _WORD_TOKEN.finditer(text)]
    found, i = [], 0
    while i < len(tokens):
        group = _word_group(text, tokens, i)
        if group is None:
            i += 1
            continue
        start, end, value, i = group
        fraction = _FRACTION.match(text, end)
        if fraction and value == int(value) and value < 1000:
            value, end = float(f"{int(value)}.{fraction.group(1)}"), fraction.end()
        found.append((start, end, value))
    return found


def _word_group(text: str, tokens: list, i: int):
    """The number whose words start at token i: (start, end, value, the next token's index), or None."""
    def word(k):
        return tokens[k][2] if k < len(tokens) else None

    def joined(k):  # token k follows token k - 1 with only a space or a hyphen between
        return k < len(tokens) and _JOIN.fullmatch(text, tokens[k - 1][1], tokens[k][0]) is not None

    k = i
    if word(k) == "a" and joined(k + 1) and word(k + 1) in ("hundred", "thousand"):
        k += 1  # "a hundred and sixty-eight"
    elif word(k) not in _SMALL and word(k) not in _TENS:
        return None
    total, part, last, end = 0, 0, None, k
    while k < len(tokens):
        w = word(k)
        if k > i and not joined(k):
            break
        if w == "and" and last is not None and joined(k + 1) and word(k + 1) == "a" and joined(k + 2) \
                and word(k + 2) == "half":
            part += 0.5
            end, k = k + 2, k + 3
            break
        if w == "and":  # only after hundred or thousand, and only before the rest of the number
            if last != "scale" or not joined(k + 1) or (word(k + 1) not in _SMALL and word(k + 1) not in _TENS):
                break
            k += 1
            continue
        if w in _SMALL or w in _TENS:
            if last == "small" or (last == "tens" and (w in _TENS or _SMALL.get(w, 10) >= 10 or _SMALL[w] == 0)):
                break  # "two three" and "twenty twelve" are two numbers
            part += _SMALL.get(w, _TENS.get(w))
            last = "tens" if w in _TENS else "small"
        elif w == "hundred" and last != "scale" and part < 100:
            part = (part or 1) * 100
            last = "scale"
        elif w in ("thousand", "million") and (total == 0 or total > _SCALES[w] * 999):
            total += (part or 1) * _SCALES[w]
            part, last = 0, "scale"
        else:
            break
        end, k = k, k + 1
    if last is None:
        return None
    return tokens[i][0], tokens[end][1], float(total + part), k
# a number is an operand of the answer's working, not its result, when an operator (or "=") follows it, one
# unit word allowed between ("3 pounds * 16", "7 days x 24 ="), or when an operator comes just before it
# ("multiplying 64 by 0.15"); "= 168" after the last "=" is the result, and so is "appears 3 times."
_OPERATOR = r"(?:[*×/÷+]|[x−-](?=\s*\$?\d)|(?:times|plus|minus)(?=\s+\$?\d)|(?:divided|multiplied)\b)"
_OPERAND_BEFORE = re.compile(r"(?:[*×/÷+−-]|\b(?:x|by|times|plus|minus))\s*\$?\s*$", re.IGNORECASE)
_OPERAND_AFTER = re.compile(rf"\s*%?\s*(?:[^\W\d_]+\s+)?(?:{_OPERATOR}|=)", re.IGNORECASE)


def _numbers(text: str) -> list[tuple[int, int, float]]:
    """(start, end, value) of every number a text states, in order: digits and English number words."""
    found = [(m.start(), m.end(), number_value(m.group())) for m in _NUMBER.finditer(text)]
    found += _word_numbers(text)
    return sorted(found)


def numbers_in(text: str) -> list[float]:
    """The numbers a text states: digits ("9.60", "$1,000", "-3") and English number words ("two hundred and
    twenty-five", "two and a half", "Three.5")."""
    return [value for _, _, value in _numbers(text)]


def stated_result(answer: str, question: str = "") -> float | None:
    """The number `answer` gives as its result: its last number that is not one of the question's own numbers
    (a model repeating "25 squared" is not answering 25) nor an operand of its working ("0.2 * $85 = $17"
    gives 17); None when it gives none."""
    given = numbers_in(question)
    results = [value for start, end, value in _numbers(answer)
               if not any(math.isclose(value, g) for g in given)
               and not _OPERAND_BEFORE.search(answer[:start]) and not _OPERAND_AFTER.match(answer, end)]
    return results[-1] if results else None


def states_number(text: str, value: float, decimals: int | None = None, question: str = "") -> bool:
    """Is the result `text` gives (`stated_result`) `value`, rounded to `decimals` where given ($9.6 and $9.60 are
    the same money)?"""
    result = stated_result(text, question)
    tolerance = 0.5 * 10 ** -decimals if decimals is not None else 1e-9 * max(1.0, abs(value))
    return result is not None and abs(result - value) <= tolerance


def computed_questions(model, tokenizer, questions: Sequence[ComputedQuestion] | None = None, *,
                       max_new_tokens: int = MAX_NEW_TOKENS) -> dict:
    """Ask each question greedily (in process) and score the answer against the computed one.

    Returns {n, correct, rate, per_kind: {kind: {n, correct, rate}}, rows: [{id, kind, question, expected,
    answer, result (the number read as its result, `stated_result`), correct}]}. Call it on the base model and
    on the finetuned one: the same questions, before and after.
    """
    questions = list(questions) if questions is not None else load_questions()
    answers = generate_answers(model, tokenizer, [chat_messages(q.question) for q in questions],
                               max_tokens=max_new_tokens, show_progress=False)
    rows = [{"id": q.id, "kind": q.kind, "question": q.question, "expected": _shown(q), "answer": a,
             "result": stated_result(a, q.question), "correct": states_number(a, q.answer, q.decimals, q.question)}
            for q, a in zip(questions, answers)]
    return {**_share(rows), "per_kind": {k: _share([r for r in rows if r["kind"] == k])
                                         for k in KINDS if any(r["kind"] == k for r in rows)}, "rows": rows}


def _shown(q: ComputedQuestion) -> str:
    value = q.answer
    if q.decimals is not None:
        return f"{value:.{q.decimals}f}"
    return str(int(value)) if math.isclose(value, round(value)) else f"{value:g}"


def _value(number: float | None) -> str:
    return "none" if number is None else f"{number:g}"


def _share(rows: list[dict]) -> dict:
    correct = sum(r["correct"] for r in rows)
    return {"n": len(rows), "correct": correct, "rate": correct / len(rows) if rows else None}


def before_after(before: dict, after: dict):
    """The computed-answer questions side by side, one row per question, as a DataFrame (answers in full)."""
    import pandas as pd

    if [r["id"] for r in before["rows"]] != [r["id"] for r in after["rows"]]:
        raise ValueError("before_after: the two results asked different questions")
    return pd.DataFrame([{"question": b["question"], "expected": b["expected"], "before": b["answer"],
                          "before, read as": _value(b["result"]), "right before": b["correct"], "after": a["answer"],
                          "after, read as": _value(a["result"]), "right after": a["correct"]}
                         for b, a in zip(before["rows"], after["rows"])])
