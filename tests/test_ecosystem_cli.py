"""Metrics CSV logging, TOML round trips, `deepbelief plot` and the saved run config."""

import math

import pytest
import torch

from deepbelief import ConfigError, exact
from deepbelief.cli import main
from deepbelief.cli.ecosystem import gibbs_samples
from deepbelief.config import dump_toml
from deepbelief.io import read_metadata, save_model
from deepbelief.metrics_log import MetricsLogger, curves_from_rows, read_metrics_csv
from deepbelief.rbm import RBM
from deepbelief.recipes import RECIPES, Recipe, get_recipe

tomllib = pytest.importorskip("tomllib") if __import__("sys").version_info >= (3, 11) else pytest.importorskip("tomli")


def test_metrics_csv_round_trip_with_mixed_phases(tmp_path):
    path = tmp_path / "m.csv"
    log = MetricsLogger(path)
    log.pretrain_callback(0, 0, {"recon_error": 2.5, "seconds": 0.1, "note": "dropped"})
    log.pretrain_callback(0, 1, {"recon_error": 1.25, "free_energy_gap": -0.5})
    log.callback("finetune")(0, {"loss": 0.75, "valid_error": 0.125})
    rows = read_metrics_csv(path)
    assert [r["phase"] for r in rows] == ["rbm", "rbm", "finetune"]
    assert rows[1]["free_energy_gap"] == -0.5 and "free_energy_gap" not in rows[0]
    assert "note" not in rows[0] and rows[2]["valid_error"] == 0.125
    assert curves_from_rows(rows, "recon_error") == {"rbm 0": [2.5, 1.25]}


def test_metrics_csv_keeps_full_float_precision(tmp_path):
    log = MetricsLogger(tmp_path / "m.csv")
    log.log("rbm", 0, {"x": math.pi / 7})
    assert read_metrics_csv(tmp_path / "m.csv")[0]["x"] == math.pi / 7


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_round_trips_through_toml(name):
    r = get_recipe(name)
    assert Recipe.from_dict(tomllib.loads(dump_toml(r.to_dict()))).to_dict() == r.to_dict()
    r.finetune = None  # TOML has no null: "no fine-tuning" is written as finetune = false
    if r.init != "pretrained":  # a random net with no training is refused, by name
        with pytest.raises(ConfigError, match="needs a discriminative recipe with fine-tuning"):
            Recipe.from_dict(tomllib.loads(dump_toml(r.to_dict())))
        return
    assert Recipe.from_dict(tomllib.loads(dump_toml(r.to_dict()))).finetune is None


def test_save_config_then_config_reproduces_the_recipe(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    assert main(["train", "--layers", "7,5", "--epochs", "3", "--lr", "0.02", "--save-config", str(cfg)]) == 0
    d = tomllib.loads(cfg.read_text())
    assert d["layers"] == [7, 5] and d["rbm"]["epochs"] == 3 and d["rbm"]["lr"] == 0.02
    cfg2 = tmp_path / "again.toml"
    assert main(["train", "--config", str(cfg), "--save-config", str(cfg2)]) == 0
    assert cfg2.read_text() == cfg.read_text()


def test_train_writes_metrics_csv_and_the_model_records_its_full_config(tmp_path, capsys):
    out, csv = tmp_path / "m.safetensors", tmp_path / "m.csv"
    rc = main(["train", "--layers", "16", "--epochs", "2", "--finetune-epochs", "2", "--quiet",
               "--metrics-csv", str(csv), "-o", str(out), "--seed", "3"])
    assert rc == 0
    rows = read_metrics_csv(csv)
    assert [r["epoch"] for r in rows if r["phase"] == "rbm"] == [0, 1]
    assert [r["epoch"] for r in rows if r["phase"] == "finetune"] == [0, 1]
    meta = read_metadata(out)
    rebuilt = Recipe.from_dict(meta["recipe"])
    assert rebuilt.layers == [16] and rebuilt.rbm.epochs == 2 and meta["seed"] == 3
    assert "deepbelief_version" in meta
    png = tmp_path / "c.png"
    assert main(["plot", "curves", str(csv), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_curves_names_a_missing_metric(tmp_path, capsys):
    log = MetricsLogger(tmp_path / "m.csv")
    log.log("rbm", 0, {"recon_error": 1.0})
    assert main(["plot", "curves", str(tmp_path / "m.csv"), "--metrics", "nope", "-o", str(tmp_path / "x.png")]) == 2
    assert "['nope']" in capsys.readouterr().err


def test_gibbs_samples_of_a_tiny_rbm_match_its_exact_marginals(tmp_path):
    # oracle: the enumerated marginals p(v_i = 1) of a 5x3 RBM. gibbs_samples returns
    # E[v | h] after a long chain, whose average over chains estimates p(v_i = 1).
    g = torch.Generator().manual_seed(0)
    rbm = RBM(5, 3, weight_std=1.0, generator=g)
    with torch.no_grad():
        rbm.visible.bias.copy_(torch.tensor([-1.0, 0.5, 0.0, 1.0, -0.5]))
    path = tmp_path / "r.safetensors"
    save_model(path, rbm)
    states, p = exact.visible_distribution(rbm)
    marg = (p[:, None] * states).sum(0).float()
    n = 4000
    v = gibbs_samples(rbm, n, 30, torch.Generator().manual_seed(1))
    se = v.std(0) / math.sqrt(n)  # chains are independent: standard error of the mean
    assert torch.all((v.mean(0) - marg).abs() < 5 * se + 1e-6), (v.mean(0), marg, se)
    assert main(["plot", "samples", str(path), "--n", "4", "--steps", "5", "--shape", "1,5",
                 "-o", str(tmp_path / "s.png"), "--device", "cpu"]) == 0


def test_plot_samples_refuses_a_classifier(tmp_path, capsys):
    from deepbelief.finetune import DeepClassifier

    path = tmp_path / "c.safetensors"
    save_model(path, DeepClassifier([4, 3], ["sigmoid"], 2))
    assert main(["plot", "samples", str(path), "-o", str(tmp_path / "s.png"), "--device", "cpu"]) == 2
    assert "RBM or a DBN" in capsys.readouterr().err
