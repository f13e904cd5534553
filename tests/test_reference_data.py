"""The hand-written reference files are what good data looks like: every check the kit applies to
generated data, they pass with nothing to report, and the identity file covers the whole v2 recipe."""

import re
from collections import Counter
from pathlib import Path

import pytest

from kit.facts import foreign_identity_claims, load_identity_data
from kit.paths import knowledge_dir
from kit.quality.diversity import coverage
from kit.quality.neardup import near_duplicates
from kit.records import message_text, read_records
from kit.generation.sampling import load_dimensions
from kit.rules import dynamic_message_count, load_rules, validate_messages

REFERENCE = knowledge_dir() / "reference"
IDENTITY = REFERENCE / "identity.jsonl"
GENERAL = REFERENCE / "general.jsonl"


@pytest.fixture(scope="module")
def identity() -> list[dict]:
    return read_records(IDENTITY).records  # strict: the first unreadable line raises


@pytest.fixture(scope="module")
def general() -> list[dict]:
    return read_records(GENERAL).records


def _texts(record: dict, role: str | None = None) -> list[str]:
    return [message_text(m["content"]) for m in record["messages"] if role is None or m["role"] == role]


def test_sizes_ids_and_labels(identity, general):
    assert len(identity) >= 120 and len(general) >= 80
    ids = [r["id"] for r in identity + general]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    assert all(re.fullmatch(r"ref-identity-\d{4}", r["id"]) for r in identity)
    assert all(re.fullmatch(r"ref-general-\d{4}", r["id"]) for r in general)
    for r in identity + general:
        assert r["meta"]["source"] == "reference" and r["meta"]["note"] == "hand-written", r["id"]
    assert all(r["meta"]["kind"] == "general" and r["meta"]["category"] for r in general)


@pytest.mark.parametrize("path", [IDENTITY, GENERAL], ids=lambda p: p.name)
def test_files_are_plain_ascii(path: Path):
    raw = path.read_bytes()
    bad = re.search(rb"[^\x00-\x7f]", raw)
    assert bad is None, f"{path.name}: non-ASCII byte at offset {bad.start()}"


def test_every_rule_passes_with_nothing_to_report(identity, general):
    rules = load_rules()
    found = [(r["id"], str(p)) for r in identity + general
             for p in validate_messages(r["messages"], rules=rules, meta=r["meta"])]
    assert found == []  # errors and warnings alike


def test_the_rules_would_catch_a_bad_copy(identity):
    """The check above can fail: the same record, made bad the ways generated data goes bad, is flagged."""
    record = identity[0]
    rules = load_rules()
    broken = [dict(m) for m in record["messages"]]
    broken[1]["content"] = "I'm ChatGPT, made by OpenAI. <b>Hello</b>"
    rules_hit = {p.rule for p in validate_messages(broken[:-1], rules=rules, meta=record["meta"])}
    assert {"identity", "markup", "ends_with_assistant"} <= rules_hit


def test_identity_covers_every_element_of_the_recipe(identity):
    dims = load_dimensions()
    metas = [r["meta"] for r in identity]
    assert all(m["recipe"] == "v2" for m in metas)
    topics = {(m["topic_category"], m["topic"]) for m in metas}
    assert topics == {(c, t) for c, ts in dims.topics.items() for t in ts}
    assert {m["persona"] for m in metas} == set(dims.personas)
    assert {m["dynamic"] for m in metas} == set(dims.dynamics)
    styles = Counter(s for m in metas for s in m["first_message_categories"])
    assert set(styles) == set(dims.first_messages) and min(styles.values()) >= 3
    for m in metas:  # each opener shown is one of its style's, three different styles per item
        assert len(set(m["first_message_categories"])) == len(m["first_message_categories"]) == 3
        for style, opener in zip(m["first_message_categories"], m["first_message_examples"], strict=True):
            assert opener in dims.first_messages[style]
    for dim in ("topic_category", "persona", "dynamic"):
        assert min(Counter(m[dim] for m in metas).values()) >= 3, dim


def test_quality_report_finds_nothing_missing(identity):
    report = coverage(identity)
    for dim in ("topic_category", "topic", "persona", "dynamic", "first_message_category"):
        assert report["dimensions"][dim]["missing"] == [], dim
        assert report["dimensions"][dim]["unexpected"] == [], dim


def test_message_counts_follow_the_dynamic(identity):
    lengths = Counter()
    for r in identity:
        n, wanted = len(r["messages"]), dynamic_message_count(r["meta"]["dynamic"])
        if wanted is not None:
            assert n == wanted, (r["id"], n, r["meta"]["dynamic"])
        else:
            assert n in (4, 6, 8), (r["id"], n)
        lengths[n] += 1
    assert {2, 4, 6, 8} <= set(lengths)
    assert lengths[4] + lengths[6] + lengths[8] >= 90  # 4-8 message conversations are well represented


def test_no_assistant_turn_claims_a_foreign_identity(identity, general):
    assert foreign_identity_claims("As ChatGPT, I can help.") == ["ChatGPT"]  # the check can fail
    claims = [(r["id"], c) for r in identity + general for t in _texts(r, "assistant")
              for c in foreign_identity_claims(t)]
    assert claims == []


def test_identity_answers_use_the_taught_name(identity):
    share = sum(any("nanochat" in t for t in _texts(r, "assistant")) for r in identity) / len(identity)
    assert share >= 0.8


def test_general_never_mentions_the_assistant(general):
    assert [r["id"] for r in general if any("nanochat" in t.lower() for t in _texts(r))] == []
    assert all(2 <= len(r["messages"]) <= 6 for r in general)


@pytest.mark.parametrize("which", ["identity", "general", "both"])
def test_no_near_duplicates(which, identity, general):
    records = {"identity": identity, "general": general, "both": identity + general}[which]
    assert near_duplicates(records, threshold=0.8).rate == 0.0
    assert near_duplicates(records + records[:1], threshold=0.8).rate > 0  # a copy is found


def test_no_probe_is_asked_in_the_reference_data(identity, general):
    def norm(text: str) -> str:
        return " ".join(re.findall(r"[a-z0-9']+", text.lower()))

    users = [norm(t) for r in identity + general for t in _texts(r, "user")]
    probes = [norm(p.question) for p in load_identity_data().probes]
    assert [(p, u) for p in probes for u in users if p in u] == []
