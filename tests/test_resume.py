"""Checkpoints and resume: a run killed at a random moment and resumed ends with exactly
the weights of an uninterrupted run (same seed, same device), for the RBM loop (a real
subprocess killed with SIGKILL), greedy stacking, fine-tuning and `deepbelief train`."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from deepbelief import (DBN, RBM, ConfigError, FinetuneConfig, ModelFileError, RBMTrainConfig, finetune,
                        make_generator, pretrain_stack, train_rbm, unroll)
from deepbelief import checkpoint as ck
from deepbelief.io import load_tensors

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "resume_script.py"


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _weights(path):
    return load_tensors(path)[0]


def _assert_same(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for k in a:
        assert torch.equal(a[k], b[k]), f"tensor {k} differs after resume"


def _kill_after_first_checkpoint(cmd, ckpt: Path, delay: float, *, timeout=60.0):
    """Start ``cmd``, wait for ``ckpt`` to appear, sleep ``delay`` s, SIGKILL. Returns the exit code."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    t_end = time.monotonic() + timeout
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < t_end:
        time.sleep(0.005)
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=timeout)
    return proc.returncode, proc.stderr.read().decode()


def _killed_mid_run(total, seed, tmp_path, make_cmd, ok=lambda folder: True):
    """Kill runs at random moments until one dies with SIGKILL after its first and before
    its last checkpoint (under heavy load a run may finish before the chosen moment)."""
    rng = random.Random(seed)
    for attempt in range(4):
        folder = tmp_path / f"killed{attempt}"
        folder.mkdir()
        cmd, first_ckpt = make_cmd(folder)
        rc, err = _kill_after_first_checkpoint(cmd, first_ckpt, rng.uniform(0.0, total) / (attempt + 1))
        assert rc in (0, -signal.SIGKILL), err
        if rc == -signal.SIGKILL and first_ckpt.exists() and ok(folder):
            return folder, rc
    pytest.fail("could not kill the run between its first and last checkpoint in 4 attempts")


def test_sigkill_at_random_moment_then_resume_gives_identical_weights(tmp_path):
    ref_out = tmp_path / "ref.safetensors"
    ref = subprocess.Popen([sys.executable, str(SCRIPT), str(ref_out)], env=_env(), cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def make_cmd(folder):
        ckpt = folder / "run.ckpt.safetensors"
        return [sys.executable, str(SCRIPT), str(folder / "out.safetensors"), "--checkpoint", str(ckpt)], ckpt

    folder, _ = _killed_mid_run(1.0, 20261127, tmp_path, make_cmd,
                                ok=lambda f: load_tensors(f / "run.ckpt.safetensors")[1]["epoch"] < 25)
    ckpt = folder / "run.ckpt.safetensors"
    epoch_at_kill = load_tensors(ckpt)[1]["epoch"]
    print("killed after epoch", epoch_at_kill)
    assert 1 <= epoch_at_kill < 25
    assert not (folder / "out.safetensors").exists()
    resumed = subprocess.run([sys.executable, str(SCRIPT), str(folder / "out.safetensors"), "--checkpoint",
                              str(ckpt), "--resume"], env=_env(), cwd=ROOT, capture_output=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr.decode()
    # the resumed process ran only the epochs after the checkpoint
    assert resumed.stdout.decode().count("epoch ") == 25 - epoch_at_kill
    out, err = ref.communicate(timeout=120)
    assert ref.returncode == 0, err.decode()
    _assert_same(_weights(ref_out), _weights(folder / "out.safetensors"))


# -- in-process: every piece of state survives ------------------------------------------------
class Interrupt(Exception):
    pass


def _data(n=300, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, d, generator=g) < 0.3).float()


def _interrupt_at(epoch):
    def cb(*args):
        if args[-2] == epoch:
            raise Interrupt
    return cb


@pytest.mark.parametrize("every", [1, 3])
def test_train_rbm_interrupted_and_resumed_matches_straight_run(tmp_path, every):
    x = _data()
    cfg = RBMTrainConfig(epochs=7, batch_size=20, lr=0.05, method="pcd", n_chains=30, momentum_switch=2,
                         sparsity_target=0.1, sparsity_cost=0.01, lr_final=0.01)
    g = make_generator(3)
    straight = RBM(16, 8, generator=g)
    train_rbm(straight, x, cfg, generator=g)
    ckpt = tmp_path / "c.safetensors"
    g = make_generator(3)
    r = RBM(16, 8, generator=g)
    with pytest.raises(Interrupt):
        train_rbm(r, x, cfg, generator=g, checkpoint=ckpt, checkpoint_every=every, callback=_interrupt_at(4))
    assert load_tensors(ckpt)[1]["epoch"] == (5 if every == 1 else 3)
    g = make_generator(999)  # the checkpoint's generator state replaces this one's
    r = RBM(16, 8, generator=g)
    hist = train_rbm(r, x, cfg, generator=g, checkpoint=ckpt, checkpoint_every=every, resume=True)
    assert len(hist.epochs) == 7
    _assert_same(straight.state_dict(), r.state_dict())


def test_pretrain_stack_resume_after_finished_layer_restores_the_generator(tmp_path):
    x = _data(seed=1)
    cfg = RBMTrainConfig(epochs=3, batch_size=20, lr=0.05)
    straight = pretrain_stack(x, [16, 8, 6], cfg, generator=make_generator(5))

    def stop(layer, epoch, m):
        if layer == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        pretrain_stack(x, [16, 8, 6], cfg, generator=make_generator(5), checkpoint_dir=tmp_path, callback=stop)
    assert (tmp_path / "layer0.safetensors").exists()
    # as if killed after layer 0 was saved but before layer 1's first checkpoint
    (tmp_path / "layer1.ckpt.safetensors").unlink()
    resumed = pretrain_stack(x, [16, 8, 6], cfg, generator=make_generator(5), checkpoint_dir=tmp_path, resume=True)
    _assert_same(straight.state_dict(), resumed.state_dict())


@pytest.mark.parametrize("stop_at,patience,dropout", [(1, 0, 0.0), (3, 0, 0.2), (4, 1, 0.0)])
def test_finetune_interrupted_and_resumed_matches_straight_run(tmp_path, stop_at, patience, dropout):
    g0 = torch.Generator().manual_seed(0)
    x = torch.rand(200, 16, generator=g0)
    y = (x[:, :4].sum(1) > 2).long() + (x[:, 4] > 0.5).long()
    xv, yv = x[:50], y[:50]
    cfg = FinetuneConfig(epochs=6, batch_size=40, lr=0.5, top_only_epochs=2, patience=patience, dropout=dropout)

    def fresh(seed):
        g = make_generator(seed)
        return unroll(DBN([RBM(16, 8, generator=g, weight_std=0.3)]), 3, generator=g), g

    net, g = fresh(4)
    h_straight = finetune(net, x, y, cfg, generator=g, valid=(xv, yv))
    ckpt = tmp_path / "ft.safetensors"
    net2, g2 = fresh(4)
    try:
        finetune(net2, x, y, cfg, generator=g2, valid=(xv, yv), checkpoint=ckpt, callback=_interrupt_at(stop_at))
    except Interrupt:
        pass
    net3, _ = fresh(4)
    h_resumed = finetune(net3, x, y, cfg, generator=make_generator(77), valid=(xv, yv), checkpoint=ckpt, resume=True)
    _assert_same(net.state_dict(), net3.state_dict())
    assert [r["loss"] for r in h_straight] == [r["loss"] for r in h_resumed]
    assert h_straight[-1]["best_epoch"] == h_resumed[-1]["best_epoch"]


def test_resume_with_other_hyper_parameters_is_refused(tmp_path):
    x = _data()
    ckpt = tmp_path / "c.safetensors"
    g = make_generator(0)
    train_rbm(RBM(16, 8, generator=g), x, RBMTrainConfig(epochs=2, batch_size=20), generator=g, checkpoint=ckpt)
    g = make_generator(0)
    with pytest.raises(ConfigError, match=r"lr: checkpoint 0.1, now 0.2"):
        train_rbm(RBM(16, 8, generator=g), x, RBMTrainConfig(epochs=4, batch_size=20, lr=0.2), generator=g,
                  checkpoint=ckpt, resume=True)
    with pytest.raises(ModelFileError, match="another model"):
        train_rbm(RBM(16, 9, generator=g), x, RBMTrainConfig(epochs=4, batch_size=20), generator=g,
                  checkpoint=ckpt, resume=True)
    # more epochs are allowed: training continues from epoch 2
    hist = train_rbm(RBM(16, 8, generator=g), x, RBMTrainConfig(epochs=4, batch_size=20), generator=g,
                     checkpoint=ckpt, resume=True)
    assert [e["epoch"] for e in hist.epochs] == [0, 1, 2, 3]


def test_checkpoint_helper_round_trips_optimiser_and_generator(tmp_path):
    torch.manual_seed(0)  # only for the throw-away module's init, not part of the oracle
    lin = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(lin.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        lin(torch.ones(2, 4)).sum().backward()
        opt.step()
    g = make_generator(11)
    g_copy = make_generator(0)
    g_copy.set_state(g.get_state())
    t, info = ck.optimizer_tensors(opt)
    path = tmp_path / "x.safetensors"
    ck.save_checkpoint(path, kind="demo", tensors={**t, "w": lin.weight}, meta={"optim": info, "step": 3},
                       generator=g)
    expected_next = torch.rand(5, generator=g)
    opt2 = torch.optim.Adam(lin.parameters(), lr=0.1)
    g2 = make_generator(12345)
    tensors, meta = ck.load_checkpoint(path, kind="demo", generator=g2)
    ck.load_optimizer_tensors(path, opt2, tensors, meta["optim"])
    assert meta["step"] == 3 and ck.GENERATOR_KEY not in tensors
    assert torch.equal(torch.rand(5, generator=g2), expected_next)
    for p in lin.parameters():
        for k, v in opt.state[p].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(opt2.state[p][k]))
    with pytest.raises(ModelFileError, match="expected a 'other' file"):
        ck.load_checkpoint(path, kind="other")
    assert ck.due(3, 3, 10) and ck.due(10, 3, 10) and not ck.due(4, 3, 10)


# -- the command line, killed for real ---------------------------------------------------------
CLI_ARGS = ["--layers", "24,12", "--epochs", "8", "--batch-size", "25", "--finetune-epochs", "6",
            "--retrain-all", "--device", "cpu", "--quiet", "--seed", "3"]


def _cli(folder: Path, resume=False):
    cmd = [sys.executable, "-c", "import torch, sys; torch.set_num_threads(1); from deepbelief.cli import main; "
           "sys.exit(main(sys.argv[1:]))", "train", *CLI_ARGS, "-o", str(folder / "model.safetensors")]
    if folder.name != "ref":
        cmd += ["--checkpoint-dir", str(folder / "ck")]
    return cmd + (["--resume"] if resume else [])


def test_cli_train_killed_and_resumed_matches_uninterrupted(tmp_path):
    (tmp_path / "ref").mkdir()
    ref = subprocess.Popen(_cli(tmp_path / "ref"), env=_env(), cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)

    def make_cmd(folder):
        return _cli(folder), folder / "ck" / "layer0.ckpt.safetensors"

    # a kill that lands after the final model file was written is no mid-run kill: try again
    folder, _ = _killed_mid_run(1.5, 6, tmp_path, make_cmd, ok=lambda f: not (f / "model.safetensors").exists())
    assert not (folder / "model.safetensors").exists()
    print("killed with checkpoints", sorted(p.name for p in (folder / "ck").iterdir()))
    res = subprocess.run(_cli(folder, resume=True), env=_env(), cwd=ROOT, capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    out, err = ref.communicate(timeout=120)
    assert ref.returncode == 0, err.decode()
    for name in ("model.safetensors", "model.dbn.safetensors"):
        _assert_same(_weights(tmp_path / "ref" / name), _weights(folder / name))


def test_cli_resume_with_other_settings_is_refused(tmp_path):
    from deepbelief.recipes import get_recipe
    from deepbelief.run_folder import prepare as _prepare_checkpoint_dir

    r = get_recipe("default")
    _prepare_checkpoint_dir(tmp_path, r, 0, resume=False)
    _prepare_checkpoint_dir(tmp_path, get_recipe("default"), 0, resume=True)  # same settings: fine
    r.rbm.epochs = 99
    with pytest.raises(ConfigError, match=r"rbm.epochs: checkpoint 20, now 99"):
        _prepare_checkpoint_dir(tmp_path, r, 0, resume=True)
    with pytest.raises(ConfigError, match=r"seed: checkpoint 0, now 5"):
        _prepare_checkpoint_dir(tmp_path, get_recipe("default"), 5, resume=True)
