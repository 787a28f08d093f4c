"""The training steps of an unrolled net (a ``DeepClassifier``): a hand-written forward and
backward pass (``FastBackprop``) and the conjugate-gradient step on one batch (``cg_batch``).

``FastBackprop`` runs ``addmm`` and in-place activations into buffers reused across steps,
writes the gradients straight into each parameter's ``.grad``, and in the top-only phase
skips the backward pass below the output layer. Per step this removes the autograd graph
and most allocations, which dominate on a GPU at batch 100 (the matmuls of a
784-500-500-2000-10 step take ~0.1 ms, the autograd step ~1.6 ms on an H100). Autograd on
``net(x, gen)`` stays the reference: both draw the dropout masks from the run's generator
in the same order and shapes, so they give the same gradients up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepbelief import cg
from deepbelief.classifier import DeepClassifier
from deepbelief.errors import ConfigError

__all__ = ["FastBackprop", "cg_batch", "cross_entropy_and_delta"]

#: the activations whose derivatives FastBackprop writes by hand
_FAST_ACTIVATIONS = ("sigmoid", "relu", "softplus", "identity")


def cross_entropy_and_delta(logits: Tensor, onehot: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row softmax cross-entropy ``-log p_y`` and its gradient ``p - onehot(y)`` with
    respect to the logits, each accurate relative to its own size.

    ``log_softmax`` and ``softmax - onehot`` compute ``log p_y`` and ``p_y - 1`` from a
    rounded ``p_y``: once the net is sure of a case (p_y = 1 - eps with eps below the
    unit rounding, 6e-8 in float32) both read exactly 0, and for eps a little above it they
    carry a relative error near 1. A fitted training batch is made of such cases, so its
    loss became rounding noise at the scale of a conjugate-gradient line search's expected
    decrease (the sufficient-decrease test turned into a coin toss and the searches ran out
    of evaluations; benchmarks/RESULTS.md, "Session 2026-12-05, second"). Here, with m = max_j z_j,
    r = sum_{j != y} exp(z_j - m) and e_y = exp(z_y - m):

        -log p_y   = (m - z_y) + log1p(expm1(z_y - m) + r)      (s = e_y + r)
        p_j        = exp(z_j - m) / s                  for j != y
        p_y - 1    = -r / s                                       (exact: s - e_y = r)

    Args:
        logits: (b, C) the logits z.
        onehot: (b, C) bool, True at each row's label y.
    Returns:
        (loss, delta): (b,) the cross-entropy of each row and (b, C) ``p - onehot``.
    """
    m = logits.amax(1, keepdim=True)
    e = torch.sub(logits, m).exp_()  # (b, C)
    r = e.masked_fill(onehot, 0.0).sum(1, keepdim=True)  # (b, 1) the other classes' mass
    below = m - (logits * onehot).sum(1, keepdim=True)  # m - z_y >= 0
    s_minus_1 = torch.expm1(-below).add_(r)  # s - 1 = (e_y - 1) + r
    loss = below.add_(torch.log1p(s_minus_1)).squeeze(1)
    s = s_minus_1.add_(1.0)
    delta = torch.where(onehot, r.div_(s).neg_(), e.div_(s))
    return loss, delta


class FastBackprop:
    """Hand-written training step of a ``DeepClassifier``: the softmax cross-entropy averaged
    over the batch and its gradient, written into each parameter's ``.grad``.

    Forward, hidden layers l = 1..L, h_0 = drop(x) (shapes: b rows, n_l units):
        z_l = h_{l-1} W_l^T + b_l            (b, n_l)
        a_l = act(z_l);   h_l = drop(a_l) = a_l * keep_l / (1 - p)
        logits = h_L W_o^T + b_o             (b, C)
    Backward (back-propagation, Rumelhart, Hinton & Williams 1986):
        d_o = (softmax(logits) - onehot(y)) / b     (cross_entropy_and_delta)
        dW_o = d_o^T h_L,   db_o = sum over rows of d_o,   g_L = d_o W_o
        d_l = g_l * keep_l / (1 - p) * act'(z_l)
        dW_l = d_l^T h_{l-1},   db_l = sum over rows of d_l,   g_{l-1} = d_l W_l
    with act' = a (1 - a) for sigmoid, [a > 0] for relu, sigmoid(z) for softplus, 1 for
    identity. ``top_only`` stops after dW_o, db_o (the other layers are frozen then).

    The dropout masks come from the generator in ``DeepClassifier._drop``'s order and shapes
    (input first, then after each hidden activation), so a step here and autograd on
    ``net(x, gen)`` use the same random numbers and agree up to float rounding. Activations
    and gradients live in buffers kept per batch size and reused; nothing syncs the host.
    """

    def __init__(self, net: DeepClassifier):
        if not isinstance(net, DeepClassifier):
            raise ConfigError(f"net must be a DeepClassifier, got {type(net).__name__}")
        self.net = net
        self._buffers: dict[int, dict] = {}

    @staticmethod
    def supports(net: nn.Module) -> bool:
        """True unless a subclass changed the maths this step re-implements, or an
        activation has no hand-written derivative here (then autograd is used)."""
        t = type(net)
        return isinstance(net, DeepClassifier) and all(
            getattr(t, m) is getattr(DeepClassifier, m) for m in ("forward", "features", "_drop")) and all(
            a in _FAST_ACTIVATIONS for a in net.activations)

    def _buffers_for(self, b: int) -> dict:
        bufs = self._buffers.get(b)
        w = self.net.out.weight
        if bufs is None or bufs["logits"].device != w.device or bufs["logits"].dtype != w.dtype:
            def new(n, dtype=w.dtype):
                return torch.empty((b, n), device=w.device, dtype=dtype)

            hid = self.net.sizes[1:]
            bufs = {
                "x": new(self.net.sizes[0]),           # input after dropout
                "x_keep": new(self.net.sizes[0], torch.bool),
                "a": [new(n) for n in hid],           # z_l, then a_l in place (softplus: z_l stays)
                "h": [new(n) for n in hid],           # a_l after dropout
                "u": [new(n) for n in hid],           # uniforms for the mask, then act'(z_l)
                "keep": [new(n, torch.bool) for n in hid],
                "g": [new(n) for n in hid],           # g_l, then d_l in place
                "logits": new(self.net.n_classes),
                "onehot": new(self.net.n_classes, torch.bool),
                "classes": torch.arange(self.net.n_classes, device=w.device).unsqueeze(0),  # (1, C)
            }
            self._buffers = {b: bufs}  # one batch size at a time: a step of another size rebuilds them
        return bufs

    @staticmethod
    def _drop(a: Tensor, p: float, gen, u: Tensor, keep: Tensor, out: Tensor) -> Tensor:
        # the same draw as DeepClassifier._drop: torch.rand(shape) is uniform_ on a new tensor
        u.uniform_(generator=gen)
        torch.ge(u, p, out=keep)
        return torch.mul(a, keep, out=out).div_(1.0 - p)

    @staticmethod
    def fuses(opt) -> bool:
        """True when ``step(..., sgd=opt)`` can apply ``opt``'s update itself: a plain momentum
        SGD (one parameter group, momentum > 0, no Nesterov, minimising)."""
        if type(opt) is not torch.optim.SGD or len(opt.param_groups) != 1:
            return False
        g = opt.param_groups[0]
        return g["momentum"] > 0 and not g["nesterov"] and not g["maximize"]

    @torch.no_grad()
    def step(self, x: Tensor, y: Tensor, generator: torch.Generator | None, loss_sum: Tensor,
             top_only: bool = False, sgd: torch.optim.SGD | None = None,
             weight_scales: list[float] | None = None) -> None:
        """One forward/backward pass on a batch; adds the batch's mean loss to ``loss_sum``.

        Args:
            x: (b, n_inputs) inputs; y: (b,) integer labels (int64), on the net's device.
            generator: draws the dropout masks (unused without dropout or in eval mode).
            loss_sum: 0-d tensor on the device, incremented in place (no host sync).
            top_only: compute only the output layer's gradient.
            sgd: a momentum SGD over the parameters this step trains (``fuses(sgd)``): its
                update is applied here, the gradient product accumulating straight into the
                momentum buffer (``_fused_sgd_``), in place of ``.grad`` and ``sgd.step()``.
            weight_scales: one factor per layer (the hidden layers, then the output layer) that
                multiplies that layer's weight gradient, not its bias's (None: all 1); see
                ``weight_gradient_scales``.
        Without ``sgd``, after the call each parameter whose gradient was computed holds it in
        ``.grad``.
        """
        net = self.net
        b = x.shape[0]
        B = self._buffers_for(b)
        p_in, p = (net.input_dropout, net.dropout) if net.training else (0.0, 0.0)
        layers = list(net.hidden) + [net.out]
        for lin in [] if sgd is not None else layers[-1:] if top_only else layers:
            for par in (lin.weight, lin.bias):
                if par.grad is None:
                    par.grad = torch.zeros_like(par)

        h = self._drop(x, p_in, generator, B["x"], B["x_keep"], B["x"]) if p_in > 0 else x
        inputs = [h]  # h_0 .. h_L: the inputs of each layer's product
        for i, (lin, act) in enumerate(zip(net.hidden, net.activations)):
            a = torch.addmm(lin.bias, h, lin.weight.T, out=B["a"][i])
            if act == "sigmoid":
                a.sigmoid_()
            elif act == "relu":
                a.relu_()
            elif act == "softplus":
                a = F.softplus(a)  # a new tensor: z_l stays in B["a"][i] for act'
            h = self._drop(a, p, generator, B["u"][i], B["keep"][i], B["h"][i]) if p > 0 else a
            inputs.append(h)
        logits = torch.addmm(net.out.bias, h, net.out.weight.T, out=B["logits"])

        onehot = torch.eq(B["classes"], y.unsqueeze(1), out=B["onehot"])  # element-wise: deterministic on CUDA too
        loss, d = cross_entropy_and_delta(logits, onehot)
        loss_sum.add_(loss.mean())
        d.div_(b)  # (softmax - onehot) / b
        L = len(net.hidden)
        # each layer's delta is sent down before the layer's update (sgd changes its weights)
        g = torch.mm(d, net.out.weight, out=B["g"][L - 1]) if L and not top_only else None
        scales = weight_scales if weight_scales is not None else [1.0] * (L + 1)
        self._gradient(net.out, d, h, sgd, scales[L])
        if top_only:
            return
        for i in reversed(range(L)):
            lin, act = net.hidden[i], net.activations[i]
            if p > 0:  # the backward of a * keep / (1 - p), in autograd's order
                g.div_(1.0 - p).mul_(B["keep"][i])
            a, u = B["a"][i], B["u"][i]
            if act == "sigmoid":
                g.mul_(torch.addcmul(a, a, a, value=-1.0, out=u))  # a - a^2 = a (1 - a)
            elif act == "relu":
                g.mul_(torch.sign(a, out=u))  # a >= 0, so sign(a) = [a > 0]
            elif act == "softplus":
                g.mul_(torch.sigmoid(a, out=u))  # a holds z_l here
            below = torch.mm(g, lin.weight, out=B["g"][i - 1]) if i > 0 else None
            self._gradient(lin, g, inputs[i], sgd, scales[i])
            g = below

    @staticmethod
    def _gradient(lin: nn.Linear, d: Tensor, h: Tensor, sgd, scale: float = 1.0) -> None:
        """The layer's gradient dW = scale d^T h, db = sum of d's rows: into ``.grad``, or into
        ``sgd``'s update."""
        if sgd is None:
            if scale == 1.0:
                torch.mm(d.T, h, out=lin.weight.grad)
            else:
                torch.addmm(lin.weight.grad, d.T, h, beta=0.0, alpha=scale, out=lin.weight.grad)
            torch.sum(d, 0, out=lin.bias.grad)
            return
        _fused_sgd_(lin.weight, sgd, lambda buf, beta, alpha: torch.addmm(buf, d.T, h, beta=beta, alpha=alpha * scale,
                                                                          out=buf))
        _fused_sgd_(lin.bias, sgd, lambda buf, beta, alpha: buf.mul_(beta).add_(d.sum(0), alpha=alpha))


def weight_gradient_scales(net: DeepClassifier) -> list[float]:
    """The factor q^2 per layer (hidden layers, then the output layer) that turns inverted
    dropout's weight gradient into the step of the papers' parametrisation, q the keep
    probability of the layer's inputs (``FinetuneConfig.paper_dropout_steps``).

    Inverted dropout trains W with inputs m h / q; the papers train W' = W / q on inputs m h
    (Srivastava et al. 2014; Hinton et al. 2012). The forward passes agree, but dL/dW' = q dL/dW, and a
    step -lr dL/dW' on W' is the step -lr q^2 dL/dW on W = q W'."""
    q_in, q = 1.0 - net.input_dropout, 1.0 - net.dropout
    return [q_in * q_in] + [q * q] * len(net.hidden)


def _fused_sgd_(p: Tensor, sgd: torch.optim.SGD, accumulate) -> None:
    """torch.optim.SGD's momentum update of ``p`` (its ``momentum_buffer`` state, so a
    checkpoint or a later ``sgd.step()`` carries on) with the gradient G never stored:
    ``accumulate(buf, beta, alpha)`` makes buf = beta buf + alpha G in one pass (for a weight,
    one ``addmm``: the gradient's product itself). As torch: the first step sets buf = G + wd p,
    later ones buf = m buf + (1 - dampening) (G + wd p); then p -= lr buf. The same sums as
    ``sgd.step()`` in another order, so equal up to float rounding; it saves writing and
    reading G and two passes over every buffer (benchmarks/fused_sgd_ab.py: 4.4% of a step)."""
    group, state = sgd.param_groups[0], sgd.state[p]
    lr, m, wd, damp = group["lr"], group["momentum"], group["weight_decay"], group["dampening"]
    buf = state.get("momentum_buffer")
    if buf is None:
        buf = state["momentum_buffer"] = accumulate(torch.zeros_like(p), 0.0, 1.0)
        if wd:
            buf.add_(p, alpha=wd)
    else:
        accumulate(buf, m, 1.0 - damp)
        if wd:
            buf.add_(p, alpha=(1.0 - damp) * wd)
    p.add_(buf, alpha=-lr)


def cg_batch(net: DeepClassifier, xb: Tensor, yb: Tensor, cfg, fast: FastBackprop | None, loss_sum: Tensor,
             top_only: bool, first_decrease: float | None = None) -> cg.CGResult:
    """``cfg.cg_line_searches`` conjugate-gradient line searches on one batch (deepbelief.cg),
    a fresh search from steepest descent, as ``minimize`` was called per batch in Hinton &
    Salakhutdinov (2006)'s code. The objective is the batch's mean cross-entropy plus
    weight_decay / 2 * ||theta||^2 over the parameters trained (the objective whose gradient
    SGD's ``weight_decay`` follows). With ``top_only`` the features of the frozen layers are
    computed once and only the output layer's (W, b) are searched over, as their code did
    for the first epochs. ``first_decrease``: minimize_cg's, e.g. the previous batch's
    ``last_decrease``. Adds the batch's cross-entropy before the update to ``loss_sum``;
    returns the search's record (its line searches and function evaluations)."""
    def vector_to_parameters(v, ps):  # copies: torch's helper would make the parameters views of v
        i = 0
        for p in ps:
            p.copy_(v[i : i + p.numel()].view_as(p))
            i += p.numel()

    b, wd = xb.shape[0], cfg.weight_decay
    layers = [net.out] if top_only else list(net.hidden) + [net.out]
    params = [p for lin in layers for p in (lin.weight, lin.bias)]
    first = []

    if top_only:
        with torch.no_grad():
            h = net.features(xb)  # (b, n_top): fixed while only the output layer moves
        onehot = F.one_hot(yb, net.n_classes).bool()
        n_w = net.out.weight.numel()

        def data_loss_grad(v):
            W, c = v[:n_w].view_as(net.out.weight), v[n_w:]
            loss, d = cross_entropy_and_delta(torch.addmm(c, h, W.T), onehot)  # (b,), (b, C)
            d.div_(b)
            return loss.mean(), torch.cat([(d.T @ h).reshape(-1), d.sum(0)])
    else:
        def data_loss_grad(v):
            vector_to_parameters(v, params)
            if fast is not None:
                f = torch.zeros((), device=v.device, dtype=v.dtype)
                fast.step(xb, yb, None, f)
            else:
                with torch.enable_grad():
                    net.zero_grad(set_to_none=True)
                    loss = F.cross_entropy(net(xb), yb)
                    loss.backward()
                f = loss.detach()
            return f, torch.cat([p.grad.reshape(-1) for p in params])

    def loss_grad(v):
        f, g = data_loss_grad(v)
        if not first:
            first.append(f.detach().clone())
        if wd:
            f = f + 0.5 * wd * torch.dot(v, v)
            g = g.add(v, alpha=wd)
        return f, g

    with torch.no_grad():
        x0 = torch.cat([p.detach().reshape(-1) for p in params])
        res = cg.minimize_cg(loss_grad, x0, line_searches=cfg.cg_line_searches, first_decrease=first_decrease)
        vector_to_parameters(res.x, params)
    loss_sum += first[0]
    return res
