"""Experiments: the exact variational bound against enumeration, and tiny end-to-end runs."""

import json
import math
import re
from pathlib import Path

import pytest
import torch

from deepbelief import ConfigError, exact
from deepbelief.experiments import (
    ErhanConfig,
    Lecture14Config,
    PosteriorConfig,
    erhan,
    lecture14,
    lecture14_markdown,
    posterior_example,
    read_recorded_updown,
    variational_bound_exact,
)
from deepbelief.finetune import FinetuneConfig
from deepbelief.rbm import RBM
from deepbelief.stacking import pretrain_stack
from deepbelief.training import RBMTrainConfig, make_generator

from _models import tiny_rbm


def _rbm(nv, nh, seed):
    return tiny_rbm(seed, nv, nh)


def _log_p_dbn(r1, r2, v):
    # oracle: log p(v) = log sum_h1 p2(h1) p(v | h1), every term enumerated
    h1 = exact.all_binary(r1.n_hidden)
    log_prior = -r2.free_energy(h1) - exact.log_partition(r2)
    pv = r1.mean_visible(h1)  # (S, n_v)
    log_lik = v @ torch.log(pv).T + (1 - v) @ torch.log1p(-pv).T  # (batch, S)
    return torch.logsumexp(log_lik + log_prior, 1)


def test_one_layer_bound_is_the_exact_log_likelihood():
    r = _rbm(5, 3, 0)
    v = exact.all_binary(5)
    assert torch.allclose(variational_bound_exact([r], v), exact.log_prob(r, v), atol=1e-12)


def test_transposed_second_layer_leaves_the_bound_exactly_unchanged(monkeypatch):
    """mnist_loglik's transposed start (its --layer2 784 and --layer2-epochs 0 rest on it)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from mnist_loglik import transpose_into

    r1 = _rbm(5, 3, 1)
    other = RBM(3, 4).double()
    before = other.W.detach().clone()
    assert not transpose_into(r1, other) and torch.equal(other.W, before)  # sizes do not allow it
    r2 = RBM(3, 5).double()
    assert transpose_into(r1, r2)
    v = exact.all_binary(5)
    assert torch.allclose(variational_bound_exact([r1, r2], v), exact.log_prob(r1, v), atol=1e-10)
    # and then the DBN's own log p(v) equals the RBM's (the same model, written two ways)
    assert torch.allclose(_log_p_dbn(r1, r2, v), exact.log_prob(r1, v), atol=1e-10)


@pytest.mark.parametrize("seed", [2, 3])
def test_bound_is_below_the_enumerated_dbn_log_likelihood_and_sums_correctly(seed):
    r1, r2 = _rbm(5, 3, seed), _rbm(3, 4, seed + 10)
    v = exact.all_binary(5)
    bound = variational_bound_exact([r1, r2], v)
    logp = _log_p_dbn(r1, r2, v)
    assert torch.all(bound <= logp + 1e-12)
    # the gap is KL(q(h|v) || p(h|v)); recompute it by enumeration
    h1 = exact.all_binary(3)
    log_q = torch.log(r1.mean_hidden(v)) @ h1.T + torch.log1p(-r1.mean_hidden(v)) @ (1 - h1).T
    log_prior = -r2.free_energy(h1) - exact.log_partition(r2)
    pv = r1.mean_visible(h1)
    log_joint = v @ torch.log(pv).T + (1 - v) @ torch.log1p(-pv).T + log_prior
    log_post = log_joint - logp[:, None]
    kl = (log_q.exp() * (log_q - log_post)).sum(1)
    assert torch.allclose(logp - bound, kl, atol=1e-10)


def test_three_layer_bound_with_transposed_top_equals_two_layer_bound():
    r1, r2 = _rbm(4, 3, 5), _rbm(3, 3, 6)
    r3 = RBM(3, 3).double()
    with torch.no_grad():
        r3.W.copy_(r2.W.T)
        r3.visible.bias.copy_(r2.hidden.bias)
        r3.hidden.bias.copy_(r2.visible.bias)
    v = exact.all_binary(4)
    assert torch.allclose(variational_bound_exact([r1, r2, r3], v), variational_bound_exact([r1, r2], v), atol=1e-10)


def test_posterior_example_small():
    res = posterior_example(PosteriorConfig(n_visible=6, n_hidden=4, n_data=200,
                                            rbm=RBMTrainConfig(epochs=3, batch_size=20, lr=0.05, weight_decay=0.0)), log=lambda s: None)
    b = res["bound"]
    assert b["2_init"] == pytest.approx(b["1"], abs=1e-9) and b["3_init"] == pytest.approx(b["2"], abs=1e-9)
    assert res["kl_factorial"] >= 0 and res["kl_prior"] >= 0
    assert sum(s["q"] for s in res["top_states"]) <= 1 + 1e-12


def test_stack_prefix_equals_shallower_stack_with_the_same_seed():
    # erhan() unrolls the first d layers of one deep stack: that must equal training a d-layer stack
    x = (torch.rand(200, 12, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    cfg = RBMTrainConfig(epochs=2, batch_size=20)
    deep = pretrain_stack(x, [12, 6, 5, 4], cfg, generator=make_generator(7))
    shallow = pretrain_stack(x, [12, 6], cfg, generator=make_generator(7))
    assert torch.equal(deep.rbms[0].W, shallow.rbms[0].W)


def test_read_recorded_updown(tmp_path):
    assert read_recorded_updown(tmp_path / "absent") == {}
    (tmp_path / "other.json").write_text(json.dumps({"test_error": 0.5}))
    assert read_recorded_updown(tmp_path) == {}
    (tmp_path / "gendbn-updown.json").write_text(json.dumps({"results": {"test_error": 0.0131, "seconds": 12.0}}))
    got = read_recorded_updown(tmp_path)
    assert got["test_error"] == pytest.approx(1.31) and got["seconds"] == 12.0


def test_read_recorded_updown_takes_the_updown_error_not_the_judge_or_paper(tmp_path):
    # the layout benchmarks/mnist_hot2006.py writes: the paper's figure and an MLP judge's
    # own error sit in dicts next to the up-down error (a first version read the judge's)
    doc = {"paper": {"greedy_test_error": 0.0249, "updown_test_error": 0.0125}, "greedy_test_error": 0.0572,
           "judge": {"test_error": 0.021, "seconds": 8.2}, "updown_seconds": 58.4, "updown_test_error": 0.024}
    (tmp_path / "hot2006_updown_h100.json").write_text(json.dumps(doc))
    got = read_recorded_updown(tmp_path)
    assert got["test_error"] == pytest.approx(2.4) and got["seconds"] == 58.4


def test_read_recorded_updown_prefers_the_recipes_own_run_then_the_newest(tmp_path):
    """benchmarks/mnist_hot2006.py's layout (``updown_test_error_pct``, its name need not say
    up-down): the run of the hot2006 recipe as it is now wins over a newer run of other
    settings; among runs of other settings the newest wins; quick and unfinished runs never."""
    from deepbelief.recipes import get_recipe

    def run(name, pct, date, recipe=None, **extra):
        doc = {"updown_test_error_pct": pct, "updown_seconds": 9.0, "judge_test_error_pct": 0.5,
               "machine": {"date": date, "device_name": "CPU (x86_64, 2 threads)"}, **extra}
        if recipe is not None:
            doc["recipe"] = recipe
        (tmp_path / name).write_text(json.dumps(doc))

    old_recipe = {**get_recipe("hot2006").to_dict(), "layers": [500, 500, 1000]}
    run("a_old.json", 1.5, "2026-12-01 10:00 UTC", old_recipe)
    run("b_new.json", 1.4, "2026-12-03 10:00 UTC", old_recipe)
    run("c_quick.json", 9.0, "2026-12-09 10:00 UTC", quick=True)
    run("d_unfinished.json", 8.0, "2026-12-09 10:00 UTC", finished=False)
    got = read_recorded_updown(tmp_path)
    assert (got["test_error"], got["same_recipe"], got["date"]) == (1.4, False, "2026-12-03 10:00")
    run("e_recipe.json", 1.21, "2026-12-02 10:00 UTC", get_recipe("hot2006").to_dict())
    got = read_recorded_updown(tmp_path)
    assert got["test_error"] == 1.21 and got["same_recipe"] and got["file"].endswith("e_recipe.json")
    (tmp_path / "f_list.json").write_text("[1, 2]")  # not a run: skipped
    (tmp_path / "g_broken.json").write_text("{")
    assert read_recorded_updown(tmp_path)["test_error"] == 1.21


def _tiny_lecture14(**kw):
    return Lecture14Config(n_train=400, n_test=200, n_valid=100, layers=[16, 16], pretrain_epochs=1,
                           finetune_epochs=3, recipe_overrides={"finetune": {"cg_batch_size": 100, "batch_size": 50}},
                           **kw)


def test_lecture14_tiny_on_digits(tmp_path):
    cfg = _tiny_lecture14(seeds=2)
    res = lecture14(cfg, device="cpu", data_dir="digits", results_dir=tmp_path, log=lambda s: None)
    names = [r["name"] for r in res["rows"]]
    assert names == ["backprop_random_init", "pretrain_backprop", "pretrain_dropout", "generative_updown"]
    for r in res["rows"][:3]:
        assert len(r["test_errors"]) == 2 and r["test_error"] == pytest.approx(sum(r["test_errors"]) / 2)
        assert r["std"] is not None and 0 <= r["test_error"] <= 100
    assert res["rows"][1]["method"] == "cg" and res["rows"][2]["settings"]["finetune"]["dropout"] == 0.5
    md = lecture14_markdown(res, "quick")
    assert "| not run |" in md and "0.92%" in md and res["rows"][3]["test_error"] is None
    assert "commit" in md and "(2)" in md
    assert "Dropout fine-tuning pays off only over hundreds of epochs (the recipe: 2,000); in 3 epochs" in md
    # the two pre-trained rows start their RBMs differently: neither reuses the other's stack
    assert [r.get("stack_from") for r in res["rows"][1:3]] == [None, None]
    assert "Each pre-trained row pre-trained its own stack" in md and "reused" not in md
    # a recorded run elsewhere is cited beside the row, never shown as this run's number
    (tmp_path / "hot2006_updown.json").write_text(json.dumps({"updown_test_error": 0.024, "updown_seconds": 5.0}))
    res = lecture14(_tiny_lecture14(rows=["hinton2006"]), device="cpu", data_dir="digits", results_dir=tmp_path,
                    log=lambda s: None)
    lines = lecture14_markdown(res, "quick").splitlines()
    row = [line for line in lines if "generative DBN" in line][0]
    assert row.split("|")[3].strip() == "not run" and "measured 2.40%" in row and res["rows"][3]["test_error"] is None
    # rows left out say so, with no number
    assert [r["test_error"] is None for r in res["rows"]] == [True, False, True, True]
    assert [line for line in lines if "random initialisation" in line][0].split("|")[3].strip() == "not run"


def test_lecture14_reuses_a_stack_where_the_pre_training_is_the_same():
    """With the RBM start overridden to be the same for both pre-trained rows, the dropout row
    reuses the CG row's stack: its errors equal a run of its recipe alone, and the report
    names the row it took the stack from."""
    from deepbelief.experiments import _subset_dataset
    from deepbelief.runner import run_recipe

    same_start = {"finetune": {"cg_batch_size": 100, "batch_size": 50},
                  "rbm": {"weight_std": 0.05, "init_visible_bias": True}}
    cfg = Lecture14Config(n_train=400, n_test=200, n_valid=100, layers=[16, 16], pretrain_epochs=1, finetune_epochs=3,
                          recipe_overrides=same_start, rows=["hinton2006", "hinton2006_dropout"])
    res = lecture14(cfg, device="cpu", data_dir="digits", seed=2, log=lambda s: None)
    cg_row, drop_row = res["rows"][1], res["rows"][2]
    assert cg_row["stack_from"] is None and drop_row["stack_from"] == "pretrain_backprop"
    alone = run_recipe(cfg.recipe("hinton2006_dropout"), dataset=_subset_dataset(400, 200, data_dir="digits"),
                       device="cpu", seed=2, log=None)
    assert drop_row["test_errors"] == [100 * alone["test_error"]]
    md = lecture14_markdown(res, "quick")
    assert "pre-training + dropout backprop reused the pre-trained stack of pre-training + backprop" in md


def test_lecture14_rows_are_the_recipes_and_a_stack_is_shared_only_by_the_same_pre_training():
    """At full size a row's settings are its recipe's, unchanged; the two pre-trained rows
    start their RBMs differently, so their keys differ and each pre-trains its own stack; and
    where two recipes' pre-training is the same, fine-tuning the shared stack equals running
    the second recipe from scratch (same weights, same generator)."""
    import dataclasses

    from deepbelief.experiments import LECTURE14_ROWS
    from deepbelief.recipes import get_recipe, pretraining_key
    from deepbelief.runner import run_recipe

    for recipe_name in LECTURE14_ROWS.values():
        assert Lecture14Config().recipe(recipe_name).to_dict() == get_recipe(recipe_name).to_dict()
    cg, drop = get_recipe("hinton2006"), get_recipe("hinton2006_dropout")
    assert pretraining_key(cg, 0) != pretraining_key(drop, 0)
    assert (cg.rbm.weight_std, cg.rbm.init_visible_bias) == (0.1, False)  # rbm.m's start
    assert (drop.rbm.weight_std, drop.rbm.init_visible_bias) == (0.01, True)  # the guide's start
    assert dataclasses.replace(drop.rbm, weight_std=0.1, init_visible_bias=False) == cg.rbm  # nothing else differs
    from deepbelief.experiments import _subset_dataset

    cfg = _tiny_lecture14()
    ds = _subset_dataset(400, 200, data_dir="digits")
    first_recipe = cfg.recipe("hinton2006")
    same_stack = dataclasses.replace(first_recipe, name="cg_stack_dropout",
                                     finetune=cfg.recipe("hinton2006_dropout").finetune)
    assert pretraining_key(same_stack, 3) == pretraining_key(first_recipe, 3)
    first = run_recipe(first_recipe, dataset=ds, device="cpu", seed=3, log=None)
    shared = run_recipe(same_stack, dataset=ds, device="cpu", seed=3, log=None, pretrained=first["pretrained"])
    alone = run_recipe(same_stack, dataset=ds, device="cpu", seed=3, log=None)
    for k, v in alone["net"].state_dict().items():
        assert torch.equal(v, shared["net"].state_dict()[k]), k
    with pytest.raises(ConfigError, match="another pre-training or seed"):
        run_recipe(same_stack, dataset=ds, device="cpu", seed=4, log=None, pretrained=first["pretrained"])
    with pytest.raises(ConfigError, match="another pre-training or seed"):
        run_recipe(cfg.recipe("hinton2006_dropout"), dataset=ds, device="cpu", seed=3, log=None,
                   pretrained=first["pretrained"])


def test_erhan_tiny_on_digits(tmp_path):
    cfg = ErhanConfig(n_train=300, n_valid=100, n_test=200, width=8, depths=[1, 2], seeds=2, n_trajectory=10,
                      pretrain=RBMTrainConfig(epochs=1, batch_size=50, lr=0.05, momentum_switch=0, weight_decay=2e-4),
                      finetune=FinetuneConfig(epochs=2, batch_size=50, lr=0.1, top_only_epochs=0))
    e = erhan(cfg, device="cpu", data_dir="digits", log=lambda s: None)
    assert len(e["runs"]) == 2 * 2 * 2 and e["runs"][0]["trajectory"].shape == (2, 10 * 10)
    s = next(x for x in e["summary"] if x["depth"] == 2 and x["pretrained"])
    errs = [r["test_error"] for r in e["runs"] if r["depth"] == 2 and r["pretrained"]]
    assert s["mean"] == pytest.approx(sum(errs) / 2) and s["std"] == pytest.approx(abs(errs[0] - errs[1]) / math.sqrt(2))
    from deepbelief.experiments import erhan_figures, erhan_markdown

    erhan_figures(e, tmp_path / "h.png", tmp_path / "t.png")
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 2 |" in erhan_markdown(e, "quick", {"hist": "h.png", "tsne": "t.png"})


def test_set_overrides_parse_as_toml_and_unknown_keys_are_named():
    from deepbelief.errors import ConfigError
    from deepbelief.experiments import _from_dict, parse_sets

    assert parse_sets(["a=1", "b=[1, 2]", "c=0.5", "d=word"]) == {"a": 1, "b": [1, 2], "c": 0.5, "d": "word"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_sets(["novalue"])
    with pytest.raises(ConfigError, match=r"unknown ErhanConfig option\(s\) \['depth'\]"):
        _from_dict(ErhanConfig, {"depth": [1]})


def test_dotted_set_keys_change_one_field_of_a_nested_config_and_keep_the_preset():
    import dataclasses

    from deepbelief.errors import ConfigError
    from deepbelief.experiments import _from_dict, parse_sets
    from deepbelief.experiments.common import merge_settings

    sets = parse_sets(["pretrain.epochs=3", "finetune.lr=0.05", "seeds=2"])
    assert sets == {"pretrain": {"epochs": 3}, "finetune": {"lr": 0.05}, "seeds": 2}
    preset = ErhanConfig.preset("quick")
    cfg = _from_dict(ErhanConfig, merge_settings(dataclasses.asdict(preset), sets))
    assert isinstance(cfg.pretrain, RBMTrainConfig) and isinstance(cfg.finetune, FinetuneConfig)
    assert cfg.pretrain == dataclasses.replace(preset.pretrain, epochs=3)  # the preset's other fields kept
    assert cfg.finetune == dataclasses.replace(preset.finetune, lr=0.05) and cfg.seeds == 2
    with pytest.raises(ConfigError, match=r"unknown RBM training option\(s\) \['epoch'\]"):
        _from_dict(ErhanConfig, {"pretrain": {"epoch": 3}})
    with pytest.raises(ConfigError, match="lr must be"):
        _from_dict(PosteriorConfig, {"rbm": {"lr": -1.0}})
    with pytest.raises(ConfigError, match="a value and nested fields"):
        parse_sets(["seeds=2", "seeds.x=1"])


def _args(**kw):
    import argparse

    base = dict(experiment="posterior", output_dir=None, docs_dir=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_reports_go_to_a_new_folder_under_the_working_directory_by_default(tmp_path, monkeypatch):
    from deepbelief.experiments import _output_folder

    monkeypatch.chdir(tmp_path)
    assert _output_folder(_args()) == Path("deepbelief-results") / "posterior"
    assert (tmp_path / "deepbelief-results" / "posterior").is_dir()
    assert _output_folder(_args(docs_dir="d")) == Path("d") / "results"  # what benchmarks/ ask for
    assert _output_folder(_args(output_dir="o")) == Path("o")


@pytest.mark.parametrize("flag", ["--docs-dir", "--output-dir"])
def test_an_unwritable_report_folder_is_refused_before_running(flag, tmp_path, monkeypatch, capsys):
    import os

    from deepbelief.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ro").mkdir()
    # a read-only folder (emulated: root may write anywhere) and a file where a folder belongs
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert main(["reproduce", "posterior", flag, "ro"]) == 2
    assert "is not writable" in capsys.readouterr().err
    (tmp_path / "f").write_text("")
    assert main(["reproduce", "posterior", flag, "f/x" if flag == "--output-dir" else "f"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + flag) and "is a file" in err and "Traceback" not in err


def test_posterior_layers_fitted_by_exact_ml_never_lower_the_bound():
    """The theorem's conditions (a new layer from W = W_below^T, fitted to the exact
    aggregated posterior by exact maximum likelihood) give a bound that cannot fall; the
    CD-1 rows need not (seed 2 lowers it at layer 3 with the default config)."""
    from deepbelief.experiments import PosteriorConfig, posterior_example

    res = posterior_example(PosteriorConfig(n_data=400, rbm=RBMTrainConfig(epochs=15, batch_size=20, lr=0.05,
                                                                               weight_decay=0.0)), seed=2, log=lambda m: None)
    e, b = res["bound_exact_ml"], res["bound"]
    assert abs(e["2_init"] - b["1"]) < 1e-9  # the transposed layer leaves the bound where it was
    assert e["2"] >= e["2_init"] - 1e-9 and e["3"] >= e["3_init"] - 1e-9
    assert abs(e["3_init"] - e["2"]) < 1e-9


def test_hot2006_top_overrides_are_typed_and_touch_only_the_top_rbm(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from mnist_hot2006 import override_top

    from deepbelief.recipes import get_recipe

    recipe = get_recipe("hot2006")
    below = [dict(o) for o in recipe.layer_overrides[:-1]]
    override_top(recipe, 3, ["method=pcd", "lr=1", "balanced_batches=false", "k_final = 10"])
    top = recipe.layer_overrides[-1]
    assert top == {**top, "k": 3, "method": "pcd", "lr": 1.0, "balanced_batches": False, "k_final": 10}
    assert isinstance(top["lr"], float) and isinstance(top["k_final"], int)
    assert [dict(o) for o in recipe.layer_overrides[:-1]][: len(below)] == below
    recipe.validate()
    configs = recipe.rbm_configs()
    assert (configs[-1].method, configs[-1].k, configs[-1].lr) == ("pcd", 3, 1.0)
    assert configs[0].method == "cd"
    for bad, said in (("lr", "FIELD=VALUE"), ("learning_rate=0.1", "FIELD=VALUE"), ("lr=fast", "float")):
        with pytest.raises(SystemExit, match=said):
            override_top(get_recipe("hot2006"), None, [bad])


def test_benchmark_field_values_read_each_field_by_its_type(monkeypatch):
    """The benchmarks' FIELD=VALUE flags (mnist_hot2006 --updown, mnist_loglik --rbm)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from _common import field_values

    from deepbelief.training import RBMTrainConfig
    from deepbelief.wake_sleep import UpDownConfig

    got = field_values("--updown", UpDownConfig, ["persistent=true", "gibbs_steps=3,6", "lr=0.02", "epochs=7"])
    assert got == {"persistent": True, "gibbs_steps": [3, 6], "lr": 0.02, "epochs": 7}
    assert UpDownConfig(**got).validate().gibbs_at(6) == 6
    assert field_values("--rbm", RBMTrainConfig, ["centering=false", "method=pt"]) == {"centering": False,
                                                                                        "method": "pt"}
    for bad, said in (("persistent=maybe", "bool"), ("gibbs_steps=3;6", "list"), ("chains=4", "FIELD=VALUE")):
        with pytest.raises(SystemExit, match=said):
            field_values("--updown", UpDownConfig, [bad])


def test_benchmark_json_names_the_commit_the_run_started_from(monkeypatch, tmp_path):
    """A benchmark's JSON and headline entry record the commit read when the script started, not
    the one its checkout is at when they are written hours later (both machine_info helpers,
    record_headline)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import _bench
    import _common

    started = _common.START_COMMIT
    assert started == "unknown" or re.fullmatch(r"[0-9a-f]{4,40}(\+dirty)?", started), started
    monkeypatch.setattr(_common, "git_commit", lambda: "moved-on")
    assert _common.machine_info()["commit"] == started
    assert _bench.machine_info(torch.device("cpu"))["commit"] == started
    _common.record_headline({"k": 1.0}, machine="m", path=tmp_path / "headline.json")
    assert json.loads((tmp_path / "headline.json").read_text())["k"]["commit"] == started


def test_weight_norms_reads_units_incoming_norms_from_rbm_files_and_finetune_checkpoints(monkeypatch, tmp_path):
    """benchmarks/weight_norms.py on weights whose norms are known: an RBM's hidden unit reads
    a column of W, a fine-tuned layer's unit a row of its (out, in) weight; the output layer
    is not reported (max-norm leaves it alone)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from weight_norms import main

    from deepbelief.checkpoint import save_checkpoint
    from deepbelief.io import save_model

    rbm = tiny_rbm(0, nv=2, nh=3)
    with torch.no_grad():
        rbm.W.copy_(torch.tensor([[3.0, 0.0, 1.0], [4.0, 2.0, 0.0]]))  # column norms 5, 2, 1
    save_model(tmp_path / "layer0.safetensors", rbm)
    w0 = torch.tensor([[0.0, 6.0], [8.0, 6.0], [1.0, 0.0]])  # row norms 6, 10, 1
    save_checkpoint(tmp_path / "ft.safetensors", kind="finetune_checkpoint", meta={"epoch": 1},
                    tensors={"net.hidden.0.weight": w0, "net.hidden.1.weight": torch.full((1, 3), 2.0),
                             "net.out.weight": torch.full((2, 1), 100.0)})
    assert main([str(tmp_path / "layer0.safetensors"), str(tmp_path / "ft.safetensors"), "--c", "1.5", "5.5",
                 "--out", str(tmp_path / "norms.json")]) == 0
    rows = json.loads((tmp_path / "norms.json").read_text())["rows"]
    assert [(r["layer"], r["units"]) for r in rows] == [("rbm", 3), ("hidden.0", 3), ("hidden.1", 1)]
    assert rows[0]["quantiles"]["q50"] == pytest.approx(2.0) and rows[0]["quantiles"]["q100"] == pytest.approx(5.0)
    assert rows[0]["share_above"] == {"1.5": pytest.approx(2 / 3), "5.5": 0.0}
    assert rows[1]["quantiles"]["q50"] == pytest.approx(6.0) and rows[1]["share_above"]["5.5"] == pytest.approx(2 / 3)
    assert rows[2]["quantiles"]["q100"] == pytest.approx(math.sqrt(12.0))


@pytest.mark.parametrize("flags,said", [
    (["--layer2-epochs", "-1"], "--layer2-epochs must be >= 0"),
    (["--layer2-rbm", "lr=0.1"], "--layer2-rbm cannot set lr"),
    (["--layer2-rbm", "nosuch=1"], "FIELD one of"),
    (["--layer2-rbm", "sample_data=true"], "--layer2-rbm cannot set sample_data.*--layer2-data"),
    (["--layer2-epochs", "0", "--layer2", "300"], "needs the transposed starts"),
    (["--layer2-epochs", "0", "--layer3", "7"], "needs the transposed starts"),
    (["--rbm", "sample_data=true"], "--rbm cannot set sample_data.*--train-data"),
])
def test_mnist_loglik_refuses_bad_second_layer_flags_before_loading_anything(monkeypatch, flags, said):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import mnist_loglik

    def no_data(*a, **k):  # the checks come first: a mistake must not wait for a long run
        raise AssertionError("loaded data before checking the flags")

    monkeypatch.setattr(mnist_loglik, "load_dataset", no_data)
    with pytest.raises(SystemExit, match=said):
        mnist_loglik.main(["--data-dir", "nowhere", *flags])


def test_minutes_to_reach_counts_the_cd_start_and_skips_its_copied_point(monkeypatch):
    """mnist_loglik's rbm500_minutes_to_86_3: training minutes at the first curve point at or
    above the level, a PCD model's own seconds offset by the CD model it started from."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from mnist_loglik import minutes_to_reach

    cd = {"train_seconds": 120.0, "curve": [{"test_loglik": -130.0, "train_seconds": 60.0},
                                            {"test_loglik": -110.0, "train_seconds": 120.0}]}
    pcd = {"started_from": "CD-1", "curve": [dict(cd["curve"][-1]),  # the CD model's end, copied first
                                             {"test_loglik": -90.0, "train_seconds": 300.0},
                                             {"test_loglik": -86.2, "train_seconds": 600.0},
                                             {"test_loglik": -86.0, "train_seconds": 900.0}]}
    results = {"models": {"CD-1": cd, "CD-1+PCD-1": pcd}}
    assert minutes_to_reach(results, "CD-1+PCD-1", -86.3) == pytest.approx((120 + 600) / 60)
    assert minutes_to_reach(results, "CD-1+PCD-1", -85.0) is None
    assert minutes_to_reach(results, "CD-1+PCD-1", -115.0) == pytest.approx(2.0)  # reached during CD
    assert minutes_to_reach(results, "CD-1", -131.0) == pytest.approx(1.0)
    cd["resumed"] = True  # a resumed run's seconds are its resumed part's: no figure
    assert minutes_to_reach(results, "CD-1+PCD-1", -86.3) is None and minutes_to_reach(results, "CD-1", -131.0) is None


def test_hinton2006_rbm_overrides_reach_every_layer(monkeypatch):
    """mnist_hinton2006 --rbm: a field set for every layer, the recipe's per-layer value of it
    giving way, the other per-layer values kept."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from mnist_hinton2006 import override_rbm

    from deepbelief.recipes import get_recipe

    recipe = get_recipe("hinton2006")
    assert recipe.layer_overrides[1] == {"lr": 0.05}
    override_rbm(recipe, ["weight_std=0.1", "init_visible_bias=false"])
    configs = recipe.rbm_configs()
    assert [c.weight_std for c in configs] == [0.1, 0.1, 0.1]
    assert [c.init_visible_bias for c in configs] == [False, False, False]
    assert [c.lr for c in configs] == [0.1, 0.05, 0.05]  # untouched fields keep their per-layer values
    override_rbm(recipe, ["lr=0.02"])
    assert [c.lr for c in recipe.rbm_configs()] == [0.02, 0.02, 0.02]
    with pytest.raises(SystemExit, match="FIELD=VALUE"):
        override_rbm(get_recipe("hinton2006"), ["learning_rate=0.1"])


def test_mnist_loglik_headline_drops_figures_whose_ais_warns(monkeypatch, capsys):
    """A log-likelihood or bound whose AIS estimate carries a reliability warning (low ESS, an
    open interval) is not written to headline.json; the others are, and the reason is printed."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from mnist_loglik import drop_unsure

    figures = {"rbm500_loglik_ais_nats": -85.5, "dbn2_bound_nats": -85.0, "rbm500_loglik_raise_nats": -84.3}
    results = {"models": {"PCD-1": {"warnings": ["AIS effective sample size 15.1 is below 10% of the 500 runs"]}},
               "dbn": {"warnings": []}}
    assert drop_unsure(figures, results, "PCD-1") == {"dbn2_bound_nats": -85.0, "rbm500_loglik_raise_nats": -84.3}
    assert "rbm500_loglik_ais_nats not recorded: AIS effective sample size 15.1" in capsys.readouterr().out
    results["models"]["PCD-1"]["warnings"] = []
    results["dbn"]["warnings"] = ["the AIS interval is open"]
    assert drop_unsure(figures, results, "PCD-1") == {"rbm500_loglik_ais_nats": -85.5,
                                                     "rbm500_loglik_raise_nats": -84.3}
    assert drop_unsure(figures, {"models": {"PCD-1": {}}}, "PCD-1") == figures  # runs before the warnings


def test_hot2006_judge_reports_agreement_and_binomial_standard_errors(monkeypatch):
    """benchmarks/mnist_hot2006.judge_samples on a stand-in model and judge whose answers are
    known: class c's samples are judged right for the first (10 - c) of 10, so agreement and
    the binomial standard errors have closed forms."""
    from types import SimpleNamespace

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from mnist_hot2006 import judge_samples

    per_class = 10

    class Model:
        n_labels = 3
        top = SimpleNamespace(W=torch.zeros(1))

        def sample(self, n, *, label, steps, generator, init):
            assert steps == 7 and n == 3 * per_class and init == "biases"
            return torch.as_tensor(label, dtype=torch.float32)[:, None]  # the image carries its label

    def judge(x):  # right for the first 10 - c of class c's rows, else class (c + 1) % 3
        lab = x[:, 0].long()
        pos = torch.arange(x.shape[0]) % per_class
        wrong = pos >= per_class - lab
        return torch.nn.functional.one_hot(torch.where(wrong, (lab + 1) % 3, lab), 3).float()

    r = judge_samples(Model(), judge, per_class=per_class, steps=7, gen=None, init="biases")
    assert r["init"] == "biases" and r["confusion"] == [[10, 0, 0], [0, 9, 1], [2, 0, 8]]
    p = [1.0, 0.9, 0.8]
    assert r["per_class_agreement_pct"] == pytest.approx([100 * q for q in p])
    assert r["agreement_pct"] == pytest.approx(100 * sum(p) / 3) and r["min_class_agreement_pct"] == pytest.approx(80)
    se = [math.sqrt(q * (1 - q) / per_class) for q in p]
    assert r["per_class_stderr_pct"] == pytest.approx([100 * s for s in se])
    assert r["agreement_stderr_pct"] == pytest.approx(100 * math.sqrt(sum(s * s for s in se)) / 3)


def test_judge_agreement_with_unequal_class_counts_and_blank_images(monkeypatch):
    """benchmarks/_judge.agreement when classes occur unequally (the label-free sampling study):
    the overall figure is the plain fraction, its standard error the stratified one; and
    hot2006_samples.judge counts blank images and the agreement among the others."""
    from types import SimpleNamespace

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from _judge import agreement
    from hot2006_samples import BLANK, judge

    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    pred = torch.tensor([0, 0, 1, 1, 2, 0])
    r = agreement(pred, labels, 4)  # class 3 does not occur: left out of the per-class lists
    a0, a2 = 100 * 2 / 3, 50.0
    assert r["per_class_agreement_pct"] == pytest.approx([a0, 100.0, a2])
    assert r["agreement_pct"] == pytest.approx(100 * 4 / 6) and r["min_class_agreement_pct"] == pytest.approx(50)
    se = [math.sqrt(a0 * (100 - a0) / 3), 0.0, math.sqrt(a2 * (100 - a2) / 2)]
    assert r["per_class_stderr_pct"] == pytest.approx(se)
    assert r["agreement_stderr_pct"] == pytest.approx(math.sqrt((3 / 6 * se[0]) ** 2 + (2 / 6 * se[2]) ** 2))
    assert r["confusion"] == [[2, 1, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]  # requested x judged

    x = torch.full((6, 4), 0.5)
    x[2] = x[5] = BLANK / 2  # two blank images, both judged wrong
    net = lambda xb: torch.nn.functional.one_hot(pred[: xb.shape[0]], 3).float()  # noqa: E731
    j = judge(SimpleNamespace(n_labels=3), net, x, labels)
    assert j["blank_pct"] == pytest.approx(100 * 2 / 6) and j["agreement_non_blank_pct"] == pytest.approx(100.0)
    assert j["agreement_pct"] == pytest.approx(100 * 4 / 6)


def test_hot2006_samples_variants_name_their_start(monkeypatch):
    """Every hot2006_samples.py variant without a start image names where its chains begin, as
    its name says: the biases-K variants (and sampled-down, label-free, recorded from the
    biases) must not follow DBN.sample's default, which became top-noise (they silently did)."""
    import inspect

    from deepbelief.dbn import GenerativeDBN

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from hot2006_samples import DRAWS, VARIANTS

    assert set(DRAWS) | {"noise", "data"} == set(VARIANTS)
    assert inspect.signature(GenerativeDBN.sample).parameters["init"].default == "top-noise"
    for name, draw in DRAWS.items():
        want = "top-noise" if name.startswith("top-noise") else "biases"
        assert draw["init"] == want, name
        if name.startswith(("biases-", "top-noise-")):
            assert draw["steps"] == int(name.rsplit("-", 1)[1]), name


def _tiny_mnist_loglik(monkeypatch):
    from types import SimpleNamespace

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import mnist_loglik

    g = torch.Generator().manual_seed(3)
    data = SimpleNamespace(x_train=(torch.rand(60, 12, generator=g) < 0.3).float(),
                           x_test=(torch.rand(20, 12, generator=g) < 0.3).float())
    monkeypatch.setattr(mnist_loglik, "load_dataset", lambda *a, **k: data)
    return mnist_loglik


_TINY = ["--data-dir", "nowhere", "--device", "cpu", "--models", "cd1,pcd1", "--hidden", "5", "--epochs", "3",
         "--cd-epochs", "3", "--batch-size", "10", "--ais-runs", "8", "--ais-betas", "40", "--curve-betas", "30",
         "--layer2", "0", "--figure", ""]


def test_mnist_loglik_curve_points_do_not_change_the_trained_models(monkeypatch, tmp_path):
    """The curve's AIS draws from generators of its own: a run with curve points trains the same
    models (to the bit) as one without, and its final figures are the same."""
    mnist_loglik = _tiny_mnist_loglik(monkeypatch)
    runs = {}
    for points in (0, 3):
        out = tmp_path / f"p{points}.json"
        mnist_loglik.main([*_TINY, "--curve-points", str(points), "--out", str(out)])
        runs[points] = json.loads(out.read_text())["models"]
    assert len(runs[3]["CD-1"]["curve"]) == 3 and len(runs[0]["CD-1"]["curve"]) == 1  # 2 points, then the end
    for name in ("CD-1", "CD-1+PCD-1"):
        for field in ("log_z", "test_loglik", "ess", "train_loglik_first10k"):
            assert runs[3][name][field] == runs[0][name][field]


def test_mnist_loglik_resumed_run_reuses_a_finished_model_and_makes_the_same_figures(monkeypatch, tmp_path):
    """A run killed in its second model's training and rerun: the first model's figures come
    from its cached result (no second final AIS), the run's generator continues where the
    first run's stood, so the second model's figures equal an unbroken run's exactly."""
    mnist_loglik = _tiny_mnist_loglik(monkeypatch)
    ais_calls = []
    real_ais = mnist_loglik.ais_log_partition
    monkeypatch.setattr(mnist_loglik, "ais_log_partition", lambda *a, **k: ais_calls.append(1) or real_ais(*a, **k))

    def run(folder: Path) -> dict:
        out = folder / "out.json"
        mnist_loglik.main([*_TINY, "--curve-points", "0", "--checkpoint-dir", str(folder), "--out", str(out)])
        return json.loads(out.read_text())["models"]

    whole = run(tmp_path / "a")
    assert len(ais_calls) == 2 and (tmp_path / "a" / "CD-1.result.json").exists()
    # the second model's training was "killed": its checkpoint and result are gone
    for f in ("CD-1+PCD-1.ckpt.safetensors", "CD-1+PCD-1.result.json"):
        (tmp_path / "a" / f).unlink()
    ais_calls.clear()
    again = run(tmp_path / "a")
    assert len(ais_calls) == 1  # the CD model's final AIS was not repeated
    assert again["CD-1"]["reused"].endswith("CD-1.result.json")
    for field in ("log_z", "test_loglik", "ess", "train_loglik_first10k"):
        assert again["CD-1"][field] == whole["CD-1"][field]
        assert again["CD-1+PCD-1"][field] == whole["CD-1+PCD-1"][field]
    # a cache whose settings differ is not used
    ais_calls.clear()
    cached = json.loads((tmp_path / "a" / "CD-1.result.json").read_text())
    cached["key"]["ais_runs"] = 9
    (tmp_path / "a" / "CD-1.result.json").write_text(json.dumps(cached))
    third = run(tmp_path / "a")
    assert len(ais_calls) == 1 and "reused" not in third["CD-1"]  # CD-1 recomputed; PCD reused
    assert third["CD-1"]["test_loglik"] == whole["CD-1"]["test_loglik"]


def test_mnist_loglik_fresh_training_data_draws_from_the_intensities(monkeypatch, tmp_path):
    """``--train-data fresh``: the RBMs train on the grey-level training images with a new binary
    draw per mini-batch (sample_data), while every figure (AIS base rates, train and test
    log-likelihoods) is measured on the fixed binarised sets; ``fixed`` trains on those;
    ``intensities`` on the grey levels themselves, never drawn."""
    from types import SimpleNamespace

    mnist_loglik = _tiny_mnist_loglik(monkeypatch)
    g = torch.Generator().manual_seed(4)
    grey = SimpleNamespace(x_train=torch.rand(60, 12, generator=g), x_test=torch.rand(20, 12, generator=g))
    binary = SimpleNamespace(x_train=(torch.rand(60, 12, generator=g) < grey.x_train).float(),
                             x_test=(torch.rand(20, 12, generator=g) < grey.x_test).float())
    monkeypatch.setattr(mnist_loglik, "load_dataset", lambda name, **k: binary if name == "mnist-binarized" else grey)
    seen, real_train = [], mnist_loglik.train_rbm
    monkeypatch.setattr(mnist_loglik, "train_rbm", lambda rbm, x, cfg, **k: seen.append((x, cfg.sample_data)) or
                        real_train(rbm, x, cfg, **k))
    bases, real_ais = [], mnist_loglik.ais_log_partition
    monkeypatch.setattr(mnist_loglik, "ais_log_partition", lambda *a, **k: bases.append(k["base_data"]) or
                        real_ais(*a, **k))
    for mode, data in (("fresh", grey.x_train), ("fixed", binary.x_train), ("intensities", grey.x_train)):
        seen.clear(), bases.clear()
        out = tmp_path / f"{mode}.json"
        mnist_loglik.main([*_TINY, "--curve-points", "0", "--train-data", mode, "--out", str(out)])
        assert len(seen) == 2 and all(torch.equal(x, data) and s == (mode == "fresh") for x, s in seen)
        assert len(bases) == 2 and all(torch.equal(b, binary.x_train) for b in bases)
        models = json.loads(out.read_text())["models"]
        assert all(m["config"]["sample_data"] == (mode == "fresh") for m in models.values())
