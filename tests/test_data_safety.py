"""Data safety of runs that own a folder: an OS lock refuses a second run, stale temporary
files of a killed run are removed, SIGTERM ends like Ctrl-C (message, checkpoint intact,
exit status 143), outputs that are the same path are refused before training, and the one
resume rule (no checkpoint yet: say so and start)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from deepbelief import ConfigError
from deepbelief import checkpoint as ck
from deepbelief.cli import main
from deepbelief.io import atomic_write_bytes, load_tensors

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--layers", "8", "--epochs", "2", "--finetune-epochs", "2", "--batch-size", "50", "--device", "cpu"]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _holder(folder: Path):
    """A second process that holds the folder's lock until its stdin closes."""
    code = ("import sys; from deepbelief.checkpoint import hold_folder\n"
            f"with hold_folder({str(folder)!r}):\n    print('held', flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code], env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"held"
    return proc


def test_a_second_run_on_a_locked_checkpoint_dir_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    proc = _holder(tmp_path / "ck")
    try:
        assert main(["train", *TINY, "--checkpoint-dir", "ck"]) == 2
        err = capsys.readouterr().err
        assert "checkpoint_dir 'ck' is in use by another run" in err and f"process {proc.pid}" in err
        assert not Path("model.safetensors").exists() and not Path("ck/run.json").exists()
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    with ck.hold_folder(tmp_path / "ck"):  # the lock died with its process
        pass


def test_the_lock_dies_with_a_killed_process(tmp_path):
    proc = _holder(tmp_path / "ck")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with ck.hold_folder(tmp_path / "ck"):
        with pytest.raises(ConfigError, match="in use by another run"):  # and refuses a second holder
            with ck.hold_folder(tmp_path / "ck"):
                pass


def test_stale_temporaries_are_removed_on_start_and_resume_continues(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *TINY, "--checkpoint-dir", "ck", "--quiet"]) == 0
    stale = Path("ck") / ".layer0.ckpt.safetensors.a1b2c3d4.tmp"  # what SIGKILL during a save leaves
    stale.write_bytes(b"half a file")
    assert main(["train", *TINY, "--checkpoint-dir", "ck", "--resume"]) == 0
    assert "removed 1 temporary file(s)" in capsys.readouterr().out
    assert not stale.exists()


def test_resume_without_a_checkpoint_says_so_and_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *TINY, "--checkpoint-dir", "typo", "--resume"]) == 0
    assert "'typo' does not exist, so there is nothing to continue: starting a new run" in capsys.readouterr().out
    Path("empty").mkdir()
    assert main(["train", *TINY, "--checkpoint-dir", "empty", "--resume", "-o", "m2.safetensors"]) == 0
    assert "no run.json in 'empty'" in capsys.readouterr().out
    # the library follows the same rule: a missing checkpoint file means start from scratch
    from deepbelief import RBM, RBMTrainConfig, make_generator, train_rbm

    x = (torch.rand(40, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    a, b = RBM(6, 3, generator=make_generator(1)), RBM(6, 3, generator=make_generator(1))
    train_rbm(a, x, RBMTrainConfig(epochs=2, batch_size=10), generator=make_generator(2),
              checkpoint=tmp_path / "none.ckpt", resume=True)
    train_rbm(b, x, RBMTrainConfig(epochs=2, batch_size=10), generator=make_generator(2))
    assert torch.equal(a.W, b.W)


def test_more_finetune_epochs_on_resume_continue_to_the_straight_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = ["--layers", "8", "--epochs", "2", "--batch-size", "50", "--device", "cpu", "--quiet"]
    assert main(["train", *base, "--finetune-epochs", "4", "-o", "straight.safetensors"]) == 0
    assert main(["train", *base, "--finetune-epochs", "2", "--checkpoint-dir", "ck", "-o", "a.safetensors"]) == 0
    assert main(["train", *base, "--finetune-epochs", "4", "--checkpoint-dir", "ck", "--resume",
                 "-o", "b.safetensors"]) == 0
    s, b = load_tensors("straight.safetensors")[0], load_tensors("b.safetensors")[0]
    assert all(torch.equal(s[k], b[k]) for k in s)
    assert main(["train", *base, "--finetune-epochs", "4", "--epochs", "3", "--checkpoint-dir", "ck",
                 "--resume"]) == 2  # more RBM epochs: finished layers would not be retrained


def test_more_final_updown_epochs_on_resume_continue_to_the_straight_run(tmp_path, monkeypatch, capsys):
    """A finished hot2006 run given a higher cap on its final up-down epochs continues that
    phase (chains, averages and generator from its checkpoint) to exactly the weights of a
    run started with the higher cap; other up-down fields may still not change."""
    monkeypatch.chdir(tmp_path)
    base = ["train", "--recipe", "hot2006", "--dataset", "digits", "--layers", "16,16,32", "--epochs", "1",
            "--batch-size", "50", "--updown-epochs", "1", "--no-updown-final-until-train-error",
            "--device", "cpu", "--quiet"]
    assert main([*base, "--updown-final-epochs", "3", "-o", "straight.safetensors"]) == 0
    assert main([*base, "--updown-final-epochs", "1", "--checkpoint-dir", "ck", "-o", "a.safetensors"]) == 0
    assert main([*base, "--updown-final-epochs", "3", "--checkpoint-dir", "ck", "--resume",
                 "-o", "b.safetensors"]) == 0
    s, a, b = (load_tensors(f"{n}.safetensors")[0] for n in ("straight", "a", "b"))
    assert all(torch.equal(s[k], b[k]) for k in s)
    assert not all(torch.equal(s[k], a[k]) for k in s)  # the two more epochs trained
    capsys.readouterr()
    assert main([*base, "--updown-final-epochs", "3", "--updown-lr-final", "0.0001", "--checkpoint-dir", "ck",
                 "--resume"]) == 2
    assert "updown.lr_final" in capsys.readouterr().err


@pytest.mark.parametrize("argv,needles", [
    (["--metrics-csv", "x", "-o", "x"], ["-o", "--metrics-csv", "'x'", "same path"]),
    (["--metrics-json", "m.safetensors", "-o", "m.safetensors"], ["--metrics-json", "same path"]),
    (["-o", "a/../m.safetensors", "--metrics-json", "m.safetensors"], ["--metrics-json", "same path"]),
    (["--metrics-json", "model.dbn.safetensors"], ["stack file", "--metrics-json", "same path"]),
    (["--checkpoint-dir", "c", "--tensorboard", "c"], ["--tensorboard", "--checkpoint-dir", "same path"]),
    (["--config", "c.toml", "--metrics-csv", "c.toml"], ["--metrics-csv", "--config", "same path"]),
])
def test_outputs_that_are_the_same_path_are_refused_before_training(argv, needles, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("a").mkdir()
    Path("c.toml").write_text("")
    assert main(["train", *TINY, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and all(n in err for n in needles), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "c.toml"]


def test_sigterm_ends_like_ctrl_c_with_status_143_and_the_checkpoint_intact(tmp_path):
    cmd = [sys.executable, "-m", "deepbelief", "train", "--layers", "32", "--epochs", "400", "--batch-size", "20",
           "--device", "cpu", "--checkpoint-dir", str(tmp_path / "ck"), "-o", str(tmp_path / "m.safetensors")]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = tmp_path / "ck" / "layer0.ckpt.safetensors"
    t_end = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < t_end:
        time.sleep(0.01)
    assert proc.poll() is None, proc.stderr.read().decode()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    err = proc.stderr.read().decode()
    assert "terminated (SIGTERM)" in err and "--resume" in err and "Traceback" not in err
    assert load_tensors(ckpt)[1]["epoch"] >= 1  # a whole, checksummed checkpoint
    assert not list((tmp_path / "ck").glob(".*.tmp")) and not (tmp_path / "m.safetensors").exists()


def _interrupt_at(n: int):
    """A trace function that raises KeyboardInterrupt (what the SIGTERM handler raises) at the
    n-th line or return event of any Python frame: a signal arriving at that instant."""
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        if event in ("line", "return"):
            count += 1
            if count == n:
                raise KeyboardInterrupt
        return tracer

    return tracer


def test_an_interrupt_at_any_instant_of_an_atomic_write_leaves_the_old_or_new_file_and_no_temporary(tmp_path):
    # Every instant, one after the other, until the write completes uninterrupted. (The SIGTERM
    # test above once left a temporary behind: tempfile.mkstemp had created the file and was
    # interrupted before it returned the name.)
    dest = tmp_path / "m.bin"
    previous = sys.gettrace()  # a coverage tool's tracer, if any, is put back after each try
    for n in range(1, 10_000):  # bounded: a write that never completes fails instead of looping
        dest.write_bytes(b"old")
        sys.settrace(_interrupt_at(n))
        try:
            atomic_write_bytes(dest, b"new")
            interrupted = False
        except KeyboardInterrupt:
            interrupted = True
        finally:
            sys.settrace(previous)
        assert [p.name for p in tmp_path.iterdir()] == ["m.bin"], n
        assert dest.read_bytes() in ((b"old", b"new") if interrupted else (b"new",)), n  # after the rename: new
        if not interrupted:
            break
    assert not interrupted and n > 20  # completed, after the instants before, during and after the creation


def test_progress_shows_i_of_n_elapsed_and_eta(tmp_path, monkeypatch, capsys):
    from deepbelief.progress import Progress, epoch_of, fmt_seconds

    assert epoch_of(2, 20) == " 3/20" and epoch_of(0, 5) == "1/5"
    assert (fmt_seconds(12.34), fmt_seconds(245), fmt_seconds(7620)) == ("12.3s", "4m05s", "2h07m")
    p = Progress()
    assert p.times(0, 3, 0.5, "a").endswith("eta 1.0s")  # one epoch of 0.5 s, two left
    assert "eta 0.0s" in p.times(2, 3, 0.5, "a")
    # a fake clock: 1 s epochs, one of them stretched to 100 s (the process paused by SIGSTOP)
    clock = [0.0]
    monkeypatch.setattr("deepbelief.progress.time.perf_counter", lambda: clock[0])
    q = Progress()
    for i, s in enumerate([3.0, 1.0, 1.0, 100.0, 1.0, 1.0]):  # the first (warm-up) is left out
        clock[0] += s
        line = q.times(i, 20, s, "b")
    assert line.endswith("1m47s elapsed, eta 14.0s"), line  # median 1 s per epoch x 14 left
    clock[0] += 6.0  # a call that covers three epochs of 2 s: the rate follows the machine
    assert q.times(8, 20, 2.0, "b").endswith("eta 11.0s")  # median of 1, 1, 100, 1, 1, 2 s = 1 s
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--layers", "8", "--epochs", "2", "--finetune-epochs", "3", "--batch-size", "50",
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for line in ("rbm 0 epoch 1/2: recon", "rbm 0 epoch 2/2", "finetune epoch 3/3"):
        assert line in out, out
    assert out.count("elapsed, eta") == 5
