"""Bit-exactness reference for issue 15: prints sha256 of parameter bytes of fixed-seed CPU runs."""
import hashlib, subprocess, sys, os
import torch
torch.set_num_threads(1)
from deepbelief.data import load_digits_dataset
from deepbelief.io import load_tensors


def h_tensors(d):
    h = hashlib.sha256()
    for k in sorted(d):
        t = d[k].detach().cpu().contiguous()
        h.update(k.encode()); h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def run_default(out):
    subprocess.run([sys.executable, "-m", "deepbelief", "train", "--device", "cpu", "--quiet", "-o", out],
                   check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL)
    return h_tensors(load_tensors(out)[0])


def main():
    from deepbelief import RBMTrainConfig, make_generator, train_rbm, pretrain_stack, pretrain_generative
    from deepbelief.rbm import RBM
    ds = load_digits_dataset()
    x, y = ds.x_train[:400], ds.y_train[:400]
    print("default_recipe", run_default("/tmp/b15/default.safetensors"))
    g = make_generator(1)
    r = RBM(64, 32, generator=g)
    train_rbm(r, x, RBMTrainConfig(epochs=3, method="pcd", n_chains=20, batch_size=20, lr=0.05), generator=g)
    print("pcd", h_tensors(r.state_dict()))
    from deepbelief.wake_sleep import UpDownConfig, up_down
    g = make_generator(2)
    m = pretrain_generative(x, y, [64, 24, 16, 32], RBMTrainConfig(epochs=2, batch_size=20), generator=g)
    up_down(m, x, y, UpDownConfig(epochs=2, batch_size=20), generator=g)
    print("updown", h_tensors(m.state_dict()))
    # real-valued stack + unroll + finetune (exercises base-rate biases, variance folding, activations)
    from deepbelief.finetune import unroll, finetune, FinetuneConfig
    from deepbelief.interop import rbm_layer
    g = make_generator(3)
    xs = (x - x.mean(0)) / (x.std(0) + 0.1)
    st = pretrain_stack(xs, [{"type": "gaussian", "n": 64}, {"type": "nrelu", "n": 20},
                             {"type": "stepped_sigmoid", "n": 12, "copies": 3}],
                        RBMTrainConfig(epochs=2, batch_size=20, lr=0.001), generator=g)
    net = unroll(st, 10, generator=g)
    finetune(net, xs, y, FinetuneConfig(epochs=2, batch_size=20), generator=g)
    lay = rbm_layer(st.rbms[0])
    print("realvalued", h_tensors({**st.state_dict(), **{"net." + k: v for k, v in net.state_dict().items()},
                                   **{"lay." + k: v for k, v in lay.state_dict().items()}}))

    # early stopping on validation, the output layer alone first, dropout; then conjugate gradients
    g = make_generator(4)
    net = unroll(st, 10, generator=g)
    hist = finetune(net, xs[:300], y[:300], FinetuneConfig(epochs=6, batch_size=20, top_only_epochs=2, patience=2,
                                                           dropout=0.2, lr_decay=0.9, final_momentum=0.9),
                    generator=g, valid=(xs[300:], y[300:]))
    print("finetune_valid", h_tensors(net.state_dict()), [round(r["loss"], 6) for r in hist])
    g = make_generator(5)
    net = unroll(st, 10, generator=g)
    finetune(net, xs, y, FinetuneConfig(epochs=2, method="cg", cg_batch_size=100, top_only_epochs=1), generator=g)
    print("cg", h_tensors(net.state_dict()))


main()
