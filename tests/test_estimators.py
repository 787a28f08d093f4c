"""scikit-learn estimators: the library's own conformance suite, plus oracles.

The check instances are tiny (a few hidden units, a few epochs) so the whole suite stays
fast; ``visible="gaussian"`` standardises any real data, which the checks feed (the
Bernoulli mode rejects data outside [0, 1] by design; it is tested in Pipelines below,
behind ``MinMaxScaler(clip=True)``; scikit-learn's own Pipeline does not pass the suite).
"""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from deepbelief import exact
from deepbelief.errors import DataError
from deepbelief.estimators import DBNClassifier, DBNTransformer, RBMTransformer

FAST = dict(batch_size=16, random_state=0)
CHECKED = [
    RBMTransformer(n_components=4, n_iter=2, visible="gaussian", **FAST),
    DBNTransformer(hidden_layer_sizes=(5, 3), n_iter=2, visible="gaussian", **FAST),
    DBNClassifier(hidden_layer_sizes=(16,), n_iter=2, finetune_epochs=15, visible="gaussian", **FAST),
]


@parametrize_with_checks(CHECKED)
def test_sklearn_conformance(estimator, check):
    check(estimator)


def _digits(n=300):
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data[:n] / 16.0), d.target[:n]


def test_bernoullirbm_attribute_names_and_shapes():
    x, _ = _digits(200)
    m = RBMTransformer(n_components=7, n_iter=1, random_state=0).fit(x)
    assert m.components_.shape == (7, 64)
    assert m.intercept_hidden_.shape == (7,)
    assert m.intercept_visible_.shape == (64,)
    # transform is E[h | v] = sigmoid(v W + c), computed here from the exported attributes
    expected = 1.0 / (1.0 + np.exp(-(x @ m.components_.T + m.intercept_hidden_)))
    np.testing.assert_allclose(m.transform(x), expected, rtol=1e-10, atol=1e-12)


def test_score_samples_is_exact_log_prob_up_to_log_z():
    # oracle: enumeration of a 6x3 RBM; -F(v) - log Z must be the exact log p(v)
    rng = np.random.default_rng(0)
    x = (rng.random((60, 6)) < 0.3).astype(np.float64)
    m = RBMTransformer(n_components=3, n_iter=3, batch_size=10, random_state=0).fit(x)
    log_z = exact.log_partition(m.rbm_)
    states = exact.all_binary(6).numpy()
    logp = m.score_samples(states) - log_z
    assert np.exp(logp).sum() == pytest.approx(1.0, abs=1e-10)
    np.testing.assert_allclose(logp, exact.log_prob(m.rbm_, torch.from_numpy(states)).numpy(), atol=1e-10)


def test_same_random_state_same_weights_and_input_not_modified():
    x, _ = _digits(100)
    before = x.copy()
    a = RBMTransformer(n_components=5, n_iter=2, random_state=3).fit(x)
    b = RBMTransformer(n_components=5, n_iter=2, random_state=3).fit(x)
    c = RBMTransformer(n_components=5, n_iter=2, random_state=4).fit(x)
    np.testing.assert_array_equal(a.components_, b.components_)
    assert not np.array_equal(a.components_, c.components_)
    np.testing.assert_array_equal(x, before)


def test_float32_in_float32_out_and_matches_float64_maths():
    x, _ = _digits(100)
    m32 = RBMTransformer(n_components=5, n_iter=2, random_state=1).fit(x.astype(np.float32))
    h = m32.transform(x.astype(np.float32))
    assert h.dtype == np.float32 and m32.components_.dtype == np.float32
    w, c = m32.components_.astype(np.float64), m32.intercept_hidden_.astype(np.float64)
    np.testing.assert_allclose(h, 1.0 / (1.0 + np.exp(-(x @ w.T + c))), atol=2e-6)


def test_bernoulli_rejects_data_outside_unit_interval_naming_the_range():
    with pytest.raises(DataError, match=r"X must lie in \[0, 1\].*\[0, 16\]"):
        RBMTransformer(n_iter=1).fit(_digits(50)[0] * 16)
    with pytest.raises(Exception, match="visible must be one of"):
        RBMTransformer(visible="binary").fit(_digits(50)[0])


def test_pipeline_gridsearch_clone_on_digits():
    x, y = _digits(300)
    pipe = Pipeline([("rbm", RBMTransformer(n_components=16, n_iter=3, random_state=0)),
                     ("clf", DBNClassifier(hidden_layer_sizes=(16,), n_iter=1, finetune_epochs=10, random_state=0))])
    grid = GridSearchCV(pipe, {"rbm__n_components": [8, 16]}, cv=2).fit(x, y)
    assert grid.best_params_["rbm__n_components"] in (8, 16)
    c = clone(grid.best_estimator_)
    assert c.get_params()["rbm__n_components"] == grid.best_params_["rbm__n_components"]
    assert not hasattr(c.named_steps["rbm"], "rbm_")


def test_classifier_learns_digits_better_than_chance_by_far():
    # 900 training images: 500 left the test accuracy at 0.78-0.85 over seeds, too close to the bar
    x, y = _digits(1200)
    clf = DBNClassifier(hidden_layer_sizes=(64,), n_iter=3, finetune_epochs=15, random_state=0)
    clf.fit(x[:900], y[:900])
    p = clf.predict_proba(x[900:])
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-9)
    assert np.mean(clf.predict(x[900:]) == y[900:]) > 0.9  # chance is 0.1; seeds 0-3 gave 0.97-0.98
    assert isinstance(clf.net_, torch.nn.Module)


def test_classifier_without_pretraining_has_no_dbn():
    x, y = _digits(100)
    clf = DBNClassifier(hidden_layer_sizes=(8,), finetune_epochs=2, pretrain=False, random_state=0).fit(x, y)
    assert clf.dbn_ is None and clf.predict(x).shape == (100,)
