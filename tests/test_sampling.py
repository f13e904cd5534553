"""kit.generation.sampling and kit.generation.prompts: per-index determinism, the two recipes, target shares, templates."""

import math
from collections import Counter
import shutil

import pytest

from kit.generation.prompts import conversation_schema, reask_messages, render_prompt
from kit.generation.sampling import load_dimensions, sample_elements, target_shares
from kit import paths

DIMS = load_dimensions()


@pytest.mark.parametrize("recipe", ["v1", "v2"])
def test_same_seed_and_index_give_the_same_prompt(recipe):
    first = [render_prompt(sample_elements(recipe, 7, i)) for i in range(20)]
    again = [render_prompt(sample_elements(recipe, 7, i)) for i in reversed(range(20))][::-1]  # order-free
    assert first == again
    assert len(set(first)) > 15  # different indices differ
    assert render_prompt(sample_elements(recipe, 8, 0)) != first[0]  # so do different seeds


def test_v2_draws_one_of_each_dimension_and_three_opener_styles():
    for index in range(50):
        e = sample_elements("v2", 0, index)
        assert e["topic"] in DIMS.topics[e["topic_category"]]
        assert e["persona"] in DIMS.personas and e["dynamic"] in DIMS.dynamics
        styles = e["first_message_categories"]
        assert len(styles) == 3 == len(set(styles))
        assert all(m in DIMS.first_messages[s] for m, s in zip(e["first_message_examples"], styles))
        assert (e["recipe"], e["seed"], e["index"]) == ("v2", 0, index)


def test_v1_draws_five_openers_from_the_flat_list_only():
    e = sample_elements("v1", 0, 3)
    assert len(e["first_message_examples"]) == 5 and set(e["first_message_examples"]) <= set(DIMS.first_messages_flat)
    assert e["topic"] is None and e["persona"] is None and e["dynamic"] is None
    assert set(sample_elements("v2", 0, 3)) == set(e)  # one meta layout for both recipes


@pytest.mark.parametrize("recipe", ["v1", "v2"])
def test_target_shares_sum_to_one(recipe):
    shares = target_shares(recipe)
    assert set(shares) == {"topic_category", "topic", "persona", "dynamic", "first_message_category"}
    for name, dist in shares.items():
        if dist:
            assert math.isclose(sum(dist.values()), 1.0), name


def test_target_shares_match_what_sampling_does():
    n = 3000
    draws = [sample_elements("v2", 1, i) for i in range(n)]
    shares = target_shares("v2")
    counted = Counter(d["topic_category"] for d in draws)
    for category, share in shares["topic_category"].items():
        assert abs(counted[category] / n - share) < 0.03, category
    styles = Counter(s for d in draws for s in d["first_message_categories"])
    for style, share in shares["first_message_category"].items():
        assert abs(styles[style] / (3 * n) - share) < 0.03, style


def test_prompt_fills_every_slot():
    e = sample_elements("v2", 0, 1)
    prompt = render_prompt(e)
    assert "$" not in prompt  # no unfilled $slot
    for part in (e["topic"], e["persona"], e["dynamic"], *e["first_message_examples"], "Andrej Karpathy"):
        assert part in prompt
    v1 = render_prompt(sample_elements("v1", 0, 1))
    assert all(m in v1 for m in sample_elements("v1", 0, 1)["first_message_examples"])


def test_template_errors_name_the_slot(tmp_path):
    import shutil

    from kit import paths
    folder = tmp_path / "knowledge"
    shutil.copytree(paths.knowledge_dir(), folder)
    (folder / "prompts" / "v1.txt").write_text("Hello $who_is_this\n$first_message_examples $knowledge")
    with pytest.raises(ValueError, match=r"\$who_is_this"):
        render_prompt(sample_elements("v1", 0, 0), knowledge_dir=folder)


def test_bad_dimension_file_names_itself(tmp_path):
    import shutil

    from kit import paths
    folder = tmp_path / "knowledge"
    shutil.copytree(paths.knowledge_dir(), folder)
    (folder / "personas.yaml").write_text("- ok\n- 3\n")
    with pytest.raises(ValueError, match="personas.yaml"):
        load_dimensions(folder)
    with pytest.raises(ValueError, match="unknown recipe"):
        sample_elements("v3", 0, 0)


def test_reask_and_schema():
    messages = reask_messages("PROMPT", "RAW", ["message[0]: content is empty"])
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == "RAW" and "message[0]: content is empty" in messages[2]["content"]
    schema = conversation_schema()["properties"]["messages"]
    assert schema["minItems"] == 2 and schema["items"]["properties"]["role"]["enum"] == ["user", "assistant"]


def test_grammar_schema_pins_the_turn_order():
    shapes = conversation_schema(grammar=True)["properties"]["messages"]["anyOf"]
    assert [len(s["prefixItems"]) for s in shapes] == [2, 4, 6, 8, 10, 12]
    for shape in shapes:
        roles = [m["properties"]["role"]["const"] for m in shape["prefixItems"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2)
        assert all(m["properties"]["content"]["minLength"] == 1 for m in shape["prefixItems"])


def test_a_knowledge_file_that_is_not_utf8_is_named(tmp_path):
    from kit.generation.sampling import load_dimensions

    folder = tmp_path / "knowledge"
    shutil.copytree(paths.knowledge_dir(), folder)
    (folder / "topics.yaml").write_bytes((folder / "topics.yaml").read_bytes() + b"\n- caf\xe9\n")
    with pytest.raises(ValueError, match=r"topics\.yaml:\d+: not valid UTF-8 \(byte 0xe9\)"):
        load_dimensions(folder)
