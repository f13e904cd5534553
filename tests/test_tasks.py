"""kit.training.tasks and kit.training.datasets: built-in tasks are deterministic and their tool parts are right;
the readers turn fixture files in the public sets' formats into conversation records."""

import json
from pathlib import Path

import pytest

from kit.training.calculator import evaluate, format_result
from kit.training.datasets import GSM8K, MMLU, DatasetError, MemoryDialogues, SmolTalk, gsm8k_parts
from kit.records import RecordError, message_text
from kit.training.tasks import (Arithmetic, IdentityTask, Mixture, SimpleSpelling, SpellingBee, default_mixture,
                       load_words, sample_texts)

FIXTURES = Path(__file__).parent / "fixtures"


def tool_pairs(record):
    """(python text, python_output text) for every tool call in the assistant messages."""
    pairs = []
    for message in record["messages"]:
        parts = message["content"] if isinstance(message["content"], list) else []
        for a, b in zip(parts, parts[1:]):
            if a["type"] == "python":
                assert b["type"] == "python_output", record["id"]
                pairs.append((a["text"], b["text"]))
    return pairs


@pytest.mark.parametrize("task_class", [SimpleSpelling, SpellingBee, Arithmetic])
def test_builtin_tasks_are_deterministic_by_seed(task_class):
    a, b, c = task_class(50, seed=1), task_class(50, seed=1), task_class(50, seed=2)
    assert list(a) == list(b)
    assert list(a) != list(c)
    assert a[7] == list(a)[7]  # item i depends on (seed, i) only
    assert len({r["id"] for r in a}) == 50
    assert all(r["meta"]["task"] == task_class.name for r in a)


@pytest.mark.parametrize("task_class", [SpellingBee, Arithmetic])
def test_python_parts_evaluate_to_their_outputs(task_class):
    for record in task_class(200, seed=3):
        pairs = tool_pairs(record)
        assert pairs, record["id"]
        for expression, output in pairs:
            assert format_result(evaluate(expression)) == output, record["id"]
        final = message_text(record["messages"][-1]["content"]).rsplit("#### ", 1)[1]
        assert final == pairs[-1][1] == str(record["meta"]["answer"])


def test_spelling_bee_hand_count_matches_python():
    for record in SpellingBee(100, seed=0):
        word, letter = record["meta"]["word"], record["meta"]["letter"]
        assert record["meta"]["answer"] == word.count(letter)
        assert f"By hand I count {word.count(letter)}." in record["messages"][1]["content"][0]["text"]


def test_simple_spelling_format():
    record = SimpleSpelling(1, seed=0)[0]
    word = record["meta"]["word"]
    assert record["messages"] == [{"role": "user", "content": f"Spell the word: {word}"},
                                  {"role": "assistant", "content": f"{word}:{','.join(word)}"}]


def test_words_come_from_the_shipped_list():
    words = load_words()
    assert len(words) > 500 and "strawberry" in words
    assert all(w.isalpha() and w.islower() for w in words)


def test_identity_task_reads_both_formats_with_epochs(tmp_path):
    path = tmp_path / "identity.jsonl"
    kit_line = {"id": "a", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], "meta": {}}
    bare_line = [{"role": "user", "content": "who are you?"}, {"role": "assistant", "content": "kit"}]
    path.write_text(json.dumps(kit_line) + "\n" + json.dumps(bare_line) + "\n")
    task = IdentityTask(path, epochs=3)
    assert len(task) == 6
    assert [r["meta"]["source_id"] for r in task] == ["a", "identity:2"] * 3
    assert task[3]["messages"] == bare_line and task[3]["meta"]["epoch"] == 1


def test_identity_task_names_a_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('[{"role": "user", "content": "hi"}]\n{"oops": 1}\n')
    with pytest.raises(RecordError, match="bad.jsonl:2"):
        IdentityTask(path)


def test_identity_task_refuses_what_validation_calls_an_error(tmp_path):
    path = tmp_path / "data.jsonl"
    good = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    empty = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]
    path.write_text("\n".join(json.dumps(c) for c in (good, empty, good, empty)) + "\n")
    with pytest.raises(ValueError, match=r"data.jsonl:2: message\[1\]: content is empty \(and 1 more; `python -m kit validate"):
        IdentityTask(path)


def test_mixture_weights_counts_and_seeded_shuffle():
    spelling, bee = SimpleSpelling(10, seed=0), SpellingBee(4, seed=0)
    mixture = Mixture([(spelling, 0.5), (bee, 2)], seed=5)
    assert mixture.counts() == {"spelling": 5, "spelling_bee": 8}
    assert len(mixture) == 13 and len(list(mixture)) == 13
    same = Mixture([(spelling, 0.5), (bee, 2)], seed=5)
    assert list(mixture) == list(same)
    assert [r["id"] for r in Mixture([(spelling, 0.5), (bee, 2)], seed=6)] != [r["id"] for r in mixture]
    assert sorted(r["id"] for r in mixture if r["meta"]["task"] == "spelling_bee") == sorted([r["id"] for r in bee] * 2)


def test_default_mixture_with_every_source(tmp_path):
    identity = tmp_path / "conversations.jsonl"
    identity.write_text(json.dumps([{"role": "user", "content": "who made you?"}, {"role": "assistant", "content": "a kit"}]) + "\n")
    mixture = default_mixture(identity, seed=0, size=100, smoltalk=FIXTURES / "smoltalk_sample.jsonl",
                              mmlu=FIXTURES / "mmlu", gsm8k=FIXTURES / "gsm8k_sample.jsonl",
                              memory=FIXTURES / "memory_sample.json")
    assert mixture.counts() == {"spelling": 40, "spelling_bee": 20, "arithmetic": 40, "identity": 2,
                                "smoltalk": 2, "mmlu": 2, "gsm8k": 3, "memory": 2}
    assert any(text.startswith("Spell the word") for text in sample_texts(20))


def test_smoltalk_reader_keeps_system_and_turns():
    records = list(SmolTalk(FIXTURES / "smoltalk_sample.jsonl"))
    assert len(records) == 2
    assert [m["role"] for m in records[1]["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert records[1]["meta"]["source"] == "smoltalk_sample.jsonl:2"


def test_smoltalk_reader_names_a_bad_row(tmp_path):
    path = tmp_path / "smoltalk.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}]}) + "\n")
    with pytest.raises(DatasetError, match="row 1: message 0: expected a user message"):
        SmolTalk(path)


@pytest.mark.parametrize("name, content, where", [
    ("smoltalk.jsonl", b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n{"messages": [{"role": "user", "content": "caf\xe9"}]}\n', "row 2: not valid UTF-8: byte 0xe9"),
    ("dialogues.json", b'[{"chunks": [\n"caf\xe9"]}]', "line 2: not valid UTF-8: byte 0xe9"),
])
def test_readers_name_the_line_of_a_byte_that_is_not_utf8(tmp_path, name, content, where):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=where):
        (SmolTalk if name.endswith(".jsonl") else MemoryDialogues)(path)


def test_mmlu_reader_original_csv():
    records = list(MMLU(FIXTURES / "mmlu"))
    first = records[0]
    assert first["messages"][0]["content"] == (
        "Multiple Choice question: Find the order of the element 2 in the additive group Z_6.\n"
        "- 1=A\n- 2=B\n- 3=C\n- 6=D\n\nRespond only with the letter of the correct answer.")
    assert first["messages"][1] == {"role": "assistant", "content": "C"}
    assert first["meta"]["subject"] == "abstract_algebra"


def test_mmlu_reader_hub_columns(tmp_path):
    path = tmp_path / "mmlu.jsonl"
    path.write_text(json.dumps({"question": "2+2?", "subject": "elementary_mathematics", "choices": ["3", "4", "5", "22"], "answer": 1}) + "\n")
    (record,) = MMLU(path)
    assert record["messages"][1]["content"] == "B"
    assert "- 4=B\n" in record["messages"][0]["content"]
    path.write_text(json.dumps({"question": "?", "choices": ["a", "b"], "answer": 5}) + "\n")
    with pytest.raises(DatasetError, match="row 1: answer must be an index"):
        MMLU(path)


def test_gsm8k_reader_turns_annotations_into_tool_parts():
    records = list(GSM8K(FIXTURES / "gsm8k_sample.jsonl"))
    parts = records[1]["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["text", "python", "python_output", "text", "python", "python_output", "text"]
    assert parts[1] == {"type": "python", "text": "12/60"} and parts[2] == {"type": "python_output", "text": "0.2"}
    assert parts[-1]["text"].endswith("#### 10")
    assert records[1]["meta"]["answer"] == "10"
    for record in records:
        for expression, output in tool_pairs(record):
            assert evaluate(expression) == pytest.approx(float(output))


def test_gsm8k_parts_lose_no_text():
    answer = "A is 3 x 4 = <<3*4=12>>12.\n#### 12"
    parts = gsm8k_parts(answer)
    rebuilt = "".join(f"<<{p['text']}=" if p["type"] == "python" else p["text"] + ">>" if p["type"] == "python_output"
                      else p["text"] for p in parts)
    assert rebuilt == answer
    with pytest.raises(ValueError, match="not <<expression=result>>"):
        gsm8k_parts("bad <<12>> annotation")


def test_memory_dialogues_become_conversations():
    records = list(MemoryDialogues(FIXTURES / "memory_sample.json"))
    assert len(records) == 2
    assert records[0]["messages"][0] == {"role": "user", "content": "Hi, I'd like to record my expenses today."}
    assert [m["role"] for m in records[0]["messages"]] == ["user", "assistant", "user", "assistant"]
    assert records[1]["meta"]["date"] == "2024-01-16"


def test_memory_dialogues_name_a_bad_line(tmp_path):
    path = tmp_path / "memory.json"
    path.write_text(json.dumps({"chunks": ['[2024-01-01] User said, "hi"\nnonsense line']}))
    with pytest.raises(DatasetError, match="row 1 chunk 1 line 2"):
        MemoryDialogues(path)


def test_parquet_files_in_the_hub_layout():
    (chat,) = SmolTalk(FIXTURES / "smoltalk_sample.parquet")
    assert chat["messages"][0] == {"role": "user", "content": "Give me one tip for learning to juggle."}
    france, plants = MMLU(FIXTURES / "mmlu_sample.parquet")
    assert france["messages"][1]["content"] == "C" and france["meta"]["subject"] == "high_school_geography"
    assert "- Carbon dioxide=B\n" in plants["messages"][0]["content"]
