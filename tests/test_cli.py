"""The command line, end to end on the embedded digits (seconds)."""

import json

import pytest

from deepbelief.cli import main
from deepbelief.recipes import get_recipe


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    out = d / "m.safetensors"
    rc = main(["train", "--epochs", "8", "--finetune-epochs", "8", "--layers", "32", "-o", str(out),
               "--metrics-json", str(d / "metrics.json"), "--quiet", "--device", "cpu"])
    assert rc == 0
    return d, out


def test_train_writes_models_and_metrics(trained):
    d, out = trained
    assert out.exists() and (d / "m.dbn.safetensors").exists()
    metrics = json.loads((d / "metrics.json").read_text())
    assert 0.0 <= metrics["test_error"] < 0.5
    assert metrics["recipe"]["layers"] == [32]


def test_evaluate_reproduces_the_recorded_test_error(trained, capsys):
    d, out = trained
    metrics = json.loads((d / "metrics.json").read_text())
    assert main(["evaluate", str(out), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert f"{100 * metrics['test_error']:.2f}%" in text


def test_show_filters_writes_a_png(trained):
    d, out = trained
    png = d / "f.png"
    assert main(["show-filters", str(d / "m.dbn.safetensors"), "-o", str(png), "--n", "16"]) == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    import struct

    w, h = struct.unpack(">II", data[16:24])
    # 16 tiles of 8x8 in a 4x4 grid with 1-pixel padding, enlarged 2x
    assert (w, h) == (2 * (4 * 9 + 1), 2 * (4 * 9 + 1))


def test_threads_flag_sets_torch_threads_for_the_command_only(trained, monkeypatch, capsys):
    """--threads N runs the command with torch.get_num_threads() == N and puts the number back;
    0 or a non-integer is refused, naming the flag."""
    import torch

    import deepbelief.cli as cli

    d, out = trained
    seen = []
    spied = [(add, (lambda args, cmd=cmd: seen.append(torch.get_num_threads()) or cmd(args)), name)
             for add, cmd, name in cli.COMMANDS]
    monkeypatch.setattr(cli, "COMMANDS", spied)
    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    assert main(["evaluate", str(out), "--device", "cpu", "--threads", str(want)]) == 0
    assert seen == [want] and torch.get_num_threads() == before
    assert main(["evaluate", str(out), "--device", "cpu"]) == 0
    assert seen == [want, before]
    capsys.readouterr()
    for bad in ("0", "two", "-1"):
        with pytest.raises(SystemExit) as exc:
            main(["evaluate", str(out), "--threads", bad])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "--threads" in err and "integer >= 1" in err and repr(bad) in err


def test_train_from_toml_config(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('layers = [16]\n[rbm]\nepochs = 1\nbatch_size = 20\n[finetune]\nepochs = 1\nbatch_size = 20\n')
    out = tmp_path / "t.safetensors"
    assert main(["train", "--config", str(cfg), "-o", str(out), "--quiet", "--device", "cpu"]) == 0
    from deepbelief.io import read_metadata

    meta = read_metadata(out)
    assert meta["recipe"]["layers"] == [16] and meta["recipe"]["rbm"]["epochs"] == 1


def test_bad_arguments_give_one_line_errors(tmp_path, capsys):
    assert main(["train", "--recipe", "nope", "-o", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "recipe must be one of" in err and "'nope'" in err
    assert main(["evaluate", str(tmp_path / "missing.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_train_with_parallel_tempering_and_centring(tmp_path):
    """--method pt --pt-temperatures K --centering reach the RBM config; the saved stack
    holds the offsets and the CSV the swap rates."""
    out, csv = tmp_path / "pt.safetensors", tmp_path / "m.csv"
    assert main(["train", "--layers", "16", "--epochs", "2", "--finetune-epochs", "0", "--method", "pt",
                 "--pt-temperatures", "3", "--n-chains", "10", "--centering", "--centering-rate", "0.05",
                 "--metrics-csv", str(csv), "-o", str(out), "--quiet", "--device", "cpu"]) == 0
    from deepbelief.io import load_model, read_metadata

    rbm = read_metadata(out)["recipe"]["rbm"]
    assert (rbm["method"], rbm["pt_temperatures"], rbm["n_chains"], rbm["centering"], rbm["centering_rate"]) == \
        ("pt", 3, 10, True, 0.05)
    assert load_model(out).rbms[0].centered
    assert "pt_swap_rate_min" in csv.read_text().splitlines()[0]


def test_train_random_init_and_cg_flags(tmp_path, capsys):
    """--init glorot: no pre-training and no stack file; --finetune-method cg, --input-dropout
    and --max-norm reach the recipe (and cg with dropout is refused by name)."""
    out = tmp_path / "r.safetensors"
    assert main(["train", "--init", "glorot", "--layers", "16", "--finetune-epochs", "2", "-o", str(out), "--quiet",
                 "--device", "cpu", "--metrics-json", str(tmp_path / "m.json")]) == 0
    assert out.exists() and not (tmp_path / "r.dbn.safetensors").exists()
    assert "no pre-training" in capsys.readouterr().out
    cfg = tmp_path / "cfg.toml"
    assert main(["train", "--finetune-method", "cg", "--input-dropout", "0.2", "--max-norm", "3", "--save-config",
                 str(cfg)]) == 2  # cg cannot use dropout or max-norm
    assert "cannot use dropout" in capsys.readouterr().err
    assert main(["train", "--finetune-method", "sgd", "--input-dropout", "0.2", "--max-norm", "3", "--save-config",
                 str(cfg)]) == 0
    text = cfg.read_text()
    assert "input_dropout = 0.2" in text and "max_norm = 3.0" in text and 'method = "sgd"' in text


def test_train_flags_are_derived_from_the_config_fields_they_set():
    """Every flag of ``TRAIN_FLAGS`` names existing config fields, takes its type from the
    first one, and a parsed command line lands in exactly those fields."""
    import dataclasses

    from deepbelief.cli import build_parser
    from deepbelief.cli.train import TRAIN_FLAGS, _config_class, _recipe_from_args

    for flag, (targets, help_text) in TRAIN_FLAGS.items():
        assert help_text, flag
        for target in targets:
            section, name = target.split(".")
            assert name in {f.name for f in dataclasses.fields(_config_class(section))}, (flag, target)
    parser = build_parser()
    args = parser.parse_args(["train", "--epochs", "3", "--lr", "0.02", "--batch-size", "10", "--layers", "30,20",
                              "--finetune-epochs", "4", "--dropout", "0.1", "--centering", "--n-chains", "7",
                              "--transform", "none", "--init", "pretrained"])
    r = _recipe_from_args(args)
    assert (r.rbm.epochs, r.rbm.lr, r.rbm.batch_size, r.rbm.centering, r.rbm.n_chains) == (3, 0.02, 10, True, 7)
    assert not r.rbm.sample_data
    assert _recipe_from_args(parser.parse_args(["train", "--sample-data"])).rbm.sample_data is True
    assert (r.finetune.epochs, r.finetune.batch_size, r.finetune.dropout) == (4, 10, 0.1)
    assert r.layers == [30, 20] and r.input_transform == "none" and r.updown is None
    with pytest.raises(SystemExit):  # the type comes from the field: an int field refuses 0.5
        parser.parse_args(["train", "--epochs", "0.5"])
    # generative recipes: --finetune-epochs and --finetune-lr set up-down's, 0 means greedy only
    g = _recipe_from_args(parser.parse_args(["train", "--recipe", "hot2006", "--finetune-epochs", "5",
                                             "--finetune-lr", "0.002", "--updown-final-epochs", "2"]))
    assert (g.updown.epochs, g.updown.lr, g.updown.final_epochs) == (5, 0.002, 2)
    c = _recipe_from_args(parser.parse_args(["train", "--recipe", "hot2006", "--updown-clamped-chains", "0.5"]))
    assert (c.updown.clamped_chains, c.updown.persistent) == (0.5, True)
    f = _recipe_from_args(parser.parse_args(["train", "--recipe", "hot2006", "--updown-final-until-train-error",
                                             "--updown-final-epochs", "120"]))
    assert (f.updown.final_until_train_error, f.updown.final_epochs) == (True, 120)
    g0 = _recipe_from_args(parser.parse_args(["train", "--recipe", "hot2006", "--finetune-epochs", "0"]))
    assert (g0.updown.epochs, g0.updown.final_epochs, g0.finetune) == (0, 0, None)
    # the README's short variant: the recipe's stopping rule with no final phase to stop
    s = _recipe_from_args(parser.parse_args(["train", "--recipe", "hot2006", "--updown-epochs", "10",
                                             "--updown-final-epochs", "0"]))
    assert (s.updown.epochs, s.updown.final_epochs, s.updown.final_until_train_error) == (10, 0, True)
    s.updown.validate()
    # an RBM flag sets every RBM: the recipe's per-layer value (hot2006's top: PCD, 60 epochs) gives way
    plain = get_recipe("hot2006").rbm_configs()
    assert (plain[0].epochs, plain[2].epochs, plain[2].method) == (30, 60, "pcd")
    e2 = _recipe_from_args(parser.parse_args(["train", "--recipe", "hot2006", "--epochs", "2"])).rbm_configs()
    assert [c.epochs for c in e2] == [2, 2, 2] and e2[2].method == "pcd" and e2[2].lr == 0.05


def _subcommand_paths():
    """Every command and nested subcommand of the parser, as argv prefixes."""
    import argparse

    from deepbelief.cli import build_parser

    def walk(parser, prefix):
        yield prefix
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from walk(child, prefix + [name])

    return list(walk(build_parser(), []))


@pytest.mark.parametrize("argv", _subcommand_paths(), ids=lambda a: " ".join(a) or "deepbelief")
def test_every_help_renders(argv, capsys):
    """argparse formats help strings with %: a bare % in one (e.g. "1.21%;") made `--help`
    crash with a traceback until 2026-12-07."""
    with pytest.raises(SystemExit) as exc:
        main(argv + ["--help"])
    assert exc.value.code == 0
    assert "usage: deepbelief" in capsys.readouterr().out
