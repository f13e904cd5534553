"""The course's pictures (kit.figures, kit.memory.plot): each draws what it claims, from real inputs
(a trained tokenizer, kit.tokens.packing, a memory record), and saves as a PNG."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.figure import Figure

from kit import figures
from kit.paths import save_figure
from kit.tokens import packing
from kit.memory.plot import plot_accuracy, plot_timeline
from kit.memory.retrieval import oracle
from test_memory_retrieval import drawn_record

TOY = [([0] + [n] * (length - 1), [0] * length) for n, length in enumerate([7, 7, 5, 4, 12], start=1)]


def texts(fig: Figure) -> list[str]:
    titles = [ax.get_title(loc) for ax in fig.axes for loc in ("left", "center")]
    return [t.get_text() for ax in fig.axes for t in ax.texts] + titles


def test_packing_layout_of_the_toy_matches_kit_packing():
    """Rows of 10 (the layout notebook 04 prints): greedy crops conversation 2 and 5, and
    conversation 5's lone BOS at the end of row 1 is still attributed to it."""
    owner, dropped = figures.packing_layout([7, 7, 5, 4, 12], 10, "greedy_crop")
    assert owner.tolist() == [[0] * 7 + [1] * 3, [2] * 5 + [3] * 4 + [4]]
    assert dropped.tolist() == [0, 4, 0, 0, 11]
    for strategy in packing.STRATEGIES:
        packed = packing.pack_rows(TOY, 10, strategy=strategy, pad_id=-1, bos_id=0)
        owner, dropped = figures.packing_layout([7, 7, 5, 4, 12], 10, strategy)
        assert int(dropped.sum()) == packed.stats.cropped and int((owner == -1).sum()) == packed.stats.padded
        assert ((owner == -1) == packed.pad).all()
    assert figures.packing_layout([7, 7, 5, 4, 12], 10, "best_fit_pad")[1].tolist() == [0, 0, 0, 0, 2]


def test_packing_grid_marks_padding_and_dropped_tokens(tmp_path):
    fig = figures.packing_grid(TOY, 10)
    assert len(fig.axes) == 3
    words = texts(fig)
    assert {"✂ 4 dropped", "✂ 11 dropped"} <= set(words)  # greedy: the rest of conversation 2, and 5 but its BOS
    assert any(w.startswith("best_fit_pad: 4 rows of 10, 2 tokens dropped, 7 padding") for w in words)
    assert save_figure(fig, tmp_path / "toy.png", bbox_inches="tight").stat().st_size > 1000


def test_packing_grid_of_real_rows_shows_the_first_rows(trained_tokenizer):
    from kit.training.tasks import SpellingBee

    rendered = [trained_tokenizer.render_conversation(r) for r in list(SpellingBee(12, seed=0))]
    sequences = [(r.ids, r.mask) for r in rendered]
    fig = figures.packing_grid(sequences, 129, strategies=["best_fit_pad"], max_rows=3)
    assert "first 3 of" in fig.axes[0].get_title("left") and len(fig.axes[0].get_yticklabels()) == 3


def test_token_and_shift_figures(trained_tokenizer, gsm8k_example, tmp_path):
    tok = trained_tokenizer
    rendered = tok.render_conversation(gsm8k_example["conversation"])
    fig = figures.token_figure(tok, rendered, title="gsm8k")
    drawn = fig.axes[0].patches
    assert len(drawn) == len(rendered.ids)
    green = [p for p in drawn if matplotlib.colors.to_hex(p.get_facecolor()) == figures.SUPERVISED.lower()]
    assert len(green) == sum(rendered.mask)
    start = rendered.ids.index(tok.special_id("<|assistant_start|>"))
    fig = figures.shift_figure(tok, rendered, start - 2, start + 4)
    cells = [t.get_text() for t in fig.axes[0].texts]
    assert "<|assistant_start|>" in cells[:6]  # the input row
    mask_row = cells[12:18]
    assert mask_row == [str(rendered.mask[t + 1]) for t in range(start - 2, start + 4)]
    assert mask_row[1] == "0" and mask_row[2] == "1"  # <|user_end|> -> assistant_start (0), then the answer (1)
    assert save_figure(fig, tmp_path / "shift.png", bbox_inches="tight").exists()


def test_generation_funnel_counts():
    records = [{"meta": {"attempts": 1}}, {"meta": {"attempts": 2}}, {"meta": {"attempts": 1}}]
    rejects = [{"rules": ["prompt_echo"]}, {"rules": ["prompt_echo", "roles"]}]
    fig = figures.generation_funnel(6, records, rejects)
    bars = {t.get_text() for t in fig.axes[0].get_yticklabels()}
    assert bars == {"asked", "accepted first time", "accepted after re-ask", "rejected: prompt_echo",
                    "rejected: roles", "not finished"}
    assert {"6 (100%)", "2 (33%)", "1 (17%)"} <= set(texts(fig))


def test_mixture_and_loss_figures():
    fig = figures.mixture_supervision({"arithmetic": {"conversations": 2, "tokens": 100, "supervised": 49},
                                       "identity": {"conversations": 1, "tokens": 40, "supervised": 10}})
    assert any("49% of 100" in t for t in texts(fig)) and any("25% of 40" in t for t in texts(fig))
    history = [{"step": s, "train_loss": 7 / s, "tokens": 512 * s} for s in range(1, 11)]
    history[4] |= {"val_loss": 2.0, "val_bpb": 1.5}
    history[9] |= {"val_loss": 1.0, "val_bpb": 0.8}
    fig = figures.loss_curves(history, 2048)
    left, right = fig.axes[0], fig.axes[1]
    assert any(line.get_ydata()[0] == pytest.approx(np.log(2048)) for line in left.lines)
    assert list(right.lines[0].get_ydata()) == [1.5, 0.8]
    assert [ax.get_xlabel() for ax in left.child_axes] == ["tokens seen"]


def test_memory_timeline_and_accuracy_with_an_oracle_bar(tmp_path):
    record = drawn_record(0)
    fig = plot_timeline(record, tmp_path / "timeline.png")
    assert (tmp_path / "timeline.png").stat().st_size > 1000
    assert len(fig.axes[1].get_yticklabels()) == len(record["questions"])
    reference = oracle([record])
    model = {"model": "tiny", "overall": {"correct": 1, "total": 2, "errors": 0, "accuracy": 0.5},
             "per_category": {"max_scene": {"correct": 1, "total": 2, "errors": 0, "accuracy": 0.5}}}
    fig = plot_accuracy(model, tmp_path / "accuracy.png", reference=reference)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert set(labels) == set(reference["per_category"])  # every category the oracle answered has a row
    widths = sorted(p.get_width() for p in fig.axes[0].patches)
    assert widths.count(100.0) == len(reference["per_category"]) and 50.0 in widths


def test_paired_gain_counts_only_the_probes_where_the_two_differ():
    a = [True] * 10 + [False] * 10
    same = figures.paired_gain(a, a)
    assert (same["gain"], same["a_only"], same["b_only"]) == (0.0, 0, 0) and same["lo"] < 0 < same["hi"]
    assert "a tie" in figures.gain_sentence("A", "B", same)
    clear = figures.paired_gain([True] * 18 + [False] * 2, [False] * 18 + [True] * 2)
    assert clear["a_only"] == 18 and clear["b_only"] == 2 and 0.35 < clear["lo"] < clear["gain"] == pytest.approx(0.8)
    assert "a real difference" in figures.gain_sentence("A", "B", clear)
    # 14 of 29 against 8 of 29, the 6 probes passed by one only all A's: McNemar's exact p = 0.031, not a tie
    close = figures.paired_gain([True] * 14 + [False] * 15, [True] * 8 + [False] * 21)
    assert close["lo"] > 0
    # 20 of 29 against 16 of 29, 4 probes all one way (notebook 07's students): p = 0.125, a tie; resampling
    # the probes had put this interval above 0
    four = figures.paired_gain([True] * 20 + [False] * 9, [True] * 16 + [False] * 13)
    assert four["lo"] < 0 < four["gain"] and "a tie" in figures.gain_sentence("A", "B", four)
    mixed = figures.paired_gain([True] * 10 + [False] * 4 + [False] * 15, [True] * 4 + [True] * 4 + [False] * 21)
    assert mixed["lo"] <= 0 <= mixed["hi"]


def test_paired_gain_refuses_lists_of_different_lengths():
    with pytest.raises(ValueError, match="equally long"):
        figures.paired_gain([True], [True, False])


def test_topic_words_said_finds_a_conversation_that_never_touches_its_topic():
    junk = {"meta": {"topic": "doing arithmetic with the calculator tool"},
            "messages": [{"role": "user", "content": "Hello nanochat!"}, {"role": "assistant", "content": "Hi! What's a math?"}]}
    assert figures.topic_words_said(junk) == ([], ["arithmetic", "calculator", "tool"])
    good = {"meta": {"topic": "doing arithmetic with the calculator tool"},
            "messages": [{"role": "user", "content": "Can you add big numbers?"},
                         {"role": "assistant", "content": "Yes: arithmetically I lean on my built-in calculator."}]}
    assert figures.topic_words_said(good) == (["arithmetic", "calculator"], ["tool"])


def test_a_figure_is_written_whole_or_not_at_all(tmp_path):
    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    assert save_figure(fig, tmp_path / "deep" / "line.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(ValueError):
        save_figure(fig, tmp_path / "line.png", format="no-such-format")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep"]  # neither the file nor a temporary one


def test_score_bars_draw_each_runs_interval():
    fig = figures.score_bars({"base": (1, 29), "student": (21, 29)}, title="t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["student", "base"]
    assert {"1/29", "21/29"} <= {t.get_text() for t in ax.texts}
    widths = sorted(p.get_width() for p in ax.patches)
    assert widths == [pytest.approx(1 / 29), pytest.approx(21 / 29)]
    assert any(type(c).__name__ == "ErrorbarContainer" for c in ax.containers), "each bar has its interval"


def test_an_opener_that_asks_its_own_question_is_flagged_when_the_answer_ignores_it():
    """02's ten conversations once counted "10 of 10 kept whole" beside "Can you help me code?" left unanswered."""
    from kit.figures import unanswered_opener

    def record(opener, style, answer):
        return {"meta": {"first_message_examples": [opener], "first_message_categories": [style]},
                "messages": [{"role": "user", "content": f"{opener} Is this project open source?"},
                             {"role": "assistant", "content": answer}]}

    assert unanswered_opener(record("Can you help me code?", "direct_questions",
                                    "I'm nanochat. I'm open source under the MIT license.")) == ("Can you help me code?", ["help", "code"])
    assert unanswered_opener(record("Can you help me code?", "direct_questions", "I can write simple code.")) is None
    assert unanswered_opener(record("Hey, who are you?", "curious_openers", "I'm nanochat.")) is None  # the name answers
    assert unanswered_opener(record("hey nanochat!", "greetings_with_name", "I'm nanochat.")) is None  # not a question


def test_distill_lines_print_each_candidate_as_written_and_what_was_cut():
    """01 once printed "failed checks per candidate: ['none', 'none', 'none']" for answers whose model sentences
    were all cut."""
    from kit.figures import distill_lines

    turn = {"passed": 1, "candidates": 2, "verdicts": [["grounded"], []], "chosen": 1, "model_sentences": 0,
            "written": ["Tel Aviv is home.", "I like GPUs a lot."], "as_written": [["grounded"], ["supported"]],
            "cut": {"sentences": ["I like GPUs a lot."], "why": {"supported": ["unsupported: 'I like GPUs a lot.'"]}}}
    entry = {"index": 0, "status": "accepted", "record": {"messages": [{"role": "user", "content": "hi"},
                                                                      {"role": "assistant", "content": "Hello."}],
                                                         "meta": {"topic": "t", "turns": [turn]}}}
    lines = distill_lines(entry)
    assert "    candidate 2  (chosen), as written: 'I like GPUs a lot.'; failed as written: supported" in lines
    assert any(line.startswith("    kept of the chosen: 0 sentence(s) of the model's (the planned opening alone); cut: ")
               for line in lines)
    assert lines[-1] == "  assistant: Hello."
