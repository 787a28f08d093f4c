"""The stack of RBMs: a Deep Belief Network.

After greedy training, the stack defines a generative model whose top two layers form an
undirected RBM and whose lower layers are directed, top-down (Hinton, Osindero & Teh
2006). With tied weights the recognition (bottom-up) pass uses W and the generative
(top-down) pass uses W^T of the same RBMs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from deepbelief.errors import ConfigError
from deepbelief.rbm import RBM, batched
from deepbelief.units import Bernoulli, Joint, Softmax


class DBN(nn.Module):
    """A stack of RBMs, bottom first; layer i's hidden units are layer i+1's visible units."""

    kind = "dbn"

    def __init__(self, rbms: list[RBM]):
        super().__init__()
        if not rbms:
            raise ConfigError("a DBN needs at least one RBM, got []")
        for i in range(1, len(rbms)):
            if rbms[i].n_visible != rbms[i - 1].n_hidden:
                raise ConfigError(
                    f"layer {i} has {rbms[i].n_visible} visible units but layer {i - 1} has "
                    f"{rbms[i - 1].n_hidden} hidden units"
                )
        self.rbms = nn.ModuleList(rbms)

    @property
    def sizes(self) -> list[int]:
        return [self.rbms[0].n_visible] + [r.n_hidden for r in self.rbms]

    @torch.no_grad()
    def transform(self, v: Tensor, n_layers: int | None = None, batch_size: int = 2048) -> Tensor:
        """Deterministic bottom-up pass of hidden means, shape (batch, sizes[n_layers])."""
        v = self.rbms[0].check_input("x", v)
        for rbm in list(self.rbms)[: n_layers or len(self.rbms)]:
            v = batched(rbm.mean_hidden, v, batch_size)
        return v

    @torch.no_grad()
    def sample(self, n: int, steps: int = 1000, generator: torch.Generator | None = None) -> Tensor:
        """Fantasies, shape (n, n_visible of the bottom RBM): ``steps`` sweeps of alternating
        Gibbs sampling in the top RBM from uniform noise (binarised for binary units), the
        last half-step as means (less noisy images), then one top-down pass of means through
        the directed layers below (Hinton, Osindero & Teh 2006, section 2)."""
        top = self.rbms[-1]
        v = torch.rand((n, top.n_visible), generator=generator, device=top.W.device, dtype=top.W.dtype)
        if top.visible.is_binary:
            v = (v < 0.5).to(v.dtype)
        v = top.gibbs(v, steps - 1, generator) if steps > 1 else v
        v = top.mean_visible(top.sample_hidden(v, generator))
        for r in reversed(list(self.rbms)[:-1]):
            v = r.mean_visible(v)
        return v

    def config(self) -> dict:
        return {"layers": [r.config() for r in self.rbms]}

    @classmethod
    def from_config(cls, cfg: dict) -> "DBN":
        return cls([RBM.from_config(c) for c in cfg["layers"]])


# -- the labelled generative DBN (Hinton, Osindero & Teh 2006) ------------------------------
class GenerativeDBN(nn.Module):
    """A DBN that models the joint distribution of images and their labels.

    Layers (HOT 2006, figure 1): the data, directed layers ``lower`` (e.g. 784-500-500),
    and a top RBM whose visible layer joins the last features and ``n_labels`` softmax
    label units, ``Joint([Bernoulli(500), Softmax(10)])``, with e.g. 2000 hidden units.

    Parameters of lower layer i (an ``RBM`` between layers i and i+1):

    - ``lower[i].W`` (n_i, n_{i+1}) and ``lower[i].visible.bias`` (n_i,): the *generative*
      (top-down) weights and biases, p(s_i = 1 | s_{i+1}) = sigmoid(s_{i+1} W^T + b);
    - ``lower[i].hidden.bias`` (n_{i+1},): the *recognition* (bottom-up) bias;
    - the recognition weights: ``lower[i].W`` itself while the model is *tied* (after
      greedy training), a separate copy ``rec_weights[i]`` once ``untie_()`` has run
      (contrastive wake-sleep then moves the two apart).

    The biases need no copy: greedy training already gives every layer one bias that is
    only used bottom-up (the hidden bias of the RBM below it) and one that is only used
    top-down (the visible bias of the RBM above it, or of the top RBM for the last layer).
    """

    kind = "generative_dbn"

    def __init__(self, lower: list[RBM], top: RBM, *, untied: bool = False):
        super().__init__()
        groups = getattr(top.visible, "groups", None)
        if groups is None or len(groups) != 2 or not isinstance(groups[1], Softmax):
            raise ConfigError(
                "the top RBM of a generative DBN must have Joint([features, Softmax(n_labels)]) "
                f"visible units, got {top.visible.config()}"
            )
        sizes = [lower[0].n_visible] + [r.n_hidden for r in lower] if lower else [groups[0].n]
        for i in range(1, len(lower)):
            if lower[i].n_visible != lower[i - 1].n_hidden:
                raise ConfigError(f"lower layer {i} has {lower[i].n_visible} visible units but layer "
                                  f"{i - 1} has {lower[i - 1].n_hidden} hidden units")
        if lower and groups[0].n != sizes[-1]:
            raise ConfigError(f"the top RBM's feature group has {groups[0].n} units but the last lower "
                              f"layer has {sizes[-1]} hidden units")
        self.lower = nn.ModuleList(lower)
        self.top = top
        self.n_labels = groups[1].n
        self.n_features = groups[0].n
        self.rec_weights = nn.ParameterList()
        if untied:
            self.untie_()

    # -- structure ----------------------------------------------------------------------
    @classmethod
    def build(cls, sizes: list[int], n_labels: int, *, generator: torch.Generator | None = None,
              weight_std: float = 0.01) -> "GenerativeDBN":
        """Fresh model with Bernoulli layers ``sizes`` (e.g. [784, 500, 500, 2000]) and labels.

        The last size is the top RBM's hidden layer; the one before it the feature layer that
        is joined with the labels.
        """
        from deepbelief.errors import check_int

        if not isinstance(sizes, (list, tuple)) or len(sizes) < 2:
            raise ConfigError(f"sizes must list at least two layer sizes (features, top), got {sizes!r}")
        sizes = [check_int(f"sizes[{i}]", s, minimum=1) for i, s in enumerate(sizes)]
        n_labels = check_int("n_labels", n_labels, minimum=2)
        lower = [RBM(a, b, weight_std=weight_std, generator=generator) for a, b in zip(sizes[:-2], sizes[1:-1])]
        top = RBM(Joint([Bernoulli(sizes[-2]), Softmax(n_labels)]), Bernoulli(sizes[-1]),
                  weight_std=weight_std, generator=generator)
        return cls(lower, top)

    @property
    def sizes(self) -> list[int]:
        """Layer sizes from the data to the top hidden layer (labels not counted)."""
        return [r.n_visible for r in self.lower] + [self.n_features, self.top.n_hidden]

    @property
    def tied(self) -> bool:
        return len(self.rec_weights) == 0

    @torch.no_grad()
    def untie_(self) -> "GenerativeDBN":
        """Give the lower layers separate recognition weights (copies of the tied ones)."""
        if self.tied:
            self.rec_weights = nn.ParameterList(nn.Parameter(r.W.detach().clone()) for r in self.lower)
        return self

    def recognition_weights(self) -> list[Tensor]:
        """Bottom-up weights of the lower layers, each (n_i, n_{i+1})."""
        return [r.W for r in self.lower] if self.tied else list(self.rec_weights)

    def generative_weights(self) -> list[Tensor]:
        """Top-down weights of the lower layers, each (n_i, n_{i+1}) (used as s_{i+1} W^T)."""
        return [r.W for r in self.lower]

    # -- bottom-up ----------------------------------------------------------------------
    def rec_input(self, i: int, s: Tensor) -> Tensor:
        """Input of layer i+1 from layer i's states ``s`` (batch, n_i) through the recognition weights."""
        r = self.lower[i]
        w = r.W if self.tied else self.rec_weights[i]
        return r.visible.scale(s) @ w

    def rec_mean(self, i: int, s: Tensor) -> Tensor:
        """q(s_{i+1} = 1 | s_i) = sigmoid(s_i R_i + c_i), shape (batch, n_{i+1})."""
        return self.lower[i].hidden.mean(self.rec_input(i, s))

    @torch.no_grad()
    def features(self, x: Tensor, batch_size: int = 2048) -> Tensor:
        """Deterministic bottom-up pass of probabilities to the feature layer, (batch, n_features)."""
        x = self._check_x(x)

        def up(s):
            for i in range(len(self.lower)):
                s = self.rec_mean(i, s)
            return s

        return batched(up, x, batch_size)

    # -- classification by free energy ---------------------------------------------------
    def label_free_energies(self, f: Tensor) -> Tensor:
        """F([f, e_k]) of the top RBM for every label k, shape (batch, n_labels).

        F(v) = E_v(v) + F_h(s_v(v) W) (rbm.py). The hidden input of [f, e_k] is f W_f + W_l[k],
        so the ten free energies cost one (batch, n_features) x (n_features, n_hidden) matmul
        plus ten cheap softplus sums; nothing is sampled (HOT 2006, section 6).
        """
        top = self.top
        feat, lab = top.visible.groups
        nf = self.n_features
        xf = feat.scale(f) @ top.W[:nf]  # (batch, n_hidden)
        xl = top.W[nf:]  # (n_labels, n_hidden): the input each one-hot label adds
        b, nl, nh = f.shape[0], self.n_labels, top.n_hidden
        hid = top.hidden.free_energy((xf.unsqueeze(1) + xl.unsqueeze(0)).reshape(b * nl, nh)).reshape(b, nl)
        eye = torch.eye(nl, device=f.device, dtype=f.dtype)
        return feat.energy(f).unsqueeze(1) + lab.energy(eye).unsqueeze(0) + hid

    @torch.no_grad()
    def predict_log_proba(self, x, batch_size: int = 1000) -> Tensor:
        """log p(label | image) = -F([f, e_k]) - logsumexp_j(-F([f, e_j])), shape (batch, n_labels),
        with f the deterministic bottom-up features of the image."""
        f = self.features(x)
        return batched(lambda t: torch.log_softmax(-self.label_free_energies(t), -1), f, batch_size)

    def predict_proba(self, x, batch_size: int = 1000) -> Tensor:
        """p(label | image), shape (batch, n_labels)."""
        return self.predict_log_proba(x, batch_size).exp()

    def predict(self, x, batch_size: int = 1000) -> Tensor:
        """The label with the lowest free energy, shape (batch,), int64."""
        return self.predict_log_proba(x, batch_size).argmax(-1)

    @torch.no_grad()
    def error_rate(self, x, y, batch_size: int = 1000) -> Tensor:
        """Fraction of ``x`` whose predicted label differs from ``y``, a 0-d tensor on the device."""
        pred = self.predict(x, batch_size)
        return (pred != torch.as_tensor(y, device=pred.device)).float().mean()

    # -- generation -------------------------------------------------------------------------
    def one_hot(self, y, *, n_rows: int | None = None, name: str = "label") -> Tensor:
        """One-hot rows (batch, n_labels) of int labels ``y``, validated under ``name``."""
        from deepbelief.errors import as_labels

        w = self.top.W
        t = as_labels(name, y, n_classes=self.n_labels, n_rows=n_rows, device=w.device)
        return torch.nn.functional.one_hot(t, self.n_labels).to(w.dtype)

    @torch.no_grad()
    def gibbs_top(self, pen: Tensor, lab: Tensor, steps: int, gen: torch.Generator | None, *,
                  clamp: bool = False, frames_every: int = 0) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
        """Alternating Gibbs sampling in the top RBM from visible state [pen, lab].

        Each step samples h ~ p(h | pen, lab), then pen ~ p(pen | h) and (unless ``clamp``)
        lab ~ p(lab | h). Returns (pen, lab, pen_prob, frames): the last states, the feature
        probabilities p(pen | h) of the last step (what the top-down pass uses, less noisy
        than the states) and every ``frames_every``-th pen_prob (for animations).
        Shapes: pen (batch, n_features), lab (batch, n_labels).
        """
        top = self.top
        feat, labu = top.visible.groups
        nf = self.n_features
        pen_prob = None
        frames = []
        v = torch.cat([pen, lab], -1)
        for s in range(steps):
            h = top.sample_hidden(v, gen)
            xv = top.visible_input(h)
            pen_prob = feat.mean(xv[:, :nf])
            pen = feat.sample(xv[:, :nf], gen)
            if not clamp:
                lab = labu.sample(xv[:, nf:], gen)
            v = torch.cat([pen, lab], -1)
            if frames_every and (s + 1) % frames_every == 0:
                frames.append(pen_prob)
        if pen_prob is None:  # no step: send the current states down
            pen_prob = pen
        return pen, lab, pen_prob, frames

    @torch.no_grad()
    def down(self, pen: Tensor, gen: torch.Generator | None = None, *, sample: bool = False) -> Tensor:
        """Top-down pass through the generative weights from the feature layer to the data.

        With ``sample=False`` each layer sends down its probabilities (a mean-field pass);
        with ``sample=True`` hidden layers are sampled and the data layer's probabilities are
        returned. Shape (batch, n_0).
        """
        s = pen
        for i in reversed(range(len(self.lower))):
            p = self.lower[i].mean_visible(s)
            s = self.lower[i].sample_visible(s, gen) if sample and i > 0 else p
        return s

    @torch.no_grad()
    def sample(self, n: int, *, label=None, steps: int = 1000, generator: torch.Generator | None = None,
               sample_down: bool = False, frames_every: int = 0, return_frames: bool = False,
               start: Tensor | None = None, init: str = "top-noise"):
        """Generate ``n`` images: Gibbs sampling in the top RBM, then one top-down pass.

        Args:
            n: number of independent chains (images).
            label: None (labels are sampled with the rest), an int (every chain clamped to
                that class) or a sequence of ``n`` ints (one clamped label per chain).
            steps: Gibbs sweeps in the top RBM (the lecture's demo uses about 1000).
            generator: the run's generator (on the model's device).
            sample_down: sample the hidden layers of the top-down pass instead of sending
                probabilities down; the data layer gives probabilities either way.
            frames_every: with ``return_frames``, keep the image every this many steps.
            start: optional (n, n_0) images: the chains start from the features of their
                bottom-up pass (sampled from its probabilities) instead of ``init``'s start
                (HOT 2006, figure 9, starts from random binary images).
            init: without ``start``, where the chains begin: ``"top-noise"`` (random binary
                states of the top RBM's hidden units, each on with probability 1/2, and the
                features sampled from them: the start of Hinton's digit-generation movies;
                the default) or ``"biases"`` (the features sampled from their biases alone;
                the default until 2026-12-06: on the hot2006 model its chains for the 1s
                were still in other digits' modes after 1,000 sweeps, where top-noise chains
                had already reached the 5,000-sweep agreement, benchmarks/RESULTS.md).
        Returns:
            (n, n_0) pixel probabilities; with ``return_frames`` also the labels (n,) and a
            list of (n, n_0) frames of the chains.
        """
        from deepbelief.errors import check_choice, check_int

        n = check_int("n", n, minimum=1)
        steps = check_int("steps", steps, minimum=0)
        frames_every = check_int("frames_every", frames_every, minimum=0)
        top, dev, dt = self.top, self.top.W.device, self.top.W.dtype
        feat, labu = top.visible.groups
        clamp = label is not None
        if clamp:
            ys = [label] * n if isinstance(label, int) else label
            lab = self.one_hot(ys, n_rows=n)
        else:
            lab = labu.sample(torch.zeros(n, self.n_labels, device=dev, dtype=dt), generator)
        check_choice("init", init, ("biases", "top-noise"))
        if start is None and init == "top-noise":  # random binary top-level states, then down
            h = (torch.rand(n, top.n_hidden, generator=generator, device=dev, dtype=dt) < 0.5).to(dt)
            pen = feat.sample(top.visible_input(h)[:, : self.n_features], generator)
        elif start is None:  # start the features from their biases alone (independent of any data)
            pen = feat.sample(torch.zeros(n, self.n_features, device=dev, dtype=dt), generator)
        else:
            up = self.features(self._check_x(start))
            if up.shape[0] != n:
                raise ConfigError(f"start must hold one image per chain ({n}), got {up.shape[0]}")
            pen = (torch.rand(up.shape, generator=generator, device=dev, dtype=dt) < up).to(dt)
        pen, lab, pen_prob, frames = self.gibbs_top(pen, lab, steps, generator, clamp=clamp,
                                                    frames_every=frames_every if return_frames else 0)
        x = self.down(pen_prob, generator, sample=sample_down)
        if return_frames:
            return x, lab.argmax(-1), [self.down(f) for f in frames]
        return x

    # -- io ----------------------------------------------------------------------------------
    def _check_x(self, x) -> Tensor:
        if self.lower:
            return self.lower[0].check_input("x", x)
        from deepbelief.errors import as_data

        return as_data("x", x, n_features=self.n_features, device=self.top.W.device, dtype=self.top.W.dtype)

    def config(self) -> dict:
        return {"lower": [r.config() for r in self.lower], "top": self.top.config(), "untied": not self.tied}

    @classmethod
    def from_config(cls, cfg: dict) -> "GenerativeDBN":
        return cls([RBM.from_config(c) for c in cfg["lower"]], RBM.from_config(cfg["top"]),
                   untied=bool(cfg.get("untied", False)))
