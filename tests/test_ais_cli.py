"""`deepbelief evaluate --loglik` against exact enumeration on tiny models of the digits."""

import re

import pytest
import torch

from deepbelief import exact
from deepbelief.cli import main
from deepbelief.data import load_dataset
from deepbelief.dbn import DBN
from deepbelief.io import save_model
from deepbelief.rbm import RBM


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of tiny ops: a second thread only adds contention
    yield
    torch.set_num_threads(n)


def small_rbm(nv, nh, seed, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    r = RBM(nv, nh, weight_std=scale, generator=g)
    with torch.no_grad():
        r.visible.bias.copy_(torch.randn(nv, generator=g) * 0.5 - 1.0)
        r.hidden.bias.copy_(torch.randn(nh, generator=g) * 0.5)
    return r


def run_loglik(capsys, path, *extra):
    rc = main(["evaluate", str(path), "--loglik", "--dataset", "digits", "--device", "cpu",
               "--ais-runs", "100", "--ais-betas", "1000", *extra])
    out = capsys.readouterr()
    assert rc == 0, out.err
    m = re.search(r"test (.+?): (-?\d+\.\d+) nats \(interval (-?\d+\.\d+) \.\. (-?\d+\.\d+)", out.out)
    assert m, out.out
    return m.group(1), float(m.group(2)), float(m.group(3)), float(m.group(4)), out


def test_cli_rbm_log_likelihood_matches_exact(tmp_path, capsys):
    r = small_rbm(64, 8, 0)
    save_model(tmp_path / "rbm.safetensors", r)
    what, value, low, high, out = run_loglik(capsys, tmp_path / "rbm.safetensors")
    # the digits are grey levels: the command binarises them as mnist-binarized is binarised
    assert "binarising" in out.out and "AIS 100%" in out.err and what == "log-likelihood"
    x = load_dataset("digits").binarized(0).x_test.double()
    truth = float(exact.log_prob(r, x).mean())  # log Z enumerated over the 2^8 hidden states
    assert low - 0.01 <= truth <= high + 0.01  # printed with 2 decimals
    assert abs(value - truth) < 0.1


def test_cli_dbn_bound_matches_exact_bound(tmp_path, capsys):
    dbn = DBN([small_rbm(64, 8, 1), small_rbm(8, 6, 2, scale=1.0)])
    save_model(tmp_path / "dbn.safetensors", dbn)
    what, value, low, high, _ = run_loglik(capsys, tmp_path / "dbn.safetensors", "--bound-samples", "20")
    assert what.startswith("variational lower bound")
    x = load_dataset("digits").binarized(0).x_test.double()
    bound = float(exact.dbn_variational_bound(dbn, x).mean())
    assert low - 0.01 <= bound <= high + 0.01
    assert bound < float(exact.dbn_log_prob(dbn, x).mean())


def test_cli_bad_ais_option_is_one_line_error(tmp_path, capsys):
    save_model(tmp_path / "rbm.safetensors", small_rbm(64, 4, 3))
    rc = main(["evaluate", str(tmp_path / "rbm.safetensors"), "--loglik", "--dataset", "digits",
               "--device", "cpu", "--ais-runs", "0"])
    assert rc == 2 and "n_runs must be >= 1, got 0" in capsys.readouterr().err


def test_cli_prints_the_sandwich_and_writes_it_as_json(tmp_path, capsys):
    import json

    r = small_rbm(64, 8, 4)
    save_model(tmp_path / "rbm.safetensors", r)
    _, value, low, high, out = run_loglik(capsys, tmp_path / "rbm.safetensors", "--raise-rows", "200",
                                          "--metrics-json", str(tmp_path / "ll.json"))
    m = re.search(r"conservative log-likelihood .*?: (-?\d+\.\d+) nats \(s\.e\. (\d+\.\d+)\)", out.out)
    assert m, out.out
    cons, se = float(m.group(1)), float(m.group(2))
    x = load_dataset("digits").binarized(0).x_test.double()
    truth_first = float(exact.log_prob(r, x[:200]).mean())  # RAISE saw the first 200 test images
    assert cons - 3 * se - 0.01 <= truth_first <= cons + 3 * se + 0.2
    rec = json.loads((tmp_path / "ll.json").read_text())
    assert abs(rec["value"] - value) < 0.01 and abs(rec["conservative"] - cons) < 0.01
    assert rec["n_conservative"] == 200 and rec["warnings"] == [] and rec["ais"]["n_runs"] == 100


def test_cli_warns_when_the_estimate_is_unreliable(tmp_path, capsys):
    r = small_rbm(64, 8, 5, scale=3.0)  # strongly coupled: 10 temperatures cannot anneal it
    save_model(tmp_path / "rbm.safetensors", r)
    rc = main(["evaluate", str(tmp_path / "rbm.safetensors"), "--loglik", "--dataset", "digits", "--device", "cpu",
               "--ais-runs", "50", "--ais-betas", "10", "--raise-rows", "20"])
    err = capsys.readouterr().err
    assert rc == 0 and "warning: AIS effective sample size" in err and "--ais-runs" in err
