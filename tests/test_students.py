"""Students made comparable: the same number of conversations by one rule, and the planned-openings control
(the generated data's user turns, each reply cut to the sentence the kit planned)."""

from __future__ import annotations

import pytest

from kit.training import forgetting, students


def _record(rid: str, replies: list[str], openers: list[str] | None = None) -> dict:
    messages = []
    for k, reply in enumerate(replies):
        messages += [{"role": "user", "content": f"question {k}"}, {"role": "assistant", "content": reply}]
    meta = {"turns": [{"opener": o, "model_sentences": 1} for o in openers]} if openers is not None else {}
    return {"id": rid, "messages": messages, "meta": meta}


def test_planned_openings_keep_the_user_turns_and_cut_each_reply_to_its_plan():
    record = _record("g1", ["I'm nanochat, by Andrej Karpathy. I remember you.", "It is MIT licensed. I love it."],
                      ["I'm nanochat, by Andrej Karpathy.", "It is MIT licensed."])
    [cut] = students.planned_openings([record])
    assert [m["content"] for m in cut["messages"]] == ["question 0", "I'm nanochat, by Andrej Karpathy.",
                                                       "question 1", "It is MIT licensed."]
    assert record["messages"][1]["content"].endswith("I remember you.")  # the input is not changed


def test_a_record_without_a_plan_for_every_reply_is_refused():
    with pytest.raises(ValueError, match="record r1: no planned opening"):
        students.planned_openings([_record("r1", ["Hi, I'm nanochat."])])
    with pytest.raises(ValueError, match="record r2"):
        students.planned_openings([_record("r2", ["a", "b"], ["a"])])


def test_every_source_gives_the_same_number_of_the_shortest_stating_name_and_creator():
    long = _record("long", ["I'm nanochat, a small chat model built by Andrej Karpathy, and I like to chat a lot."])
    short = _record("short", ["I'm nanochat, by Andrej Karpathy."])
    nameless = _record("nameless", ["Hello there."])
    chosen, n = students.same_size({"a": [long, short, nameless], "b": [long]}, limit=5)
    assert n == 1 and [r["id"] for r in chosen["a"]] == ["short"] and [r["id"] for r in chosen["b"]] == ["long"]
    assert students.same_size({"a": [long, short]}, limit=1)[1] == 1
    assert students.same_size({"a": [long, short]}, limit=None)[1] == 2


def test_the_drift_interval_holds_the_mean_and_the_bars_draw():
    drift = {"kl": 0.3, "kl_per_answer": [(1.0, 10), (4.0, 10), (4.0, 10), (3.0, 10)]}
    lo, hi = forgetting.kl_interval(drift)
    assert lo <= 0.3 <= hi and 0.1 <= lo and hi <= 0.4
    import matplotlib.pyplot as plt

    fig = students.drift_bars({"reference student": (0.3, lo, hi), "generated student": (0.1, 0.05, 0.2)})
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["generated student", "reference student"]
    plt.close(fig)


def test_shared_runs_find_a_probe_inside_a_longer_message():
    probe = "Could you tell me your name?"  # 6 words: all of them, in order
    long_probe = "Be honest with me now: who really built you and when did they do it?"
    records = [{"id": "leak", "messages": [{"role": "user", "content": "Hi! So, could you tell me your name, please?"}]},
               {"id": "run", "messages": [{"role": "user", "content": "Be honest with me now: who really built you?"},
                                          {"role": "assistant", "content": "Andrej Karpathy."}]},
               {"id": "apart", "messages": [{"role": "user", "content": "Could you tell me a name for my cat?"}]}]
    found = students.shared_runs(records, [probe, long_probe], n=8)
    assert [f["id"] for f in found] == ["leak", "run"]
    assert found[0]["run"] == "could you tell me your name" and found[0]["text"] == probe
    assert found[1]["run"] == "be honest with me now who really built"
    assert students.shared_runs(records, [probe], n=8)[0]["message"].startswith("Hi! So")
    assert students.shared_runs(records, []) == []


def test_width_at_more_items_narrows_at_the_same_rate():
    from kit.figures import wilson

    now, more = students.width_at(1, 7, 13)  # notebook 07: 1 of 7 direct probes; all 13 direct probes asked
    lo, hi = wilson(1, 7)
    assert now == pytest.approx(hi - lo) and more < now
    lo, hi = wilson(2, 13)  # 1/7 of 13 is about 2
    assert more == pytest.approx(hi - lo)
    assert students.width_at(3, 3, 3)[0] == students.width_at(3, 3, 3)[1]
