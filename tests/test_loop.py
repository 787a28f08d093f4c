"""The one epoch loop (deepbelief.loop.run_epochs) that RBM training, up-down and
fine-tuning share: epoch counting, when checkpoints are written, early stopping, the
order of checkpoint and callback, and resuming from a later epoch."""

import pytest

from deepbelief.loop import run_epochs


class Fake:
    def __init__(self, epoch=0, stop_after=None):
        self.epoch, self.events, self.stop_after = epoch, [], stop_after

    def save_checkpoint(self, path):
        self.events.append(("save", self.epoch))

    def one_epoch(self, e):
        self.events.append(("train", e))
        return {"epoch": e}

    def stopped(self):
        return self.stop_after is not None and self.epoch >= self.stop_after


@pytest.mark.parametrize("every", [1, 2, 3])
def test_checkpoints_are_written_every_k_epochs_and_at_the_end_before_the_callback(every):
    t, hist = Fake(), []
    run_epochs(t, t.one_epoch, epochs=5, history=hist, checkpoint="ck", checkpoint_every=every,
               callback=lambda e, m: t.events.append(("callback", e)))
    saves = [n for what, n in t.events if what == "save"]
    assert saves == sorted(set(list(range(every, 6, every)) + [5]))
    assert [m["epoch"] for m in hist] == [0, 1, 2, 3, 4] and all(m["seconds"] >= 0 for m in hist)
    for e in range(5):  # the epoch's checkpoint (if due) comes before its callback
        i = t.events.index(("callback", e))
        assert t.events[i - 1] in (("save", e + 1), ("train", e))


def test_resume_continues_from_the_trainers_epoch_and_early_stopping_saves_once():
    t, hist = Fake(epoch=3), [{"epoch": e} for e in range(3)]
    run_epochs(t, t.one_epoch, epochs=5, history=hist)  # no checkpoint file: nothing saved
    assert [e for what, e in t.events if what == "train"] == [3, 4] and len(hist) == 5
    t = Fake(stop_after=2)
    run_epochs(t, t.one_epoch, epochs=10, history=[], checkpoint="ck", checkpoint_every=5, stopped=t.stopped)
    assert t.events == [("train", 0), ("train", 1), ("save", 2)] and t.epoch == 2
    run_epochs(t, t.one_epoch, epochs=10, history=[], checkpoint="ck", stopped=t.stopped)  # already stopped
    assert t.events[-1] == ("save", 2)
