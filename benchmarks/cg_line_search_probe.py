"""How many function evaluations the conjugate-gradient line searches take on a fitted net.

Loads a fine-tuning checkpoint of the ``hinton2006`` recipe (a sigmoid net, e.g. 784-500-500-2000-10,
its sizes read from the file; ``--checkpoint DIR/finetune.ckpt.safetensors``), then for each of the first ``--batches``
1,000-image batches of the MNIST training set runs one ``backprop.cg_batch`` (3 line searches,
all layers) from the checkpoint's weights and counts the calls of the objective. Reports the
evaluations per batch (mean and max), the mean loss before and after, and the checkpoint's
MNIST test error (``--batches 0``: only that). Written to measure
the effect of the accurate cross-entropy (``backprop.cross_entropy_and_delta``): run it at a
commit before and after that change on the same checkpoint.

    python benchmarks/cg_line_search_probe.py --checkpoint runs/h06s1e60/finetune.ckpt.safetensors
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import torch
from _common import START_COMMIT, machine_info, parser, write_json
from safetensors.torch import load_file

from deepbelief.backprop import FastBackprop, cg_batch
from deepbelief.classifier import DeepClassifier
from deepbelief.data import load_mnist
from deepbelief.finetune import FinetuneConfig


class _Counting(FastBackprop):
    """FastBackprop whose steps (one per evaluation of CG's objective) are counted."""

    calls = 0

    def step(self, *args, **kwargs):
        self.calls += 1
        return super().step(*args, **kwargs)


def main(argv=None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a hinton2006 fine-tuning checkpoint (safetensors)")
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--carry", action="store_true",
                   help="start each batch's search at the scale of the previous batch's last step")
    p.add_argument("--show", type=int, default=0, help="print the line searches of the first SHOW batches")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    state = load_file(args.checkpoint)
    weights = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
    n_hidden = sum(1 for k in weights if k.startswith("hidden.") and k.endswith(".weight"))
    sizes = [weights["hidden.0.weight"].shape[1]] + [weights[f"hidden.{i}.weight"].shape[0] for i in range(n_hidden)]
    net = DeepClassifier(sizes, ["sigmoid"] * n_hidden, weights["out.weight"].shape[0])
    net.load_state_dict(weights)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    ds = load_mnist(args.data_dir, download=False)
    cfg = FinetuneConfig(method="cg", cg_batch_size=1000, cg_line_searches=3)
    with torch.no_grad():
        test_error = 100 * float((net.eval()(ds.x_test).argmax(1) != ds.y_test).float().mean())
    print(f"checkpoint test error {test_error:.2f}%")
    fast = _Counting(net.train())
    evals, before, after, searches, carry = [], [], [], [], None
    t0 = time.perf_counter()
    for i in range(args.batches):  # each batch from the checkpoint's weights
        net.load_state_dict(start)
        xb, yb = ds.x_train[i * 1000:(i + 1) * 1000], ds.y_train[i * 1000:(i + 1) * 1000].long()
        fast.calls, loss = 0, torch.zeros(())
        res = cg_batch(net, xb, yb, cfg, fast, loss, top_only=False, first_decrease=carry)
        if args.carry and res.last_decrease is not None:
            carry = res.last_decrease
        evals.append(fast.calls)
        searches.append([dataclasses.asdict(r) for r in res.line_searches])
        if i < args.show:
            for r in res.line_searches:
                print(f"  batch {i}: f0 {r.f0:.6g} slope0 {r.slope0:.3g} step {r.step:.3g} f {r.f:.6g} "
                      f"slope {r.slope:.3g} evaluations {r.evaluations} accepted {r.accepted}")
        before.append(float(loss))
        fast.calls, end = 0, torch.zeros(())
        fast.step(xb, yb, None, end)  # the loss at the point reached (the same loss function as the search)
        after.append(float(end))
    seconds = time.perf_counter() - t0
    def mean(v):
        return statistics.mean(v) if v else None  # --batches 0: only the test error

    out = {"checkpoint": args.checkpoint, "test_error_pct": test_error, "batches": args.batches,
           "evaluations_per_batch": mean(evals), "evaluations_max": max(evals, default=None),
           "loss_before_mean": mean(before), "loss_after_mean": mean(after), "line_searches": searches, "seconds": seconds, "commit": START_COMMIT,
           "machine": machine_info("cpu")}
    if evals:
        print(f"{args.batches} batches: {out['evaluations_per_batch']:.1f} evaluations per batch (max {max(evals)}), "
              f"loss {out['loss_before_mean']:.3g} -> {out['loss_after_mean']:.3g}, {seconds:.1f}s")
    write_json(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
