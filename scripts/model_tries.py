"""Cheap tries on the descriptor side, each scored by host-grouped 5-fold CV on the training split
only (the test split is never looked at here). Appends/updates rows in
screener/data/models/tries.json; the README's tries table is made from that file.

    python scripts/model_tries.py [--only NAME ...] [--seeds N]

Each try is scored over --seeds seeds of the trees (default 5; rows give the mean and each seed's
MAE), alone and in the nested gated blend with the shipped ALIGNN's out-of-fold predictions (as
`screener model blend` fits it; "blend" in each row).

Tries:
  descriptor-et          the shipped descriptor model's configuration (reference row)
  descriptor-et-mean     the trees' plain mean as the barrier (the model shipped before the
                         interquartile mean); -trim10 / -median: 10% cut from each end / the median
  descriptor-et-54       without the two widest-path descriptors (the model shipped before them)
  descriptor-et-500      500 trees instead of the shipped 200
  descriptor-et-sqrt     the trees fitted on sqrt(E_m) instead of log(E_m + 0.05)
  descriptor-et+tube-bvse
                         + the bond-valence site energy's barrier along the best path inside the
                         same tube (minimax over the tube grid, from the higher and the lower end)
  descriptor-et+xc       + one-hot DFT functional (GGA, GGA+U, SCAN, LDA) as inputs; at inference
                         the functional is set to GGA (the dataset's majority, 545/619)
  descriptor-et-pathonly only the path descriptors (drops host-level ones: volume per anion, anion
                         chemistry, ion properties) -- is the hop geometry enough?
  descriptor-et+bvse     + the bond-valence site energy (screener.sites.SiteEnergy) along the 41 path
                         points: its barrier from either end point and the end-point asymmetry
                         (bands whose ion or anion lacks bond-valence parameters get the median)
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
from screener.model.blend import nested_rule_oof
from screener.model.descriptor_model import (
    ET_PARAMS,
    ET_TREES,
    TRIM,
    DescriptorModel,
    calibrate_scale,
    calibrated_std,
    load_folds,
    load_split,
)
from screener.model.descriptors import DESCRIPTOR_NAMES, descriptor_matrix
from screener.model.metrics import score

TRIES_FILE = MODELS_DIR / "tries.json"
XC = ["GGA", "GGA+U", "SCAN", "LDA"]
HOST_LEVEL = ("volume", "density", "frac_wi", "anion_", "cation_", "ion_")


WIDEST = [DESCRIPTOR_NAMES.index(n) for n in ("widest_path_anion", "widest_path_cation")]


class SqrtTargetModel(DescriptorModel):
    """descriptor-et with the trees fitted on sqrt(E_m) instead of log(E_m + 0.05); every tree's
    prediction is squared back to eV before the interquartile mean, as the shipped model does."""

    def _fwd(self, y: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(y, 0.0))

    def _inv(self, z: np.ndarray) -> np.ndarray:
        return np.maximum(z, 0.0) ** 2


def cv_score(Xs: np.ndarray, y: np.ndarray, folds: np.ndarray, trees: int = ET_TREES, seed: int = 0,
             trim: float = TRIM, model_cls: type[DescriptorModel] = DescriptorModel,
             alignn_oof: np.ndarray | None = None) -> tuple[dict, dict | None]:
    """(scores of the descriptor model, scores of its nested gated blend with alignn_oof or None)."""
    model = model_cls(kind="et", n_estimators=trees, params=ET_PARAMS, seed=seed, trim=trim)
    mu, raw = model.out_of_fold(Xs, y, folds)
    scale = calibrate_scale(y - mu, raw, model.std_floor)
    alone = score(y, mu, calibrated_std(raw, scale, model.std_floor))
    if alignn_oof is None:
        return alone, None
    blended, _ = nested_rule_oof(y, alignn_oof, mu, folds)
    return alone, score(y, blended)


def seeds_score(Xs: np.ndarray, y: np.ndarray, folds: np.ndarray, seeds: int, trees: int = ET_TREES,
                trim: float = TRIM, model_cls: type[DescriptorModel] = DescriptorModel,
                alignn_oof: np.ndarray | None = None) -> dict:
    """cv_score averaged over the trees' seeds 0..seeds-1 (a difference of 0.002 eV between two
    descriptor sets is within one seed's spread), with the MAE of each seed and, given the ALIGNN's
    out-of-fold predictions, the same for the blend."""
    runs = [cv_score(Xs, y, folds, trees, seed, trim, model_cls, alignn_oof) for seed in range(seeds)]

    def summary(rs: list[dict]) -> dict:
        out = {k: float(np.mean([r[k] for r in rs])) for k in ("mae", "r2", "accuracy")}
        return {**out, "mae_per_seed": [round(r["mae"], 4) for r in rs]}

    out = {"n": runs[0][0]["n"], **summary([a for a, _ in runs]), "seeds": seeds}
    if alignn_oof is not None:
        out["blend"] = summary([b for _, b in runs])
    return out


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


def tube_bvse(bands) -> np.ndarray:
    """(n, 2): the bond-valence site energy's barrier along the best path inside the tube of the
    widest-path descriptors (the lowest level at which the two ends connect), above the higher and
    above the lower end; NaN where the table lacks a pair."""
    from pymatgen.core import Structure

    from screener.model.descriptors import _path_points, _tube_grid, _widest_path
    from screener.sites import SiteEnergy

    out = np.full((len(bands), 2), np.nan)
    for i, band in enumerate(bands):
        pts = _path_points(band)
        grid, inside, start, end = _tube_grid(band, pts[0], pts[-1])
        try:
            site_energy = SiteEnergy(Structure.from_sites(band.sites[5:]), band.species[0].symbol)
        except KeyError:
            continue
        energy = np.full(inside.shape, np.inf)
        energy[inside] = site_energy.energy(band.lattice.get_fractional_coords(grid[inside]))
        level = -_widest_path(-energy, inside, start, end)
        ends = energy[start], energy[end]
        out[i] = [level - max(ends), level - min(ends)]
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
    ap.add_argument("--seeds", type=int, default=5, help="trees' seeds averaged per try")
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
    if args.only is None or "descriptor-et+tube-bvse" in args.only:
        tb = tube_bvse(bands)
        tb = np.where(np.isnan(tb), np.nanmedian(tb, axis=0), tb)
    else:
        tb = np.zeros((len(bands), 0))
    no_widest = [i for i in range(X.shape[1]) if i not in WIDEST]
    tries = {
        "descriptor-et": (f"{len(DESCRIPTOR_NAMES)} band descriptors, ExtraTrees {ET_TREES}, log target, "
                          f"barrier = the trees' interquartile mean (shipped)", X),
        "descriptor-et-mean": ("barrier = the trees' plain mean (the model shipped before)", X, ET_TREES, 0.0),
        "descriptor-et-trim10": ("barrier = the trees' mean with 10% cut from each end", X, ET_TREES, 0.1),
        "descriptor-et-median": ("barrier = the trees' median", X, ET_TREES, 0.5),
        "descriptor-et-54": ("without the two widest-path descriptors (the 54 of the model shipped before)",
                             X[:, no_widest]),
        "descriptor-et-500": ("500 trees instead of 200", X, 500),
        "descriptor-et-sqrt": ("trees on sqrt(E_m) instead of log(E_m + 0.05), then the interquartile mean in eV",
                               X, ET_TREES, TRIM, SqrtTargetModel),
        "descriptor-et+xc": ("+ one-hot DFT functional of the target (GGA at inference)",
                             np.hstack([X, onehot])),
        "descriptor-et-pathonly": (f"only the {len(path_cols)} path descriptors (no host-level ones)",
                                   X[:, path_cols]),
        "descriptor-et+bvse": ("+ bond-valence site energy along the path: barrier from each end point, asymmetry",
                               np.hstack([X, bv])),
        "descriptor-et+tube-bvse": ("+ bond-valence barrier along the best path in the 1.2 A tube (from each end)",
                                    np.hstack([X, tb])),
        "descriptor-et+mpt": ("+ the MPT network's seven bulk-property predictions for the host",
                              np.hstack([X, mpt])),
    }
    from screener.cli_model import train_oof
    from screener.model.base import load_model

    alignn_oof = train_oof(load_model("alignn"))[1]
    rows = json.loads(TRIES_FILE.read_text()) if TRIES_FILE.exists() else {}
    for name, (config, Xs, *rest) in tries.items():
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        s = seeds_score(Xs, y, folds, args.seeds, *rest, alignn_oof=alignn_oof)
        rows[name] = {"config": config, "grouped_cv": s,
                      "cost": f"{time.perf_counter() - t0:.0f} s CPU ({5 * args.seeds} refits)", "command":
                      f"python scripts/model_tries.py --only {name}"}
        print(name, json.dumps(rows[name]["grouped_cv"]))
    TRIES_FILE.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {TRIES_FILE}")


if __name__ == "__main__":
    main()
