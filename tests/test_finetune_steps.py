"""How many steps a finetune takes when nobody says: planned from the epochs, with a floor for small files
(kit.training.finetune.plan_steps). 16 identity conversations made 2 batches: 3 epochs were 6 steps, which
changed 1 of 3 unseen answers of the embedded model; 16 steps changed all 3."""

from kit.training.finetune import FinetuneConfig, plan_steps


def test_a_small_file_trains_at_least_the_floor_and_says_why():
    steps, note = plan_steps(FinetuneConfig(), batches=2)
    assert steps == 16 and "3 epochs of 2 batches would be 6" in note and "floor of 16" in note


def test_enough_data_trains_its_epochs_with_nothing_to_say():
    assert plan_steps(FinetuneConfig(epochs=10.0), batches=2) == (20, None)
    assert plan_steps(FinetuneConfig(), batches=40) == (120, None)


def test_steps_given_by_hand_are_kept_with_a_warning_under_the_floor():
    steps, note = plan_steps(FinetuneConfig(steps=6), batches=2)
    assert steps == 6 and note.startswith("warning: 6 steps is under 16")
    assert plan_steps(FinetuneConfig(steps=30), batches=2) == (30, None)


def test_the_loss_at_each_end_is_a_mean_over_steps_not_one_batch():
    from pathlib import Path

    from kit.training.finetune import FinetuneResult

    losses = [3.8, 3.8, 3.3, 3.4, 3.4, 2.8, 3.2, 2.8, 2.0]  # notebook 07: the last step a one-batch dip
    result = FinetuneResult(Path("."), "lora", len(losses), [{"loss": x} for x in losses], 0.0, 0.0, 0, 0, {}, None, None)
    first, last = result.loss_ends(5)
    assert abs(first - 3.54) < 1e-9 and abs(last - 2.84) < 1e-9 and result.final_loss == 2.0
    assert result.loss_ends(50) == (sum(losses) / 9, sum(losses) / 9)
    assert FinetuneResult(Path("."), "lora", 0, [], 0.0, 0.0, 0, 0, {}, None, None).loss_ends() is None
