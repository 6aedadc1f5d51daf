"""scripts/soap_krr_try.py: the SOAP kernel-ridge try's channels, its nested choice of settings and
its features (the latter only where the optional dscribe is installed)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from _dataset import dataset_band
from _scripts import load_script

soap = load_script("soap_krr_try")


def test_channels_tell_oxo_anion_formers_from_anions():
    assert soap.channel("S", "Ca", {"Co", "S", "O"}) == "P"  # sulfate S is a cation
    assert soap.channel("S", "Mg", {"Mo", "S"}) == "S"  # sulfide S is the anion
    assert soap.channel("C", "Na", {"Fe", "C", "N"}) == "N"  # cyanide
    assert soap.channel("Li", "Li", {"Li", "Fe", "P", "O"}) == "H"  # the other working ions
    assert soap.channel("Fe", "Li", {"Li", "Fe", "P", "O"}) == "Fe"
    assert soap.channel("P", "Li", {"Li", "Fe", "P", "O"}) == "P"


def test_nested_kernel_ridge_learns_a_smooth_target_and_picks_settings_per_fold():
    rng = np.random.default_rng(0)
    n = 120
    x = rng.uniform(-1, 1, (n, 2))
    y = 0.2 + np.exp(x[:, 0]) * 0.5 + 0.02 * rng.standard_normal(n)
    y = np.maximum(y, 0.01)
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    grams = {r: np.exp(-d2 / r) for r in soap.CUTOFFS}  # any positive-definite kernel per "cutoff"
    folds = np.arange(n) % 5
    model = soap.SoapKRR(grams, np.array(["Li"] * n), y)
    pred, chosen = model.nested_oof(folds)
    assert len(chosen) == 5 and all(h in soap.GRID for h in chosen)
    assert np.mean(np.abs(pred - y)) < 0.25 * np.mean(np.abs(y - y.mean()))


@pytest.mark.skipif(importlib.util.find_spec("dscribe") is None,
                    reason="dscribe is an optional dependency of this try: pip install -e '.[tries]'")
def test_soap_blocks_do_not_depend_on_hop_direction_or_host_order():
    band = dataset_band("Fe2S3O12_Ca")
    order = [4, 3, 2, 1, 0] + list(range(len(band) - 1, 4, -1))  # hop reversed, host sites reversed
    rev = type(band).from_sites([band[i] for i in order])
    a, b = soap.soap_blocks([band], 3.0), soap.soap_blocks([rev], 3.0)
    assert a.shape[:2] == (1, 3)
    np.testing.assert_allclose(np.linalg.norm(a, axis=2), 1.0)
    np.testing.assert_allclose(a, b, atol=1e-8)
