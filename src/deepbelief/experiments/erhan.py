"""Does pre-training help, and why? (Erhan et al. 2009, 2010)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
from deepbelief.errors import check_int, resolve_device
from deepbelief.experiments.common import ERHAN_PUBLISHED, machine_info, mnist_subset
from deepbelief.finetune import (
    FinetuneConfig,
    error_rate,
    finetune,
    random_classifier,
    unroll,
)
from deepbelief.progress import Progress, epoch_of
from deepbelief.stacking import pretrain_stack
from deepbelief.training import RBMTrainConfig, make_generator


# -- Erhan et al. -------------------------------------------------------------------------
@dataclass
class ErhanConfig:
    """Sizes of the Erhan et al. experiment (their nets: 800-1200 units per layer, full MNIST).

    Images: the first ``n_train`` of MNIST's 60,000 train, the last ``n_valid`` of the 60,000
    early-stop, the first ``n_test`` of the 10,000 test.
    """

    n_train: int = 20_000
    n_valid: int = 5_000
    n_test: int = 10_000
    #: hidden units of every layer, and the depths compared (each with and without pre-training)
    width: int = 500
    depths: list = field(default_factory=lambda: [1, 2, 3, 4])
    #: networks of each kind and depth, one pre-trained stack per seed
    seeds: int = 3
    #: test images whose outputs trace each network's path in function space
    n_trajectory: int = 300
    #: CD-1 pre-training of every RBM (``--set pretrain.epochs=5``)
    pretrain: RBMTrainConfig = field(default_factory=lambda: _pretrain(10))
    #: SGD fine-tuning of every network, early-stopped on the validation images (``--set finetune.lr=0.05``)
    finetune: FinetuneConfig = field(default_factory=lambda: _finetune(20))

    @classmethod
    def preset(cls, size: str) -> "ErhanConfig":
        if size == "quick":
            return cls(n_train=5_000, n_valid=1_000, n_test=10_000, width=300, depths=[1, 2, 3], seeds=3,
                       n_trajectory=200, pretrain=_pretrain(5), finetune=_finetune(20))
        if size == "reduced":
            return cls(n_train=10_000, n_valid=2_000, n_test=10_000, width=400, depths=[1, 2, 3, 4], seeds=3,
                       pretrain=_pretrain(5), finetune=_finetune(15))
        return cls()


def _pretrain(epochs: int) -> RBMTrainConfig:
    """The experiment's CD-1 settings: momentum 0.5 -> 0.9 half-way (at most after 5 epochs)."""
    return RBMTrainConfig(epochs=epochs, batch_size=100, lr=0.05, momentum_switch=min(5, epochs // 2),
                          weight_decay=2e-4)


def _finetune(epochs: int) -> FinetuneConfig:
    return FinetuneConfig(epochs=epochs, batch_size=100, lr=0.1, lr_decay=0.97, top_only_epochs=0)


def erhan(cfg: ErhanConfig, *, device="auto", seed=0, data_dir=None, log=print) -> dict:
    """Depth x {pre-trained, random} x seeds; returns per-network test errors and trajectories.

    For each seed one stack of ``max(depths)`` RBMs is pre-trained greedily; the depth-d
    network unrolls its first d layers (greedy training of layer i never sees the layers
    above it, so this equals pre-training a depth-d stack with the same seed).
    """
    dev = resolve_device(device)
    check_int("seeds", cfg.seeds, minimum=1)
    x_tr, y_tr, x_va, y_va, x_te, y_te = mnist_subset(cfg.n_train, cfg.n_valid, cfg.n_test, data_dir=data_dir,
                                                      device=dev)
    x_traj = x_te[: cfg.n_trajectory]
    n_in = x_tr.shape[1]
    log(f"[erhan] train {x_tr.shape[0]}, valid {x_va.shape[0]}, test {x_te.shape[0]}; width {cfg.width}, "
        f"depths {cfg.depths}, {cfg.seeds} seeds; {dev}")
    rbm_cfg, ft = cfg.pretrain.validate(), cfg.finetune.validate()
    runs, t_start = [], time.perf_counter()
    n_nets, prog = cfg.seeds * len(cfg.depths) * 2, Progress()
    n_rbms = max(cfg.depths)
    for s in range(cfg.seeds):
        gen = make_generator(seed + s, dev)
        t_rbm = [time.perf_counter()]

        def rbm_epoch(i, epoch, m, s=s, t_rbm=t_rbm):  # progress of pre-training: RBM i, epoch i/N
            now = time.perf_counter()
            log(f"  seed {seed + s} rbm {i + 1}/{n_rbms} epoch {epoch_of(epoch, rbm_cfg.epochs)} "
                f"({prog.times(epoch, rbm_cfg.epochs, now - t_rbm[0], key=('rbm', s, i))})")
            t_rbm[0] = now

        dbn = pretrain_stack(x_tr, [n_in] + [cfg.width] * max(cfg.depths), rbm_cfg, generator=gen,
                             callback=rbm_epoch)
        for depth in cfg.depths:
            for pre in (True, False):
                gen_ft, t_net = make_generator(10_000 * (seed + s) + 100 * depth + int(pre), dev), time.perf_counter()
                if pre:
                    net = unroll(list(dbn.rbms)[:depth], 10, generator=gen_ft)
                else:
                    net = random_classifier([n_in] + [cfg.width] * depth, 10, generator=gen_ft, device=dev)
                outputs = []
                # the function-space trajectory: softmax outputs on a fixed test subset after each epoch
                # (one small device-to-host copy per epoch, outside the batch loop)
                hist = finetune(net, x_tr, y_tr, ft, generator=gen_ft, valid=(x_va, y_va),
                                callback=lambda e, m, net=net: outputs.append(
                                    net.predict_proba(x_traj).float().cpu().numpy().ravel()))
                err = 100 * float(error_rate(net, x_te, y_te))
                runs.append({"seed": seed + s, "depth": depth, "pretrained": pre, "test_error": err,
                             "best_epoch": hist[-1].get("best_epoch"), "trajectory": np.stack(outputs)})
                k = len(runs) - 1
                log(f"  network {k + 1}/{n_nets}: seed {seed + s} depth {depth} "
                    f"{'pre-trained' if pre else 'random     '}: test error {err:.2f}% "
                    f"({prog.times(k, n_nets, time.perf_counter() - t_net, key='nets')})")
    summary = []
    for depth in cfg.depths:
        for pre in (True, False):
            e = np.array([r["test_error"] for r in runs if r["depth"] == depth and r["pretrained"] == pre])
            summary.append({"depth": depth, "pretrained": pre, "mean": float(e.mean()),
                            "std": float(e.std(ddof=1)) if len(e) > 1 else 0.0, "n": int(len(e))})
    return {"experiment": "erhan", "config": dataclasses.asdict(cfg), "runs": runs, "summary": summary, "seed": seed,
            "seconds": time.perf_counter() - t_start, "machine": machine_info(dev)}


def erhan_markdown(res: dict, size: str, figures: dict) -> str:
    c, m = res["config"], res["machine"]
    out = [f"# Does pre-training help? Erhan et al. 2010 ({size})", "",
           f"`{m['command']}` on {m['device_name']} ({m['device']}), torch {m['torch']}, {m['date']}; "
           f"{res['seconds']:.0f} s in all.", "",
           f"{c['n_train']} MNIST training images ({c['n_valid']} for early stopping, {c['n_test']} test), "
           f"{c['width']} sigmoid units per layer, {c['pretrain']['epochs']} CD-1 epochs per layer, "
           f"{c['finetune']['epochs']} backprop epochs, {c['seeds']} seeds; test error at the best validation epoch.", "",
           "| depth | pre-trained: mean ± sd | random init: mean ± sd | paper (random -> pre-trained) |",
           "| --- | --- | --- | --- |"]
    for depth in c["depths"]:
        p = next(s for s in res["summary"] if s["depth"] == depth and s["pretrained"])
        r = next(s for s in res["summary"] if s["depth"] == depth and not s["pretrained"])
        pub = ERHAN_PUBLISHED.get(depth)
        pub_s = f"{pub[0]}% -> {pub[1]}%" if pub else "-"
        out.append(f"| {depth} | {p['mean']:.2f}% ± {p['std']:.2f} (n={p['n']}) | "
                   f"{r['mean']:.2f}% ± {r['std']:.2f} (n={r['n']}) | {pub_s} |")
    out += ["", f"![test errors]({figures['hist']})", "", f"![function-space trajectories]({figures['tsne']})", "",
            "Trajectories: each network's softmax outputs on the same "
            f"{c['n_trajectory']} test images after every epoch, concatenated into one vector, all networks "
            "embedded together with t-SNE; colour is the epoch, filled markers are pre-trained networks.", ""]
    if size != "full":
        out.append("A reduced configuration (a subset of MNIST, narrower/shallower, fewer epochs than the paper): "
                   "the absolute errors are higher than the paper's; the comparison is between the columns.")
    return "\n".join(out) + "\n"


def erhan_figures(res: dict, hist_path, tsne_path, seed: int = 0) -> None:
    from deepbelief.plotting import _pyplot, figure_png
    from sklearn.manifold import TSNE

    plt = _pyplot()
    depths = res["config"]["depths"]
    fig, axes = plt.subplots(1, len(depths), figsize=(3.2 * len(depths), 3.0), dpi=120, squeeze=False, sharey=True)
    errs = [r["test_error"] for r in res["runs"]]
    bins = np.linspace(min(errs) - 0.05, max(errs) + 0.05, 16)
    for ax, d in zip(axes[0], depths):
        for pre, colour in ((True, "tab:blue"), (False, "tab:red")):
            e = [r["test_error"] for r in res["runs"] if r["depth"] == d and r["pretrained"] == pre]
            ax.hist(e, bins=bins, alpha=0.6, color=colour, label="pre-trained" if pre else "random init")
        ax.set_title(f"{d} layer{'s' if d > 1 else ''}")
        ax.set_xlabel("test error (%)")
    axes[0][0].set_ylabel("networks")
    axes[0][0].legend(fontsize=8)
    figure_png(hist_path, fig)

    traj = [r["trajectory"] for r in res["runs"]]
    pts = np.concatenate(traj)
    perplexity = float(min(30, max(2, (pts.shape[0] - 1) // 3)))
    emb = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(pts)
    fig, ax = plt.subplots(figsize=(6.0, 5.0), dpi=120)
    i = 0
    for r, t in zip(res["runs"], traj):
        e = emb[i: i + len(t)]
        i += len(t)
        ax.plot(e[:, 0], e[:, 1], color="0.8", lw=0.5, zorder=1)
        sc = ax.scatter(e[:, 0], e[:, 1], c=np.arange(len(t)), cmap="viridis", s=14, zorder=2,
                        marker="o" if r["pretrained"] else "x", vmin=0, vmax=len(t) - 1)
    ax.scatter([], [], marker="o", c="k", label="pre-trained")
    ax.scatter([], [], marker="x", c="k", label="random init")
    ax.legend(fontsize=8)
    fig.colorbar(sc, ax=ax, label="epoch")
    ax.set_title("function-space trajectories (t-SNE)")
    ax.set_xticks([])
    ax.set_yticks([])
    figure_png(tsne_path, fig)
