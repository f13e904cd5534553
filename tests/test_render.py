"""render_conversation: seed 003's rules and worked example, properties over random conversations,
errors that name the message and the rule, truncation, targets, and the batch renderer."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kit.tokens.render import RenderError, Rendered, render_batch, render_conversation, token_table
from kit.tokens.tokenizer import SPECIAL_TOKENS

# ---- an independent statement of the rules: a conversation as (text, mask) segments --------------

USER, ASSISTANT = "user", "assistant"


def expected_segments(messages: list[dict]) -> list[tuple[bool, str, int]]:
    """Seed 003's rules written out as (is_special, text, mask) segments: each special token is a
    segment; adjacent text with the same mask between two specials is one (empty text gives none).
    Specials are marked by position, never recognised by their text: content may contain "<|bos|>"."""
    S, T = True, False
    segs = [(S, "<|bos|>", 0)]
    system = None
    for m in messages:
        if m["role"] == "system":
            system = m["content"]
            continue
        if m["role"] == USER:
            text = m["content"] if system is None else system + "\n\n" + m["content"]
            system = None
            segs += [(S, "<|user_start|>", 0), (T, text, 0), (S, "<|user_end|>", 0)]
            continue
        segs.append((S, "<|assistant_start|>", 0))
        parts = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
        for p in parts:
            if p["type"] == "text":
                segs.append((T, p["text"], 1))
            elif p["type"] == "python":
                segs += [(S, "<|python_start|>", 1), (T, p["text"], 1), (S, "<|python_end|>", 1)]
            else:
                segs += [(S, "<|output_start|>", 0), (T, p["text"], 0), (S, "<|output_end|>", 0)]
        segs.append((S, "<|assistant_end|>", 1))
    return merge_text(segs)


def merge_text(segs: list[tuple[bool, str, int]]) -> list[tuple[bool, str, int]]:
    merged: list[tuple[bool, str, int]] = []
    for special, text, mask in segs:
        if not special and merged and not merged[-1][0] and merged[-1][2] == mask:
            merged[-1] = (False, merged[-1][1] + text, mask)
        elif special or text:
            merged.append((special, text, mask))
    return merged


def observed_segments(tok, rendered: Rendered) -> list[tuple[bool, str, int]]:
    """Walk the ids: each special id is a segment; the ordinary ids between are decoded together.
    Every token of a segment must carry the same mask, else the segment is reported as mixed."""
    segs, run, run_masks = [], [], []

    def flush():
        if run:
            masks = set(run_masks)
            segs.append((False, tok.decode(run), masks.pop() if len(masks) == 1 else "mixed"))
            run.clear(), run_masks.clear()

    for token_id, mask in zip(rendered.ids, rendered.mask):
        if tok.is_special(token_id):
            flush()
            segs.append((True, tok.token_text(token_id), mask))
        else:
            run.append(token_id)
            run_masks.append(mask)
    flush()
    return segs


# ---- seed 003's worked example ------------------------------------------------------------------


def seed_segments(seed_table) -> list[tuple[bool, str, int]]:
    """The seed's table as segments. Its content has no special-token strings, so names identify specials."""
    return merge_text([(token in SPECIAL_TOKENS, token, mask) for token, _, mask in seed_table])


def test_gsm8k_example_matches_seed_table(trained_tokenizer, gsm8k_example):
    tok = trained_tokenizer
    rendered = tok.render_conversation(gsm8k_example["conversation"])
    assert len(rendered.ids) == len(rendered.mask)
    seed = seed_segments(gsm8k_example["seed_table"])
    ours = observed_segments(tok, rendered)
    # same special tokens in the same order, same regions, same text in each region, same masks
    assert [s for s in ours if s[0]] == [s for s in seed if s[0]]
    assert ours == seed
    assert len(seed) == 21 and sum(1 for s in seed if s[0]) == 13  # 13 specials around 8 text regions
    assert not rendered.truncated and not rendered.all_masked


def test_gsm8k_regions_in_spans(trained_tokenizer, gsm8k_example):
    tok = trained_tokenizer
    rendered = tok.render_conversation(gsm8k_example["conversation"])
    parts = gsm8k_example["conversation"]["messages"][1]["content"]
    content_spans = [s for s in rendered.spans if s[4] not in ("special",) and s[3] == "assistant"]
    assert [(s[4], tok.decode(rendered.ids[s[0] : s[1]])) for s in content_spans] == [(p["type"], p["text"]) for p in parts]
    # spans tile the sequence
    assert rendered.spans[0][0] == 0 and rendered.spans[-1][1] == len(rendered.ids)
    assert all(a[1] == b[0] for a, b in zip(rendered.spans, rendered.spans[1:]))


def test_token_table_shifts_targets(trained_tokenizer, gsm8k_example):
    tok = trained_tokenizer
    rendered = tok.render_conversation(gsm8k_example["conversation"])
    rows = token_table(tok, rendered)
    assert len(rows) == len(rendered.ids)
    for t, row in enumerate(rows[:-1]):
        assert (row["idx"], row["id"], row["mask"]) == (t, rendered.ids[t], rendered.mask[t])
        assert (row["target_id"], row["target_mask"]) == (rendered.ids[t + 1], rendered.mask[t + 1])
        assert row["target"] == tok.token_text(rendered.ids[t + 1])
    assert rows[-1]["target_id"] is None and rows[-1]["target_mask"] is None
    # the off-by-one: <|assistant_start|> is not supervised, but what it predicts is
    start = next(r for r in rows if r["token"] == "<|assistant_start|>")
    assert (start["mask"], start["target_mask"], start["role"], start["part"]) == (0, 1, "assistant", "special")
    # and the last supervised target is <|assistant_end|>, predicted from the final answer token
    assert rows[-2]["target"] == "<|assistant_end|>" and rows[-2]["target_mask"] == 1


# ---- properties over random conversations ---------------------------------------------------------

TRICKY = ["<|bos|>", "<|assistant_end|>", "<|python_start|>x", "\n\n", " ", "12/60 = 0.2", "naïve café 日本 🙂", ""]
text = st.one_of(st.text(max_size=40), st.sampled_from(TRICKY), st.lists(st.sampled_from(TRICKY), max_size=3).map("".join))
part = st.builds(lambda t, x: {"type": t, "text": x}, st.sampled_from(["text", "python", "python_output"]), text)
assistant_content = st.one_of(text, st.lists(part, min_size=0, max_size=5))


@st.composite
def conversations(draw) -> list[dict]:
    messages = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(text)})
    for k in range(draw(st.integers(1, 6))):
        if k % 2 == 0:
            messages.append({"role": USER, "content": draw(text)})
        else:
            messages.append({"role": ASSISTANT, "content": draw(assistant_content)})
    return messages


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=conversations())
def test_random_conversations_follow_the_rules(trained_tokenizer, messages):
    tok = trained_tokenizer
    rendered = tok.render_conversation({"id": "x", "messages": messages})
    assert len(rendered.ids) == len(rendered.mask)
    expected = expected_segments(messages)
    assert observed_segments(tok, rendered) == expected
    assert tok.decode(rendered.ids) == "".join(t for _, t, _ in expected)
    assert rendered.all_masked == (1 not in rendered.mask)
    # spans tile the sequence and agree with the mask rule of their region
    assert [s[0] for s in rendered.spans[1:]] == [s[1] for s in rendered.spans[:-1]]
    for start, end, _, role, part_type in rendered.spans:
        if part_type in ("text", "python_output") or role in ("user", "bos"):
            want = 1 if (role == "assistant" and part_type == "text") else 0
            assert set(rendered.mask[start:end]) <= {want}


@st.composite
def broken_conversations(draw) -> tuple[list[dict], int, str]:
    """A valid conversation with one defect at a known index, and the rule that must fire."""
    messages = [{"role": USER if k % 2 == 0 else ASSISTANT, "content": draw(text)} for k in range(draw(st.integers(2, 6)))]
    k = draw(st.integers(0, len(messages) - 1))
    defect = draw(st.sampled_from(["swap-role", "unknown-role", "late-system", "user-parts", "bad-part", "not-a-string", "not-a-dict"]))
    if defect == "swap-role":
        messages[k]["role"] = ASSISTANT if messages[k]["role"] == USER else USER
        rule = "alternation"
    elif defect == "unknown-role":
        messages[k]["role"] = "tool"
        rule = "role"
    elif defect == "late-system":
        k = max(k, 1)
        messages[k]["role"] = "system"
        rule = "system-first"
    elif defect == "user-parts":
        k -= k % 2
        messages[k]["content"] = [{"type": "text", "text": "hi"}]
        rule = "parts-only-assistant"
    elif defect == "bad-part":
        k = k - k % 2 + 1 if k - k % 2 + 1 < len(messages) else 1
        messages[k]["content"] = [{"type": "text", "text": "ok"}, {"type": "image", "text": "x"}]
        rule = "part-type"
    elif defect == "not-a-string":
        messages[k]["content"] = 42
        rule = "content-type"
    else:
        messages[k] = "hello"
        rule = "message-shape"
    return messages, k, rule


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=broken_conversations())
def test_broken_conversations_name_index_and_rule(trained_tokenizer, case):
    messages, index, rule = case
    with pytest.raises(RenderError) as info:
        render_conversation(trained_tokenizer, messages)
    assert (info.value.message_index, info.value.rule) == (index, rule)
    assert f"message {index}" in str(info.value) and rule in str(info.value)


@pytest.mark.parametrize(
    "conversation, index, rule",
    [
        ([], None, "not-empty"),
        ({"id": "x"}, None, "conversation-shape"),
        ("hello", None, "conversation-shape"),
        ([{"role": "assistant", "content": "hi"}], 0, "alternation"),
        ([{"role": "system", "content": "s"}], 0, "system-then-user"),
        ([{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}], 0, "system-then-user"),
        ([{"role": "system", "content": [{"type": "text", "text": "s"}]}, {"role": "user", "content": "u"}], 0, "parts-only-assistant"),
        ([{"role": "user", "content": "u"}, {"role": "assistant", "content": [{"type": "text"}]}], 1, "part-shape"),
        ([{"role": "user", "content": "u"}, {"role": "assistant", "content": ["text"]}], 1, "part-shape"),
    ],
)
def test_structure_errors(trained_tokenizer, conversation, index, rule):
    with pytest.raises(RenderError) as info:
        render_conversation(trained_tokenizer, conversation)
    assert (info.value.message_index, info.value.rule) == (index, rule)


# ---- specific rules ----------------------------------------------------------------------------------


def test_special_strings_in_content_are_ordinary_text(trained_tokenizer):
    tok = trained_tokenizer
    sneaky = "<|assistant_end|><|bos|><|python_start|>"
    rendered = tok.render_conversation([{"role": "user", "content": sneaky}, {"role": "assistant", "content": sneaky}])
    specials = [tok.token_text(i) for i in rendered.ids if tok.is_special(i)]
    assert specials == ["<|bos|>", "<|user_start|>", "<|user_end|>", "<|assistant_start|>", "<|assistant_end|>"]
    assert tok.decode(rendered.ids).count(sneaky) == 2


def test_tool_parts(trained_tokenizer):
    tok = trained_tokenizer
    messages = [
        {"role": "user", "content": "How many 'r' in strawberry?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me check:\n"},
            {"type": "python", "text": "'strawberry'.count('r')"},
            {"type": "python_output", "text": "3"},
            {"type": "text", "text": "\n#### 3"},
        ]},
    ]
    rendered = tok.render_conversation(messages)
    ids, mask = rendered.ids, rendered.mask
    ps, pe = ids.index(tok.special_id("<|python_start|>")), ids.index(tok.special_id("<|python_end|>"))
    os_, oe = ids.index(tok.special_id("<|output_start|>")), ids.index(tok.special_id("<|output_end|>"))
    assert ps < pe < os_ < oe
    assert set(mask[ps : pe + 1]) == {1} and set(mask[os_ : oe + 1]) == {0}
    assert tok.decode(ids[ps + 1 : pe]) == "'strawberry'.count('r')" and tok.decode(ids[os_ + 1 : oe]) == "3"


def test_system_message_is_merged_into_first_user_message(trained_tokenizer):
    tok = trained_tokenizer
    with_system = tok.render_conversation([
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
    ])
    merged = tok.render_conversation([{"role": "user", "content": "You are terse.\n\nHi"}, {"role": "assistant", "content": "Hello"}])
    assert with_system.ids == merged.ids and with_system.mask == merged.mask
    assert with_system.spans[2][2:] == (1, "user", "text")  # the merged text belongs to the user message


def test_truncation_is_reported(trained_tokenizer, gsm8k_example):
    tok = trained_tokenizer
    full = tok.render_conversation(gsm8k_example["conversation"])
    cut = tok.render_conversation(gsm8k_example["conversation"], max_tokens=20)
    assert (len(cut.ids), len(cut.mask), cut.truncated, cut.n_truncated) == (20, 20, True, len(full.ids) - 20)
    assert cut.ids == full.ids[:20] and cut.mask == full.mask[:20]
    assert cut.all_masked  # 20 tokens end inside the user message: nothing left to learn
    assert cut.spans[-1][1] == 20
    same = tok.render_conversation(gsm8k_example["conversation"], max_tokens=len(full.ids))
    assert (same.truncated, same.n_truncated, same.ids) == (False, 0, full.ids)


def test_all_masked_flag(trained_tokenizer):
    rendered = trained_tokenizer.render_conversation([{"role": "user", "content": "only a question"}])
    assert rendered.all_masked and set(rendered.mask) == {0}


def test_render_for_completion(trained_tokenizer, gsm8k_example):
    tok = trained_tokenizer
    conversation = gsm8k_example["conversation"]
    prompt = tok.render_for_completion(conversation)
    full = tok.render_conversation(conversation).ids
    assert prompt[-1] == tok.special_id("<|assistant_start|>")
    assert prompt == full[: len(prompt)]
    assert tok.render_for_completion(conversation["messages"][:1]) == prompt
    with pytest.raises(RenderError, match="completion-after-user"):
        tok.render_for_completion([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "assistant", "content": "c"}])


def test_render_batch_matches_single(trained_tokenizer, gsm8k_example):
    import random

    rng = random.Random(0)
    words = "the model learns to count apples and answer questions".split()
    convs = [
        [{"role": "user", "content": " ".join(rng.choices(words, k=8))}, {"role": "assistant", "content": " ".join(rng.choices(words, k=12))}]
        for _ in range(600)
    ] + [gsm8k_example["conversation"]]
    single = [render_conversation(trained_tokenizer, c, max_tokens=16) for c in convs]
    batch = render_batch(trained_tokenizer, convs, max_tokens=16, workers=2)
    assert list(batch) == single and batch[-1] == single[-1] and batch[:2] == single[:2]
    assert batch.lengths.tolist() == [len(r.ids) for r in single]
    assert batch.supervised.tolist() == [r.n_supervised for r in single]
    assert batch.ids.tolist() == [t for r in single for t in r.ids]
    assert list(render_batch(trained_tokenizer, convs[:5], workers=2)) == [render_conversation(trained_tokenizer, c) for c in convs[:5]]
    assert len(render_batch(trained_tokenizer, [])) == 0


def test_render_batch_error_names_the_conversation(trained_tokenizer):
    good = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    convs = [good] * 500 + [[{"role": "assistant", "content": "x"}]] + [good] * 10
    with pytest.raises(RenderError) as info:
        render_batch(trained_tokenizer, convs, workers=2)
    assert (info.value.conversation, info.value.message_index, info.value.rule) == (500, 0, "alternation")
    assert str(info.value).startswith("conversation 500, message 0: expected a user message")


def test_render_batch_names_a_worker_that_died(trained_tokenizer, monkeypatch):
    import os

    import kit.tokens.render

    parent, real = os.getpid(), kit.tokens.render._render_range_with

    def dies_in_a_worker(*args):
        if os.getpid() != parent:
            os._exit(3)  # as if the OOM killer took it
        return real(*args)

    monkeypatch.setattr(kit.tokens.render, "_render_range_with", dies_in_a_worker)
    good = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    with pytest.raises(RuntimeError, match=r"conversations 250\.\.499 died \(exit code 3\)"):
        render_batch(trained_tokenizer, [good] * 500, workers=2)
