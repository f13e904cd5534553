"""kit.training.engine.chat: the calculator runs only a call the model opened and closed, and the calls it
ran are reported, so a reader can tell its output from an <|output_start|> the model wrote itself."""

from __future__ import annotations

import kit.training.engine as engine


def _scripted(script):
    class Scripted:
        position = 0

        def generate(self, context, budget, *, stop_ids, **kwargs):
            while self.position < len(script):
                token = script[self.position]
                self.position += 1
                yield token
                if token in stop_ids:
                    return
    return Scripted()


def test_only_the_calls_the_calculator_ran_are_reported(trained_tokenizer):
    tok = trained_tokenizer
    sid = tok.special_id
    script = [*tok.encode("8"), sid("<|python_end|>"),  # closes no call: the model's own text
              sid("<|output_start|>"), *tok.encode("2"), sid("<|output_end|>"),  # an output the model wrote
              sid("<|python_start|>"), *tok.encode("6*7"), sid("<|python_end|>"),  # a real call
              *tok.encode(" done"), sid("<|assistant_end|>")]
    reply, calls = engine.chat_with_calls(_scripted(script), tok, "What is 6*7?", max_new_tokens=60)
    assert calls == [{"expression": "6*7", "output": "42"}]
    assert reply.count("<|output_start|>") == 2 and "<|output_start|>42<|output_end|>" in reply
    assert engine.chat(_scripted(script), tok, "What is 6*7?", max_new_tokens=60) == reply


def test_a_stray_python_end_does_not_run_a_closed_tool_call_again(trained_tokenizer, monkeypatch):
    tok = trained_tokenizer
    sid = tok.special_id
    script = [sid("<|python_start|>"), *tok.encode("2+3"), sid("<|python_end|>"),
              sid("<|python_end|>"),  # stray: the call above already ran
              *tok.encode("five"), sid("<|assistant_end|>")]
    evaluated = []
    monkeypatch.setattr(engine, "evaluate", lambda expression: evaluated.append(expression) or 5)
    reply, calls = engine.chat_with_calls(_scripted(script), tok, "What is 2+3?", max_new_tokens=50)
    assert evaluated == ["2+3"] and calls == [{"expression": "2+3", "output": "5"}]
    assert reply.count("<|output_start|>") == 1 and reply.endswith("five")
