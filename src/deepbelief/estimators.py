"""scikit-learn estimators: the only module that imports scikit-learn's estimator API.

Three estimators wrap the library's own RBM, greedy stacking and fine-tuning code:

- ``RBMTransformer``: one RBM trained with CD-k or PCD; ``transform(X)`` returns the
  hidden means E[h | v], shape (n_samples, n_components). Its attribute names mirror
  ``sklearn.neural_network.BernoulliRBM`` where they overlap (``components_``,
  ``intercept_hidden_``, ``intercept_visible_``, ``n_iter``, ``learning_rate``,
  ``batch_size``, ``n_components``), so it drops into code written for that class.
- ``DBNTransformer``: a greedily pre-trained stack (Hinton, Osindero & Teh 2006);
  ``transform(X)`` is the deterministic bottom-up pass to the top layer.
- ``DBNClassifier``: pre-training, then unrolling into a feed-forward net and
  discriminative fine-tuning with backprop (Hinton & Salakhutdinov 2006), optionally
  with dropout (Srivastava et al. 2014). ``net_`` is the fine-tuned ``torch.nn.Module``.

Conventions (scikit-learn's developer guide): ``__init__`` stores hyper-parameters only;
they are validated in ``fit``; learned state ends in ``_``; randomness enters once through
``random_state`` and becomes the run's one explicit ``torch.Generator``; inputs are numpy
arrays (or anything ``check_array`` accepts) and outputs are numpy arrays of the input's
floating dtype (float32 stays float32, everything else computes in float64).

Data ranges: with ``visible="bernoulli"`` (the default, as in BernoulliRBM) features must
lie in [0, 1] (scale them first, e.g. with ``MinMaxScaler(clip=True)``); with
``visible="gaussian"`` the estimator standardises each feature with the training mean
and standard deviation (``mean_``, ``scale_``) and uses Gaussian visible units with
learned variances, so any real-valued data is accepted.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from deepbelief.errors import ConfigError, DataError, check_choice, check_float, check_int, resolve_device
from deepbelief.rbm import RBM, batched
from deepbelief.units import kinds, unit_type

__all__ = ["RBMTransformer", "DBNTransformer", "DBNClassifier"]


def _torch_dtype(np_dtype) -> torch.dtype:
    return torch.float32 if np.dtype(np_dtype) == np.float32 else torch.float64


def _generator(random_state, device) -> torch.Generator:
    """The run's one generator, seeded from ``random_state`` (int, RandomState or None)."""
    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    return torch.Generator(device=device).manual_seed(seed)


def _to_numpy(t: torch.Tensor, dtype) -> np.ndarray:
    return t.detach().to("cpu").numpy().astype(dtype, copy=False)


class _Base(BaseEstimator):
    """Shared input handling: validation, dtype, device, standardisation."""

    def _record_params(self, params: dict) -> None:
        """Store every ``__init__`` argument as the attribute of its name, and nothing else
        (scikit-learn's rule: ``__init__`` records its parameters, ``fit`` validates them)."""
        for name, value in params.items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    def _check_common(self) -> None:
        check_choice("visible", self.visible, kinds("visible"))
        check_int("n_iter", self.n_iter, minimum=0)
        check_int("batch_size", self.batch_size, minimum=1)
        check_float("learning_rate", self.learning_rate, minimum=0.0, strict_min=True)
        check_choice("method", self.method, {"cd", "pcd"})
        check_int("k", self.k, minimum=1)
        check_int("verbose", int(self.verbose), minimum=0)

    def _lr(self) -> float:
        # Gaussian visible units need a much smaller rate (Hinton's practical guide, section 13.2)
        return self.learning_rate * (0.1 if unit_type(self.visible).standardized_data else 1.0)

    def _fit_input(self, X) -> torch.Tensor:
        self.device_ = resolve_device(self.device)
        self.dtype_ = _torch_dtype(X.dtype)
        x = torch.tensor(X, dtype=self.dtype_, device=self.device_)  # a copy: X is never modified
        if unit_type(self.visible).standardized_data:
            mu = x.mean(0)
            sd = x.std(0, unbiased=False).clamp_min(1e-6) if x.shape[0] > 1 else torch.ones_like(mu)
            self.mean_, self.scale_ = _to_numpy(mu, np.float64), _to_numpy(sd, np.float64)
            x = (x - mu) / sd
        elif unit_type(self.visible).unit_interval:
            self._check_unit_interval("X", x)
        return x  # other unit types: the RBM checks its data (Units.check_data)

    def _input(self, X) -> torch.Tensor:
        x = torch.tensor(X, dtype=self.dtype_, device=self.device_)
        if unit_type(self.visible).standardized_data:
            mu = torch.as_tensor(self.mean_, dtype=self.dtype_, device=self.device_)
            sd = torch.as_tensor(self.scale_, dtype=self.dtype_, device=self.device_)
            x = (x - mu) / sd
        elif unit_type(self.visible).unit_interval:
            self._check_unit_interval("X", x)
        return x

    @staticmethod
    def _check_unit_interval(name: str, x: torch.Tensor) -> None:
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise DataError(
                f"{name} must lie in [0, 1] for visible='bernoulli', got values in [{lo:g}, {hi:g}]; "
                "scale it first (e.g. MinMaxScaler(clip=True)) or use visible='gaussian'"
            )

    def _train_config(self, n_rows: int):
        from deepbelief.training import RBMTrainConfig

        # a batch larger than the data set would be an error in the library; here, as in
        # scikit-learn's MLP, it is clipped so that tiny data sets still fit
        return RBMTrainConfig(epochs=self.n_iter, batch_size=min(self.batch_size, n_rows), lr=self._lr(),
                              method=self.method, k=self.k, weight_decay=self.weight_decay,
                              momentum_switch=min(5, self.n_iter), monitor_size=min(1000, n_rows))

    def _stack(self, x: torch.Tensor, sizes: list[int], gen: torch.Generator) -> list[RBM]:
        """Greedy layer-wise training (Hinton, Osindero & Teh 2006), in the fit's dtype.

        The same loop as ``stacking.pretrain_stack``, which builds float32 RBMs; here float64
        input must give float64 models (scikit-learn's dtype conventions and checks).

        ``sizes`` are the hidden layer sizes; each trained RBM's hidden means E[h | v]
        are the next RBM's data.
        """
        from deepbelief.training import train_rbm

        rbms, vis = [], self.visible
        cfg = self._train_config(x.shape[0])
        for i, n in enumerate(sizes):
            hid = self.hidden if hasattr(self, "hidden") else "bernoulli"
            rbm = RBM({"type": vis, "n": x.shape[1]}, {"type": hid, "n": n}, generator=gen).to(self.dtype_)
            if self.verbose:
                print(f"[{type(self).__name__}] layer {i}: {x.shape[1]} -> {n}, {self.n_iter} epochs")
            cb = (lambda e, m: print(f"  epoch {e + 1}: recon {m['recon_error']:.4f} ({m['seconds']:.2f}s)")) \
                if self.verbose else None
            if self.n_iter:
                train_rbm(rbm, x, cfg, generator=gen, callback=cb)
            rbms.append(rbm)
            if i < len(sizes) - 1:
                with torch.no_grad():
                    x = batched(rbm.mean_hidden, x)
            # binary means stay binary units; other means are modelled as real values
            vis = hid if unit_type(hid).is_binary else "gaussian"
        return rbms


class RBMTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, _Base):
    """A Restricted Boltzmann Machine as a scikit-learn transformer.

    Args:
        n_components: number of hidden units.
        learning_rate: CD learning rate (divided by 10 for Gaussian visible units).
        batch_size: mini-batch size (clipped to the number of samples).
        n_iter: training epochs.
        visible: ``"bernoulli"`` (features in [0, 1]), ``"gaussian"`` (standardised inside), or
            any registered unit type offered for visible layers (``units.kinds("visible")``).
        hidden: ``"bernoulli"``, ``"nrelu"``, ``"stepped_sigmoid"`` or any ``units.kinds("hidden")``.
        method: ``"cd"`` (contrastive divergence) or ``"pcd"`` (persistent CD).
        k: Gibbs steps per update.
        weight_decay: L2 penalty on the weights.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        random_state: int, RandomState or None; seeds the run's one torch generator.
        verbose: print per-epoch reconstruction errors.

    Attributes:
        components_: (n_components, n_features) weights, as in BernoulliRBM.
        intercept_hidden_: (n_components,) hidden biases.
        intercept_visible_: (n_features,) visible biases.
        rbm_: the trained ``deepbelief.RBM`` (a ``torch.nn.Module``).
        history_: per-epoch training monitors.
    """

    def __init__(self, n_components=256, *, learning_rate=0.1, batch_size=10, n_iter=10, visible="bernoulli",
                 hidden="bernoulli", method="cd", k=1, weight_decay=2e-4, device="cpu", random_state=None,
                 verbose=0):
        self._record_params(locals())

    def fit(self, X, y=None):
        """Train the RBM on X, shape (n_samples, n_features). ``y`` is ignored."""
        self._check_common()
        check_int("n_components", self.n_components, minimum=1)
        check_choice("hidden", self.hidden, kinds("hidden"))
        check_float("weight_decay", self.weight_decay, minimum=0.0)
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        x = self._fit_input(X)
        gen = _generator(self.random_state, self.device_)
        (self.rbm_,) = self._stack(x, [self.n_components], gen)
        return self

    def transform(self, X):
        """Hidden means E[h | v], shape (n_samples, n_components), in X's float dtype."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        with torch.no_grad():
            h = batched(self.rbm_.mean_hidden, self._input(X))
        return _to_numpy(h, X.dtype)

    def score_samples(self, X):
        """Negative free energy -F(v), shape (n_samples,): log p(v) up to the constant log Z."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        with torch.no_grad():
            f = batched(self.rbm_.free_energy, self._input(X))
        return _to_numpy(-f, X.dtype)

    @property
    def components_(self) -> np.ndarray:
        return _to_numpy(self.rbm_.W.T, np.float64 if self.dtype_ == torch.float64 else np.float32)

    @property
    def intercept_hidden_(self) -> np.ndarray:
        return _to_numpy(self.rbm_.hidden.bias, self.components_.dtype)

    @property
    def intercept_visible_(self) -> np.ndarray:
        return _to_numpy(self.rbm_.visible.bias, self.components_.dtype)

    @property
    def _n_features_out(self) -> int:
        return self.n_components

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class DBNTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, _Base):
    """A greedily pre-trained Deep Belief Network as a transformer.

    ``transform(X)`` is the deterministic bottom-up pass of hidden means through every
    layer, shape (n_samples, hidden_layer_sizes[-1]). Arguments as ``RBMTransformer``,
    with ``hidden_layer_sizes`` (bottom first) instead of ``n_components``.

    Attributes:
        dbn_: the trained ``deepbelief.DBN`` (a ``torch.nn.Module``).
    """

    def __init__(self, hidden_layer_sizes=(256, 256), *, learning_rate=0.1, batch_size=10, n_iter=10,
                 visible="bernoulli", method="cd", k=1, weight_decay=2e-4, device="cpu", random_state=None,
                 verbose=0):
        self._record_params(locals())

    def fit(self, X, y=None):
        """Pre-train the stack on X, shape (n_samples, n_features). ``y`` is ignored."""
        from deepbelief.dbn import DBN

        self._check_common()
        sizes = _sizes(self.hidden_layer_sizes)
        check_float("weight_decay", self.weight_decay, minimum=0.0)
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        x = self._fit_input(X)
        gen = _generator(self.random_state, self.device_)
        self.dbn_ = DBN(self._stack(x, sizes, gen))
        return self

    def transform(self, X):
        """Top-layer means, shape (n_samples, hidden_layer_sizes[-1]), in X's float dtype."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        x = self._input(X)
        with torch.no_grad():
            for rbm in self.dbn_.rbms:
                x = batched(rbm.mean_hidden, x)
        return _to_numpy(x, X.dtype)

    @property
    def _n_features_out(self) -> int:
        return _sizes(self.hidden_layer_sizes)[-1]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class DBNClassifier(ClassifierMixin, _Base):
    """Pre-trained, fine-tuned deep classifier (Hinton & Salakhutdinov 2006).

    ``fit`` trains a stack of RBMs greedily (``n_iter`` epochs each), unrolls it into a
    feed-forward net with a softmax output layer, and fine-tunes the whole net with
    backprop on the cross-entropy for ``finetune_epochs`` epochs (the output layer alone
    for the first ``top_only_epochs``). ``pretrain=False`` gives the same architecture
    from random initialisation, the baseline of Erhan et al. (2010).

    Args:
        hidden_layer_sizes: hidden layer sizes, bottom first.
        learning_rate, batch_size, n_iter, visible, method, k, weight_decay: pre-training
            (as ``RBMTransformer``).
        finetune_epochs: backprop epochs.
        finetune_lr: backprop learning rate (SGD with momentum 0.9, decaying 3% per epoch).
        top_only_epochs: first epochs that train only the output layer.
        dropout, input_dropout: drop probabilities during fine-tuning (Srivastava et al. 2014).
        pretrain: False to skip pre-training (random initialisation).
        device, random_state, verbose: as ``RBMTransformer``.

    Attributes:
        classes_: (n_classes,) the class labels.
        net_: the fine-tuned ``deepbelief.DeepClassifier`` (a ``torch.nn.Module``).
        dbn_: the pre-trained ``deepbelief.DBN`` (None if ``pretrain=False``).
        history_: per-epoch fine-tuning metrics.
    """

    def __init__(self, hidden_layer_sizes=(256, 256), *, learning_rate=0.1, batch_size=10, n_iter=10,
                 visible="bernoulli", method="cd", k=1, weight_decay=2e-4, finetune_epochs=20, finetune_lr=0.1,
                 top_only_epochs=2, dropout=0.0, input_dropout=0.0, pretrain=True, device="cpu",
                 random_state=None, verbose=0):
        self._record_params(locals())

    def fit(self, X, y):
        """Pre-train on X (n_samples, n_features), then fine-tune on the labels y (n_samples,)."""
        from deepbelief.dbn import DBN
        from deepbelief.finetune import FinetuneConfig, finetune, random_classifier, unroll

        self._check_common()
        sizes = _sizes(self.hidden_layer_sizes)
        check_float("weight_decay", self.weight_decay, minimum=0.0)
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        kind = type_of_target(y)
        if kind not in ("binary", "multiclass"):
            raise DataError(f"y must hold binary or multiclass labels, got {kind!r} targets")
        self._encoder = LabelEncoder().fit(y)
        self.classes_ = self._encoder.classes_
        if len(self.classes_) < 2:
            raise DataError(f"y must hold at least 2 classes to train a classifier, got 1 class: {self.classes_[0]!r}")
        x = self._fit_input(X)
        yt = torch.as_tensor(self._encoder.transform(y), dtype=torch.int64, device=self.device_)
        gen = _generator(self.random_state, self.device_)
        n_classes = len(self.classes_)
        if self.pretrain:
            self.dbn_ = DBN(self._stack(x, sizes, gen))
            net = unroll(self.dbn_, n_classes, generator=gen)
        else:
            self.dbn_ = None
            net = random_classifier([x.shape[1]] + sizes, n_classes, generator=gen, device=self.device_)
        self.net_ = net.to(self.dtype_)
        cfg = FinetuneConfig(epochs=check_int("finetune_epochs", self.finetune_epochs, minimum=0),
                             batch_size=min(self.batch_size, x.shape[0]), lr=self.finetune_lr,
                             top_only_epochs=self.top_only_epochs if self.pretrain else 0,
                             dropout=self.dropout, input_dropout=self.input_dropout)
        cb = (lambda e, m: print(f"  finetune epoch {e + 1}: loss {m['loss']:.4f} ({m['seconds']:.2f}s)")) \
            if self.verbose else None
        self.history_ = finetune(self.net_, x, yt, cfg, generator=gen, callback=cb)
        return self

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return _to_numpy(self.net_.predict_proba(self._input(X)), np.float64)

    def predict_log_proba(self, X):
        return np.log(self.predict_proba(X))

    def predict(self, X):
        """Most probable class label, shape (n_samples,)."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags


def _sizes(sizes) -> list[int]:
    if isinstance(sizes, (int, np.integer)):
        sizes = [sizes]
    try:
        out = [check_int(f"hidden_layer_sizes[{i}]", s, minimum=1) for i, s in enumerate(sizes)]
    except TypeError:
        raise ConfigError(f"hidden_layer_sizes must be a sequence of positive ints, got {sizes!r}") from None
    if not out:
        raise ConfigError("hidden_layer_sizes must list at least one layer, got []")
    return out
