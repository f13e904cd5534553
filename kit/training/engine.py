"""Sampling from a trained GPT with the calculator tool: the model's reply to a prompt, each python call
it writes run through kit.training.calculator and the output fed back, as the tasks taught it.

Why a module of its own: generating text is what a trained model is used for, after training
(notebooks, evaluation) as well as during it (midtraining's samples before and after). Its rules (when
a tool call runs, where a reply stops) change apart from the training loop and the checkpoints, as
nanochat keeps its engine apart from them.
"""

from __future__ import annotations

from typing import Sequence

import torch

from kit.training.calculator import CalculatorError, evaluate, format_result
from kit.training.model import GPT


def chat(model: GPT, tokenizer, prompt: str | list[dict], *, max_new_tokens: int = 96, temperature: float = 0.0,
         top_k: int | None = None, seed: int = 0) -> str:
    """The assistant's reply to a user message (or a conversation ending with one), stopping at
    <|assistant_end|>. A python tool call the model writes is run through kit.training.calculator and its output
    is fed back between <|output_start|> and <|output_end|>, as the tasks taught it."""
    return chat_with_calls(model, tokenizer, prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                           top_k=top_k, seed=seed)[0]


def chat_with_calls(model: GPT, tokenizer, prompt: str | list[dict], *, max_new_tokens: int = 96,
                    temperature: float = 0.0, top_k: int | None = None, seed: int = 0) -> tuple[str, list[dict]]:
    """`chat`, and the calls the calculator ran as [{expression, output}]: a small model also writes
    <|output_start|> itself, after no call, and only this list tells the two apart."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    context = tokenizer.render_for_completion(messages)
    start = len(context)
    sid = tokenizer.special_id
    assistant_end, python_start, python_end = sid("<|assistant_end|>"), sid("<|python_start|>"), sid("<|python_end|>")
    generator = torch.Generator().manual_seed(seed)
    calls = []
    budget = max_new_tokens
    while budget > 0:
        new = list(model.generate(context, budget, temperature=temperature, top_k=top_k,
                                  stop_ids=(assistant_end, python_end), generator=generator))
        context += new
        budget -= len(new)
        if not new or new[-1] != python_end:
            break
        # a tool call runs only when this python_end closes an open python block: a stray python_end after
        # a call that already ran (or with no call at all) is text, and must not run that call again
        call_start = max((i for i in range(start, len(context) - 1) if context[i] == python_start), default=None)
        if call_start is None or python_end in context[call_start + 1:-1]:
            continue
        expression = tokenizer.decode(context[call_start + 1:-1])
        try:
            output = format_result(evaluate(expression))
        except CalculatorError as exc:
            output = f"error: {exc}"
        calls.append({"expression": expression, "output": output})
        context += [sid("<|output_start|>"), *tokenizer.encode(output), sid("<|output_end|>")]
    reply = context[start:]
    if reply and reply[-1] == assistant_end:
        reply = reply[:-1]
    return tokenizer.decode(reply), calls


def samples(model: GPT, tokenizer, prompts: Sequence[str], max_new_tokens: int) -> list[dict]:
    """Greedy replies to `prompts` as [{prompt, reply, calls}] (none when `max_new_tokens` is 0)."""
    if max_new_tokens <= 0:
        return []
    replies = [chat_with_calls(model, tokenizer, p, max_new_tokens=max_new_tokens) for p in prompts]
    return [{"prompt": p, "reply": reply, "calls": calls} for p, (reply, calls) in zip(prompts, replies)]
