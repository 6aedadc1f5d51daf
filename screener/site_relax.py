"""Where the working ion relaxes to: CHGNet relaxation of one ion at each candidate insertion site.

A cavity centre is where the empty framework leaves the most room, not where the ion settles: a
DFT-NEB end point is typically 0.3-0.5 A off it (the ion bonds to one side of its cage). Here the
ion alone moves (the framework is held fixed, one ion per cell) under CHGNet forces. All candidates
of a host relax together: one batched CHGNet pass (forward on a list of graphs, one backward) per
step for the candidates still moving, and each candidate is its own ASE BFGS (a 3-dimensional
problem, so the quasi-Newton step converges in a few steps) fed those forces through a
SinglePointCalculator. A cell narrower than min_width is repeated for the relaxation only, so the
ion doesn't meet its own image.

What it can't do: a DFT-NEB band's framework was relaxed with the ion at the initial end point, so
in it the final end point is often not a minimum of the ion (CHGNet force on the ion > 0.1 eV/A
at 86 of the dataset's 152 charged final end points, > 0.5 eV/A at 27; at 36 initial end points),
and no fixed-framework relaxation ends there. It costs 8 s to 7 min per host on one core (dozens of candidates in low-symmetry cells), so
it is an option (candidate_sites(relax="chgnet")), not the default.

With RelaxSettings.framework_radius > 0 the framework atoms within that radius of each start relax
with the ion (candidate_sites(relax="chgnet-framework")), as a DFT study relaxes each end point:
each candidate is then its own BFGS over the ion and those atoms, still one batched CHGNet pass per
step. Several times the cost of the ion alone, for hosts whose sites only exist once the cage
gives way (scripts/site_ceiling.py measures how many of the dataset's hops need it).
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.optimize import BFGS
from pymatgen.core import Structure


@dataclass(frozen=True)
class RelaxSettings:
    """Limits of the site relaxation (with these: median 38 s per dataset charged host, one core)."""

    fmax: float = 0.1
    """Force (eV/A) on the ion below which a candidate has relaxed."""
    steps: int = 60
    """Optimiser steps at most (each is one batched CHGNet call)."""
    max_step: float = 0.2
    """Largest move (A) of an ion per step (BFGS's maxstep)."""
    alpha: float = 10.0
    """BFGS's initial Hessian (eV/A^2): about the curvature of an ion's cage (ASE's 70 is for bonds)."""
    batch_size: int = 16
    """Structures per CHGNet forward pass."""
    min_width: float = 7.0
    """Cells narrower than this (A, between opposite faces) are repeated for the relaxation."""
    max_starts: int | None = 24
    """Candidates relaxed per host at most (the lowest bond-valence energies): bounds the cost of
    low-symmetry cells, whose cavities give dozens of distinct candidates."""
    merge_tol: float = 0.25
    """A moving ion that comes this close (A) to another candidate's ion, or a symmetry image of
    it, stops there: both are relaxing into the same site, which only one needs to finish."""
    framework_radius: float = 0.0
    """Framework atoms within this distance (A, minimum image) of the ion's start relax with it;
    0 keeps the framework fixed."""
    framework_alpha: float = 70.0
    """BFGS's initial Hessian (eV/A^2) when framework atoms move (ASE's default, sized for bonds)."""
    cache_dir: str | None = None
    """If set, results are kept there (one .npz per framework, ion, starts and settings), so a
    re-run (a benchmark variant, a resumed campaign) doesn't relax the same sites again."""


class Relaxed(NamedTuple):
    """Relaxed candidates: fractional positions in the host cell, CHGNet total energies (eV, of
    the relaxation cell), whether each reached fmax, and the optimiser steps taken."""

    frac: np.ndarray
    energy: np.ndarray
    converged: np.ndarray
    steps: int


def _widths(structure: Structure) -> np.ndarray:
    lat = structure.lattice
    return lat.volume / np.linalg.norm(np.cross(lat.matrix[[1, 2, 0]], lat.matrix[[2, 0, 1]]), axis=1)


@lru_cache(maxsize=1)
def site_model():
    """Pretrained CHGNet for site relaxation, loaded once per process, its parameters frozen (so
    the backward pass below differentiates only with respect to positions)."""
    from chgnet.model import CHGNet

    model = CHGNet.load(verbose=False, use_device="cpu")
    model.requires_grad_(False)
    model.eval()
    return model


def _batch_forces(structs: list[Structure], model, batch_size: int) -> tuple[list[np.ndarray], np.ndarray]:
    """(forces on every atom, (n_atoms, 3) eV/A each; total energies (n,) eV) of structures of one lattice.

    CHGNet's own forces (task "ef") differentiate with create_graph=True, for training: here the
    energy is differentiated once, with respect to the fractional coordinates of the graphs, which
    gives the same forces (to 1e-4 eV/A) at half the cost (0.2 vs 0.4 s per 57-atom structure)."""
    import torch

    if not structs:
        return [], np.zeros(0)
    inv_t = np.linalg.inv(structs[0].lattice.matrix).T
    forces, energies = [], []
    for start in range(0, len(structs), batch_size):
        chunk = structs[start : start + batch_size]
        graphs = [model.graph_converter(s) for s in chunk]
        for g in graphs:
            g.atom_frac_coord.requires_grad_(True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # chgnet's own tensor-to-scalar notice, once per call
            # eV per structure (the model is intensive)
            energy = model(graphs, task="e")["e"] * torch.tensor([float(len(s)) for s in chunk])
        grads = torch.autograd.grad(energy.sum(), [g.atom_frac_coord for g in graphs])
        forces += [-(gr.detach().numpy().astype(float) @ inv_t) for gr in grads]
        energies += [float(e) for e in energy.detach()]
    return forces, np.array(energies)


def _joined(frac: np.ndarray, moving: np.ndarray, ops: tuple[np.ndarray, np.ndarray] | None, lat: np.ndarray, tol: float) -> np.ndarray:
    """Indices among moving whose point is within tol (A) of an image (under ops) of a point of
    lower index (each pair is settled once: the later candidate stops, the earlier one goes on)."""
    rots, trans = ops if ops is not None else (np.eye(3)[None], np.zeros((1, 3)))
    imgs = np.einsum("kij,nj->nki", rots, frac) + trans[None]  # (n, ops, 3)
    out = []
    for i in moving:
        if i == 0:
            continue
        d = imgs[:i] - frac[i]
        d -= np.rint(d)
        if np.min(np.linalg.norm(d @ lat, axis=-1)) < tol:
            out.append(i)
    return np.array(out, dtype=int)


def relax_ion(
    framework: Structure, working_ion: str, frac_points: np.ndarray, *, settings: RelaxSettings | None = None, model=None,
    ops: tuple[np.ndarray, np.ndarray] | None = None,
) -> Relaxed:
    """Relax working_ion at each fractional point of framework with CHGNet, alone (the framework
    fixed) or with the framework atoms within settings.framework_radius of it; the ion's positions
    come back in framework's fractional coordinates, wrapped into [0, 1), with the total energies.
    ops: the framework's symmetry operations (rotations, translations; fractional), so that ions
    heading for equivalent points are recognised (see RelaxSettings.merge_tol); a stopped one
    counts as converged."""
    settings = settings or RelaxSettings()
    pts = np.atleast_2d(np.asarray(frac_points, dtype=float)) % 1.0
    n = len(pts)
    if n == 0:
        return Relaxed(np.zeros((0, 3)), np.zeros(0), np.zeros(0, dtype=bool), 0)
    path = _cache_path(framework, working_ion, pts, settings) if settings.cache_dir else None
    if path is not None and path.exists():
        with np.load(path) as z:
            return Relaxed(z["frac"], z["energy"], z["converged"], int(z["steps"]))
    model = model or site_model()
    reps = np.maximum(1, np.ceil(settings.min_width / _widths(framework))).astype(int)
    cell = framework * reps if np.any(reps > 1) else framework  # same origin: cartesian positions carry over
    x = framework.lattice.get_cartesian_coords(pts)
    systems = _systems(cell, working_ion, x, settings.framework_radius)
    alpha = settings.framework_alpha if settings.framework_radius > 0 else settings.alpha
    opts = [BFGS(at, maxstep=settings.max_step, alpha=alpha, logfile=None) for at in systems]
    energy = np.zeros(n)
    active = np.ones(n, dtype=bool)
    step = 0
    while True:
        idx = np.flatnonzero(active)
        if len(idx) == 0:  # every ion still moving joined another one
            break
        structs = [_structure(cell, working_ion, systems[k], settings.framework_radius > 0) for k in idx]
        forces, energy[idx] = _batch_forces(structs, model, settings.batch_size)
        for k, fk in zip(idx, forces):
            # a system's atoms are the last ones of its structure (the ion alone, or every atom)
            systems[k].calc = SinglePointCalculator(systems[k], energy=float(energy[k]), forces=fk[-len(systems[k]) :])
            # the largest force on an atom free to move (the constraint zeroes the fixed ones)
            active[k] = np.linalg.norm(systems[k].get_forces(), axis=1).max() >= settings.fmax
        idx = np.flatnonzero(active)
        if len(idx) == 0 or step >= settings.steps:
            break
        step += 1
        joined = _joined(framework.lattice.get_fractional_coords(x), idx, ops, framework.lattice.matrix, settings.merge_tol)
        if len(joined):
            active[joined] = False
            idx = np.flatnonzero(active)
        for k in idx:
            opts[k].step()
            x[k] = systems[k].positions[-1]
    out = Relaxed(framework.lattice.get_fractional_coords(x) % 1.0, energy, ~active, step)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, frac=out.frac, energy=out.energy, converged=out.converged, steps=out.steps)
        tmp.replace(path)  # atomic: a killed run leaves no half-written entry
    return out


def _systems(cell: Structure, working_ion: str, x: np.ndarray, framework_radius: float) -> list[Atoms]:
    """One ASE system per start, the ion last. Framework fixed (radius 0): the ion alone; else the
    whole cell, its atoms farther than framework_radius from the start held fixed."""
    if framework_radius <= 0:
        return [Atoms(working_ion, positions=[p], cell=cell.lattice.matrix, pbc=True) for p in x]
    from ase.constraints import FixAtoms

    symbols = [sp.symbol for sp in cell.species] + [working_ion]
    lat = cell.lattice
    dist = lat.get_all_distances(lat.get_fractional_coords(x), cell.frac_coords)  # (starts, atoms), minimum image
    out = []
    for p, d in zip(x, dist):
        atoms = Atoms(symbols, positions=np.vstack([cell.cart_coords, p]), cell=lat.matrix, pbc=True)
        atoms.set_constraint(FixAtoms(indices=np.flatnonzero(d > framework_radius)))
        out.append(atoms)
    return out


def _structure(cell: Structure, working_ion: str, system: Atoms, whole_cell: bool) -> Structure:
    """What CHGNet sees of one system: its own atoms when it is the whole cell (the framework
    relaxes), else the fixed cell with the ion appended."""
    if whole_cell:
        return Structure(cell.lattice, system.get_chemical_symbols(), system.positions, coords_are_cartesian=True)
    s = cell.copy()
    s.append(working_ion, system.positions[-1], coords_are_cartesian=True)
    return s


def _cache_path(framework: Structure, working_ion: str, pts: np.ndarray, settings: RelaxSettings) -> Path:
    """Cache file of one relaxation: a hash of everything its result depends on."""
    h = hashlib.sha256()
    h.update(np.round(framework.lattice.matrix, 5).tobytes())
    h.update(" ".join(sp.symbol for sp in framework.species).encode())
    h.update(np.round(framework.frac_coords % 1.0, 5).tobytes())
    h.update(working_ion.encode())
    h.update(np.round(pts, 5).tobytes())
    h.update(repr(replace(settings, cache_dir=None, batch_size=0)).encode())
    return Path(settings.cache_dir) / f"{h.hexdigest()[:24]}.npz"
