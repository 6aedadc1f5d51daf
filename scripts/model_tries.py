"""Cheap tries on the descriptor side, each scored by host-grouped 5-fold CV on the training split
only (the test split is never looked at here). Appends/updates rows in
screener/data/models/tries.json; the README's tries table is made from that file.

    python scripts/model_tries.py [--only NAME ...]

Tries:
  descriptor-et          the shipped descriptor model's configuration (reference row)
  descriptor-et+xc       + one-hot DFT functional (GGA, GGA+U, SCAN, LDA) as inputs; at inference
                         the functional is set to GGA (the dataset's majority, 545/619)
  descriptor-et-pathonly only the path descriptors (drops host-level ones: volume per anion, anion
                         chemistry, ion properties) -- is the hop geometry enough?
  descriptor-et+bvse     + the bond-valence site energy (screener.sites.SiteEnergy) along the 41 path
                         points: its barrier from either end point and the end-point asymmetry
                         (bands with an element missing from the bond-valence table get the median)
  descriptor-et+mpt      + the seven bulk properties the shipped MPT network (screener/data/models/mpt)
                         predicts for the host (the band without its five hop sites, whole periodic
                         cell): what the pre-training learned, handed to the trees as inputs
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from screener.model.base import MODELS_DIR
from screener.model.descriptor_model import DescriptorModel, calibrate_scale, calibrated_std, load_folds, load_split
from screener.model.descriptors import DESCRIPTOR_NAMES, descriptor_matrix
from screener.model.metrics import score

TRIES_FILE = MODELS_DIR / "tries.json"
XC = ["GGA", "GGA+U", "SCAN", "LDA"]
PARAMS = {"max_features": 0.5, "min_samples_leaf": 1}
HOST_LEVEL = ("volume", "density", "frac_wi", "anion_", "cation_", "ion_")


def cv_score(Xs: np.ndarray, y: np.ndarray, folds: np.ndarray) -> dict:
    model = DescriptorModel(kind="et", n_estimators=200, params=PARAMS)
    mu, raw = model.out_of_fold(Xs, y, folds)
    scale = calibrate_scale(y - mu, raw, model.std_floor)
    return score(y, mu, calibrated_std(raw, scale, model.std_floor))


def bvse_profile(bands) -> np.ndarray:
    """(n, 3): BVSE barrier from the lower end point, from the higher one, and |E_initial - E_final|
    (eV) of the ion along each band's path; NaN where the table lacks a pair (filled by the caller)."""
    from pymatgen.core import Structure

    from screener.model.descriptors import _path_points
    from screener.sites import SiteEnergy

    out = np.full((len(bands), 3), np.nan)
    for i, band in enumerate(bands):
        try:
            energy = SiteEnergy(Structure.from_sites(band.sites[5:]), band.species[0].symbol).energy(
                band.lattice.get_fractional_coords(_path_points(band)))
        except KeyError:  # no bond-valence parameters for an element of this host
            continue
        ends = energy[[0, -1]]
        out[i] = [energy.max() - ends.min(), energy.max() - ends.max(), abs(ends[0] - ends[1])]
    return out


def mpt_host_properties(bands, batch_size: int = 16) -> np.ndarray:
    """(n, 7): the shipped MPT network's scaled property predictions for each band's host."""
    import torch
    from pymatgen.core import Structure
    from tqdm import tqdm

    from screener.model.base import MODELS_DIR
    from screener.model.graphs import GraphSettings, batch_graphs, build_graph
    from screener.model.pretrain import ModelConfig, build_model, load_checkpoint

    st = load_checkpoint(MODELS_DIR / "mpt" / "best.pt")
    net = build_model(ModelConfig(**st["config"]["model"]))
    net.load_state_dict(st["model"])
    net.eval()
    settings = GraphSettings(**st["graph_settings"])
    out = []
    with torch.no_grad():
        for i in tqdm(range(0, len(bands), batch_size), desc="MPT on hosts", mininterval=5):
            graphs = [build_graph(Structure.from_sites(b.sites[5:]), settings) for b in bands[i:i + batch_size]]
            out.append(net(batch_graphs(graphs).model_input())["out"].reshape(len(graphs), -1).numpy())
    return np.vstack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    bands, y, meta = load_split("train")
    folds = load_folds()
    X = descriptor_matrix(bands, progress=True)
    onehot = np.array([[m["xc"] == x for x in XC] for m in meta], float)
    path_cols = [i for i, n in enumerate(DESCRIPTOR_NAMES) if not n.startswith(HOST_LEVEL)]
    if args.only is None or "descriptor-et+bvse" in args.only:
        bv = bvse_profile(bands)
        bv = np.where(np.isnan(bv), np.nanmedian(bv, axis=0), bv)
    else:
        bv = np.zeros((len(bands), 0))
    mpt = (mpt_host_properties(bands) if args.only is None or "descriptor-et+mpt" in args.only
           else np.zeros((len(bands), 0)))
    tries = {
        "descriptor-et": ("54 band descriptors, ExtraTrees 200, log target (shipped)", X),
        "descriptor-et+xc": ("+ one-hot DFT functional of the target (GGA at inference)",
                             np.hstack([X, onehot])),
        "descriptor-et-pathonly": (f"only the {len(path_cols)} path descriptors (no host-level ones)",
                                   X[:, path_cols]),
        "descriptor-et+bvse": ("+ bond-valence site energy along the path: barrier from each end point, asymmetry",
                               np.hstack([X, bv])),
        "descriptor-et+mpt": ("+ the MPT network's seven bulk-property predictions for the host",
                              np.hstack([X, mpt])),
    }
    rows = json.loads(TRIES_FILE.read_text()) if TRIES_FILE.exists() else {}
    for name, (config, Xs) in tries.items():
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        s = cv_score(Xs, y, folds)
        rows[name] = {"config": config, "grouped_cv": {k: s[k] for k in ("n", "mae", "r2", "accuracy")},
                      "cost": f"{time.perf_counter() - t0:.0f} s CPU (5 refits)", "command":
                      f"python scripts/model_tries.py --only {name}"}
        print(name, json.dumps(rows[name]["grouped_cv"]))
    TRIES_FILE.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {TRIES_FILE}")


if __name__ == "__main__":
    main()
