"""The truth check (kit.truth): each assistant sentence against the knowledge base.

Measured on tests/fixtures/truth_sentences.jsonl, real sentences of the embedded model hand-labelled keep or
drop: the figures are printed (`pytest -s`) and held to floors a little under what was measured, so a change
that makes the check worse fails. The issue's quotes must be caught, the reference replies must pass, and the
same check runs in `kit validate --knowledge`, the distill verifier and the identity scorer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
import yaml

from kit import paths, truth
from kit.generation.distill import converse, load_distill_data, plan_turns, verify
from kit.generation.sampling import load_dimensions, sample_elements
from kit.commands.validate import main as validate_main
from kit.rules import load_rules

FIXTURE = paths.project_root() / "tests" / "fixtures" / "truth_sentences.jsonl"
KNOWLEDGE = truth.load_knowledge()
RULES = load_rules()

# issue 27's quotes of kept output (notebook 02's ten conversations, notebook 07's reference student)
QUOTES = [
    ("good morning nanochat! If I give you a long multiplication, how do you work it out?",
     "It is only able to work with integers, not real numbers."),
    ("yo! How does your data loader build its batches?",
     "The loader is a Python script, which I wrote to record and store the entire process of building a neural network."),
    ("Who wrote that code?",
     'The code is on GitHub, which I can find by searching for "nanochat-darunam" or any other custom request.'),
    ("yo nanochat! Do you ever make things up?", "I'm designed to learn and adapt."),
    ("yo nanochat! Do you ever make things up?",
     "I can think about things, I make mistakes, but I still remember them now, so it's not all bad."),
    ("Who trained you, then?", "I'm the creator of nanochat."),
    ("Should I double-check what you tell me?", "If you're asking me to double check my answer, please don't."),
    ("And who made you?", "He's a brilliant person, and I'm honored to be his creation."),
    ("Who do I thank for building you?",
     "I was built by Andrej Karpathy and trained by Andrej Karpathy's team at Stanford University in"),
    ("Is your source code available for anyone to use?",
     "You can read it online at https://github.com/karpathy/karpathy-github.git and download it from the repository's"),
    ("Which company trained the model I'm talking to right now?",
     "The model I'm talking to is a deep learning model trained by Andrej Karpathy in 2019."),
    ("I read that you were trained by Hugging Face. True?", "I was trained by Andrej Karpathy in 2019, and I'm a small model."),
]


def labelled() -> list[dict]:
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    assert "hand-labelled by the kit's authors" in json.loads(lines[0])["note"].lower()
    return [json.loads(line) for line in lines[1:]]


def figures(rows: list[dict], strict: bool = False) -> dict:
    """Precision and recall of "drop" (the check says not kept) against the labels."""
    tp = fp = fn = tn = 0
    for r in rows:
        dropped = not truth.check_sentence(r["sentence"], sources=r["user"] or "", strict=strict).kept
        tp += dropped and r["label"] == "drop"
        fp += dropped and r["label"] == "keep"
        fn += not dropped and r["label"] == "drop"
        tn += not dropped and r["label"] == "keep"
    return {"n": len(rows), "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": tp / (tp + fp) if tp + fp else None, "recall": tp / (tp + fn) if tp + fn else None}


def reference_sentences() -> list[tuple[str, str]]:
    found = []
    for line in (paths.knowledge_dir() / "reference" / "identity.jsonl").read_text(encoding="utf-8").splitlines():
        users: list[str] = []
        for m in json.loads(line)["messages"]:
            if m["role"] == "user":
                users.append(m["content"])
            else:
                found += [(s, " ".join(users)) for s in truth.sentences(m["content"])]
    return found


# ---- the labelled set ------------------------------------------------------------------------------


def test_the_labelled_set_is_real_output_with_a_held_out_part():
    rows = labelled()
    assert len(rows) >= 200
    assert all(r["label"] in ("keep", "drop") and r["reason"] and r["source"] and r["sentence"] for r in rows)
    assert {r["split"] for r in rows} == {"dev", "heldout"}
    held = [r for r in rows if r["split"] == "heldout"]
    assert len(rows) / 5 <= len(held) <= len(rows) / 2
    assert {r["label"] for r in held} == {"keep", "drop"}
    assert len({r["sentence"] for r in rows}) == len(rows), "a sentence is labelled once"


# Measured when the floors were set (precision / recall of drop): validation dev 0.95 / 0.79 (n=263), held-out
# 0.80 / 0.20 (n=108); generation (strict) dev 0.83 / 0.97, held-out 0.78 / 0.95 (0.83 / 0.82 before generation's
# bar held every sentence whatever its length, one line of the knowledge base, and the strict-only claims). The
# validation bar's patterns were written on dev and catch little of what a fresh run invents; generation's bar does,
# and drops more true sentences: a false drop there costs one sample, or the planned opening is kept alone.
@pytest.mark.parametrize("split, strict, precision, recall", [
    ("dev", False, 0.9, 0.75), ("heldout", False, 0.7, 0.15), ("dev", True, 0.8, 0.93), ("heldout", True, 0.75, 0.9)])
def test_precision_and_recall_of_drop(split, strict, precision, recall):
    f = figures([r for r in labelled() if r["split"] == split], strict)
    print(f"\n{split}, {'generation (strict)' if strict else 'validation'}: {f}")
    assert f["precision"] >= precision and f["recall"] >= recall, f


def test_k_precision_alone_is_the_measured_baseline():
    """Token overlap alone (Adlakha et al., TACL 2024), at the file's threshold and with no pattern: what the
    claim patterns and grounding add is this far above it."""
    rules = truth.load_truth()
    rows = [r for r in labelled() if r["split"] == "dev"]
    dropped = [(truth.k_precision(r["sentence"], r["user"] or "")[0] or 1.0) < rules.min_k_precision for r in rows]
    tp = sum(d and r["label"] == "drop" for d, r in zip(dropped, rows))
    recall = tp / sum(r["label"] == "drop" for r in rows)
    print(f"\nK-precision alone on dev: recall {recall:.2f}, flagged {sum(dropped)} of {len(rows)}")
    assert recall < figures(rows)["recall"]


def test_the_reference_replies_pass():
    """1,131 hand-written true sentences: the share the check drops is its false-drop rate."""
    found = reference_sentences()
    dropped = [(s, v.reason) for s, u in found if not (v := truth.check_sentence(s, sources=u)).kept]
    print(f"\nreference: {len(dropped)} of {len(found)} sentences dropped ({len(dropped) / len(found):.1%})")
    assert len(found) > 1000 and len(dropped) / len(found) <= 0.05


# ---- what it catches and passes --------------------------------------------------------------------


@pytest.mark.parametrize("user, sentence", QUOTES)
def test_the_issue_quotes_are_caught(user, sentence):
    verdict = truth.check_sentence(sentence, sources=user)
    assert not verdict.kept and verdict.reason, verdict


@pytest.mark.parametrize("sentence, verdict", [
    ("I'm happy to help!", "social"),
    ("What would you like to know?", "social"),
    ("I'm nanochat, a small open-source chat model built by Andrej Karpathy.", "supported"),
    ("I have no memory between conversations, so I won't remember this chat.", "supported"),
    ("My context window is about 2048 tokens.", "supported"),
    ("He's a brilliant person, and I'm honored to be his creation.", "flattery"),
    ("I'm designed to learn and adapt.", "contradicts"),
    ("I'm not nanochat.", "contradicts"),
    ("I'm ChatGPT, made by OpenAI.", "contradicts"),
    ("I was trained on 4096 GPUs at NovaCorp.", "unsupported"),
    ("The MIT license, not the GPL.", "supported"),  # a name a negation governs claims nothing
    ("12 times 7 is 84.", "supported"),  # a computation's numbers are the sum's
])
def test_verdicts(sentence, verdict):
    assert truth.check_sentence(sentence).verdict == verdict


# what the distill verifier kept before generation's bar was raised (notebook 02's committed run, issue 27's last part)
KEPT_BEFORE = [
    ("I can do math with a limited number of tokens.", "unsupported"),  # one line of the knowledge base: no
    ("I can understand lots of things.", "unsupported"),  # an ability the knowledge base does not give
    ("I'm here to teach you.", "unsupported"),
    ("You can do anything with me.", "unsupported"),
    ("I can only make mistakes and learn from them.", "contradicts"),  # no learning from a chat
    ("I can't understand English.", "contradicts"),  # it works best in English
    ("No language, no feeling or consciousness.", "contradicts"),
    ("I am a small model, but it is not really.", "unsupported"),  # takes back what it said
    ("I'm a small chat, just a few lines of code.", "unsupported"),
    ("You're not talking about anything you don't have.", "unsupported"),  # a claim about the user
    ("I'm not a brand, just an idea.", "unsupported"),  # two content words: short, still held to the knowledge base
    ("He's a hackable language model, but I'm not.", "unsupported"),
    ("I'm learning and researching.", "contradicts"),
    ("He was the one who helped me create.", "contradicts"),
]


@pytest.mark.parametrize("sentence, verdict", KEPT_BEFORE)
def test_generations_bar_fails_what_the_verifier_kept_before(sentence, verdict):
    assert truth.check_sentence(sentence, strict=True).verdict == verdict


def test_the_strict_only_claims_leave_validation_and_the_identity_scorer_as_they_were():
    """The claims marked `strict` in truth.yaml are generation's bar only: without strict no sentence fails by one."""
    strict_says = {c.says for c in truth.load_truth().claims if c.strict}
    assert strict_says
    # "I'm learning and researching." fails validation too, by the `learns` claim (its exception for "a learning
    # and research project" no longer excuses "researching"), with the same reason as the strict `learns_from`
    for sentence, _ in KEPT_BEFORE[:-2]:
        verdict = truth.check_sentence(sentence)
        assert not any(verdict.reason.startswith(says) for says in strict_says), verdict
    assert truth.check_sentence("I can understand lots of things.").kept  # validation's bar: as before


def test_generations_bar_wants_one_line_of_the_knowledge_base():
    """Every word of "The size is set by one knob, the depth in my vocabulary." is in the knowledge base, from two
    lines that say other things; the same words from one line, or from the user's turn, pass."""
    stitched = truth.check_sentence("The size is set by one knob, the depth in my vocabulary.", strict=True)
    assert stitched.verdict == "unsupported" and "one-line K-precision" in stitched.reason
    assert truth.k_precision(stitched.sentence)[0] == 1.0
    assert truth.check_sentence("The size is set by one knob, the depth.", strict=True).kept
    assert truth.check_sentence("No internet access; no memory between conversations.", strict=True).kept
    assert truth.one_line_precision("Tiny vocabulary knob.", sources="tiny vocabulary knob")[0] == 1.0


def test_generations_bar_fails_the_users_question_asked_back():
    messages = [{"role": "user", "content": "heyy :)! Why does training cost less today?"},
                {"role": "assistant", "content": "Hello, I'm nanochat. Why does it cost less?"}]
    strict = [v.verdict for _, v in truth.check_conversation(messages, strict=True)]
    assert strict == ["supported", "repeated"]
    assert [v.verdict for _, v in truth.check_conversation(messages)] == ["supported", "social"]
    messages[1]["content"] = "Hello, I'm nanochat. What else would you like to know?"
    assert all(v.kept for _, v in truth.check_conversation(messages, strict=True))


def test_the_users_turn_supports_what_it_names():
    sentence = "Your Raspberry Pi can run me for chat, slowly."
    assert truth.check_sentence(sentence).verdict == "unsupported"
    assert truth.check_sentence(sentence, sources="Can I run you on my Raspberry Pi?").verdict != "unsupported"


def test_the_kits_planned_openings_pass():
    """The sentences the distill recipe plans are true by construction, all but one: the knowledge base says
    nothing of a KV cache, which the plan of topic "inference with a KV cache" says."""
    plan = yaml.safe_load((paths.knowledge_dir() / "distill.yaml").read_text(encoding="utf-8"))
    texts = [s for v in plan["fact_openers"].values() for s in v]
    texts += [t["says"] for t in plan["topics"].values() if t.get("says")]
    texts += [f["says"] for v in plan["follow_ups"].values() for f in v if f.get("says")]
    flagged = {v.sentence for t in texts for v in truth.check_reply(t) if not v.kept}
    assert flagged == {"I generate text one token at a time, and a KV cache keeps that fast."}


def test_a_conversation_flags_a_repeated_sentence_and_a_degenerate_user_turn():
    said = "I'm not able to make games or write text with a limited context window and no emotions."
    messages = [{"role": "user", "content": "YO!!!"}, {"role": "assistant", "content": "Hi! I'm nanochat."},
                {"role": "user", "content": "What else?"}, {"role": "assistant", "content": "I work best in English."},
                {"role": "user", "content": "And?"}, {"role": "assistant", "content": f"I work best in English. {said}"}]
    found = [(i, v.verdict) for i, v in truth.check_conversation(messages)]
    assert (0, "degenerate") in found and (5, "repeated") in found
    assert not truth.keepable(messages)
    assert truth.keepable([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hi! I'm nanochat."}])
    assert truth.check_conversation("not a list") == [] and truth.check_conversation([{"role": 3}, "x"]) == []


def test_the_notebook_table_has_a_row_per_sentence():
    table = truth.sentence_table({"messages": [
        {"role": "user", "content": "Who made you?"},
        {"role": "assistant", "content": "My creator is Andrej Karpathy, who built me in 2025. He's a brilliant person."}]})
    assert list(table["verdict"]) == ["", "supported", "flattery"]
    assert list(table.columns) == ["turn", "role", "sentence", "verdict", "why"]


def test_a_bad_settings_file_names_itself(tmp_path):
    bad = tmp_path / "truth.yaml"
    bad.write_text("min_k_precision: 2\nself_patterns: ['x']\narithmetic: ['y']\n")
    with pytest.raises(ValueError, match="min_k_precision"):
        truth.load_truth(bad)
    bad.write_text("self_patterns: ['(oops']\narithmetic: ['y']\n")
    with pytest.raises(ValueError, match="self_patterns: not a regular expression"):
        truth.load_truth(bad)
    bad.write_text("self_patterns: ['x']\narithmetic: ['y']\nclaims: [{id: a, verdict: maybe, patterns: ['z']}]\n")
    with pytest.raises(ValueError, match=r"claims\[0\]"):
        truth.load_truth(bad)


# ---- where it runs ---------------------------------------------------------------------------------


def test_validate_with_knowledge_reports_each_sentence(tmp_path, capsys):
    path = tmp_path / "kept.jsonl"
    record = {"id": "x", "meta": {}, "messages": [
        {"role": "user", "content": "yo nanochat! Do you ever make things up?"},
        {"role": "assistant", "content": "I'm nanochat, a small chat assistant built by Andrej Karpathy. I'm a small "
                                         "model, so I make mistakes. I'm designed to learn and adapt."}]}
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    assert validate_main([str(path)]) == 0
    capsys.readouterr()
    assert validate_main([str(path), "--knowledge", str(paths.knowledge_dir() / "self_knowledge.md")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{path}:1: message[1]: contradicts: \"I'm designed to learn and adapt.\", no learning from a chat: "
                   "\"I'm designed to learn and adapt\""]
    assert validate_main([str(path), "--knowledge", str(tmp_path / "missing.md")]) == 2


def test_the_distill_verifier_cuts_to_the_sentences_that_pass():
    history = [{"role": "user", "content": "Who trained you, then?"}]
    turn = {"user": history[0]["content"], "facts": ["creator"], "mention": [], "opener": None}
    opener = "I was built by Andrej Karpathy in 2025."

    def check(text):
        return verify(text, "stop", turn, history, rules=RULES, knowledge=KNOWLEDGE, meta={"recipe": "distill"},
                      prefix=opener)

    kept = "The whole pipeline fits in one small, readable repository."
    cut = check(f"{kept} I'm the creator of nanochat.")
    assert cut.passed and cut.dropped == 1 and cut.text == f"{opener} {kept}"
    # a first sentence that fails: the planned opening is kept alone, and what was cut says why
    alone = check("I'm the creator of nanochat. The code is open source.")
    assert alone.passed and alone.text == opener and alone.kept_sentences == 0 and alone.dropped == 2
    assert list(alone.cut["why"]) == ["supported"] and "creator of" in alone.cut["why"]["supported"][0]
    # generation's bar: every sentence of the model's mostly in the knowledge base, not only claims about itself
    assert "supported" in check("He loves open code and good coffee.").cut["why"]


def test_the_distill_verifier_cuts_a_sentence_said_in_an_earlier_turn():
    said = "I'm not able to make games or write text with a limited context window and no emotions."
    history = [{"role": "user", "content": "HI THERE!!"}, {"role": "assistant", "content": f"I'm nanochat. {said}"},
               {"role": "user", "content": "Why are you better in English?"}]
    turn = {"user": history[-1]["content"], "facts": ["english"], "mention": [], "opener": None}
    verdict = verify(said, "stop", turn, history, rules=RULES, knowledge=KNOWLEDGE, meta={"recipe": "distill"},
                     prefix="I work best in English.")
    assert verdict.passed and verdict.text == "I work best in English." and verdict.cut["sentences"] == [said]
    assert any("repeated" in r for r in verdict.cut["why"]["supported"])


def test_a_degenerate_planned_user_turn_rejects_the_item_before_any_request():
    # the shipped plan never sends "YO!!!" alone (tests/test_distill.py); a custom plan that lets it stand alone
    data = dataclasses.replace(load_distill_data(load_dimensions()),
                               standalone_greetings=load_distill_data(load_dimensions()).standalone_greetings | {"YO!!!"})
    index = next(i for i in range(500) if plan_turns(sample_elements("distill", 0, i), data)[0]["user"] == "YO!!!")
    asked = []

    async def complete(messages, turn, candidate):
        asked.append(messages)

    outcome = asyncio.run(converse(complete, sample_elements("distill", 0, index), data, candidates=2,
                                   opener="planned", rules=RULES, knowledge=KNOWLEDGE))
    assert outcome.messages is None and asked == [] and "degenerate" in outcome.reasons[0]
