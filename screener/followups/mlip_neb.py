"""CHGNet-NEB: the middle tier between the screening model and DFT-NEB.

A climbing-image NEB with a universal potential (CHGNet, weights shipped in its wheel, so it runs
offline) through ASE: both end points relaxed at fixed cell, IDPP images, improved-tangent NEB
(ASE's historical 'aseneb' tangent is reported to give wrong barriers), the framework far from the
hop frozen so only the neighbourhood of the path relaxes (the same atoms move in the relaxations
and in the NEB, so energies compare like with like). Inputs follow ``screener.bands.band_endpoints``:
the moving ion is site 0 of both end points, the host sites follow in the same order.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from ase.mep import NEB
from ase.mep.neb import idpp_interpolate
from ase.optimize import FIRE, LBFGS
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

#: End points whose moving ion ends closer than this (A) after relaxation have relaxed into each other.
MIN_HOP_AFTER_RELAX = 0.5


_OPTIMIZERS = {"LBFGS": LBFGS, "FIRE": FIRE}


class MlipNebError(ValueError):
    """A hop the NEB can't run; str() is one line "<hop>: <reason>"."""


@dataclass
class MlipNebSettings:
    """Limits of one CHGNet-NEB; defaults chosen so the 60 test hops fit in ~75 min of one core."""

    fmax: float = 0.1
    """NEB force limit (eV/A) on the images (perpendicular force; the climbing image's full force)."""
    relax_fmax: float = 0.1
    """Force limit (eV/A) of the end-point relaxations."""
    steps: int = 80
    """Maximum optimizer steps per stage (each relaxation, the NEB)."""
    n_images: int = 3
    """Intermediate images (end points not counted)."""
    climb: bool = True
    """Climbing image (the highest image climbs to the saddle)."""
    freeze_radius: float = 5.0
    """Host atoms farther than this (A) from the straight hop segment are frozen; the ion never is."""
    model: str = "chgnet"
    spring: float = 0.1
    """NEB spring constant (eV/A^2)."""
    relax_endpoints: bool = True
    max_cell_strain: float = 0.10
    """Largest strain between the end points' cells; the final end point is put in the initial cell."""
    optimizer: str = "LBFGS"
    """NEB optimizer: "LBFGS" (half FIRE's steps on the test hops, no O(N^3) Hessian like BFGS) or "FIRE"."""

    def __post_init__(self) -> None:
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"MlipNebSettings: unknown optimizer {self.optimizer!r}; known: {', '.join(_OPTIMIZERS)}")
        if self.model != "chgnet":
            raise ValueError(f"MlipNebSettings: unknown model {self.model!r}; known: chgnet")
        if self.n_images < 1 or self.steps < 1 or self.fmax <= 0 or self.relax_fmax <= 0 or self.freeze_radius < 0:
            raise ValueError(f"MlipNebSettings: bad limits {asdict(self)}")


@dataclass
class MlipNebResult:
    """Outcome of one NEB: the barrier and the energy profile along the final images."""

    barrier_ev: float
    """max image energy - initial end-point energy (eV)."""
    energies_ev: list[float]
    """Energies relative to the relaxed initial end point, one per image incl. the end points."""
    converged: bool
    """True if the NEB reached settings.fmax within settings.steps."""
    seconds: float
    n_force_calls: int
    steps: dict[str, int]
    """Optimizer steps per stage: relax_initial, relax_final, neb."""
    images: list[Structure]
    path_ang: list[float]
    """Cumulative distance along the images (A, all moving atoms, minimum image), for the profile."""
    final_fmax: float
    n_frozen: int
    settings: MlipNebSettings
    label: str = ""
    model_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def plot(self, path: str | Path) -> Path:
        """Energy profile PNG (energy vs distance along the path); returns the path written."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=120)
        ax.plot(self.path_ang, self.energies_ev, "o-", color="tab:blue")
        top = int(np.argmax(self.energies_ev))
        ax.axhline(0.0, color="0.7", lw=0.8)
        ax.margins(y=0.2)
        ax.annotate(f"E_m = {self.barrier_ev:.3f} eV", (self.path_ang[top], self.energies_ev[top]),
                    textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        ax.set_xlabel("distance along path (Å)")
        ax.set_ylabel("E - E(initial) (eV)")
        state = "converged" if self.converged else f"not converged (fmax {self.final_fmax:.2f})"
        ax.set_title(f"{self.label or 'hop'}: CHGNet-NEB, {state}", fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return path

    def to_doc(self) -> dict[str, Any]:
        """JSON/Mongo-ready document (images as pymatgen dicts)."""
        return {
            "tier": "mlip-neb",
            "label": self.label,
            "model": self.settings.model,
            "model_version": self.model_version,
            "barrier_ev": self.barrier_ev,
            "energies_ev": list(self.energies_ev),
            "path_ang": list(self.path_ang),
            "converged": self.converged,
            "final_fmax": self.final_fmax,
            "seconds": self.seconds,
            "n_force_calls": self.n_force_calls,
            "steps": dict(self.steps),
            "n_frozen": self.n_frozen,
            "settings": asdict(self.settings),
            "images": [s.as_dict() for s in self.images],
            **self.extra,
        }


@lru_cache(maxsize=1)
def load_chgnet() -> Any:
    """The pretrained CHGNet, loaded once per process (loading takes seconds)."""
    from chgnet.model import CHGNet

    return CHGNet.load(verbose=False, use_device="cpu")


def chgnet_calculator() -> Calculator:
    """An ASE calculator on the cached CHGNet model (stress off: the cell is fixed)."""
    from chgnet.model.dynamics import CHGNetCalculator

    return CHGNetCalculator(model=load_chgnet(), use_device="cpu", on_isolated_atoms="ignore")


class _CountingCalculator(Calculator):
    """Delegates to a (shared) calculator and counts its force evaluations in ``counter``.

    One per image: ASE's NEB asks every image for its forces several times per optimizer step, and
    only a per-image cache keeps that at one model call per image and step."""

    implemented_properties: ClassVar[list[str]] = ["energy", "free_energy", "forces"]

    def __init__(self, inner: Calculator, counter: list[int]) -> None:
        super().__init__()
        self.inner = inner
        self.counter = counter
        self._chgnet = type(inner).__name__ == "CHGNetCalculator"

    def calculate(self, atoms: Atoms | None = None, properties: Any = None, system_changes: Any = all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        if self._chgnet:
            self.inner.calculate(atoms.copy(), ["energy", "forces"], all_changes, task="ef")  # no stress
        else:
            self.inner.calculate(atoms.copy(), ["energy", "forces"], all_changes)
        self.counter[0] += 1
        energy = float(self.inner.results["energy"])
        forces = np.asarray(self.inner.results["forces"], dtype=float)
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}


def _segment_distances(cart: np.ndarray, a: np.ndarray, b: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Distance of each point to the segment a-b under periodic boundaries (27 neighbouring images;
    the cells here are >= 8 A across, wider than any freeze radius' need beyond one image)."""
    ab = b - a
    shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], float) @ cell
    pts = cart[:, None, :] + shifts[None, :, :]
    t = np.clip(((pts - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    near = a + t[..., None] * ab
    return np.linalg.norm(pts - near, axis=-1).min(axis=1)


def _check_endpoints(initial: Structure, final: Structure, label: str) -> None:
    if len(initial) != len(final) or len(initial) < 2:
        raise MlipNebError(f"{label}: end points have {len(initial)} and {len(final)} sites")
    if [s.species for s in initial] != [s.species for s in final]:
        raise MlipNebError(f"{label}: end points' species differ site by site (moving ion must be site 0 of both)")
    if not initial.is_ordered:
        raise MlipNebError(f"{label}: disordered structure")
    hop = initial.lattice.get_distance_and_image(initial.frac_coords[0], final.frac_coords[0])[0]
    if hop < MIN_HOP_AFTER_RELAX:
        raise MlipNebError(f"{label}: moving ion (site 0) moves only {hop:.3f} Å between the end points")


def cell_strain(initial: Structure, final: Structure) -> float:
    """Largest principal Green-Lagrange strain taking the initial cell to the final one."""
    a, b = initial.lattice.matrix.T, final.lattice.matrix.T  # columns are lattice vectors
    f = b @ np.linalg.inv(a)
    return float(np.abs(np.linalg.eigvalsh(0.5 * (f.T @ f - np.eye(3)))).max())


def _in_initial_cell(initial: Structure, final: Structure, settings: MlipNebSettings, label: str) -> tuple[Structure, float]:
    """The final end point in the initial one's cell (same fractional coordinates): a fixed-cell
    NEB needs one cell, and DFT end points are sometimes cell-relaxed separately (10 of the 60
    test hops, up to 3% strain). Too large a strain means a different phase: MlipNebError."""
    strain = cell_strain(initial, final)
    if strain > settings.max_cell_strain:
        raise MlipNebError(f"{label}: end points' cells differ by {strain:.1%} strain > max_cell_strain {settings.max_cell_strain:.1%}")
    if strain < 1e-9:
        return final, 0.0
    return Structure(initial.lattice, final.species, final.frac_coords, site_properties=final.site_properties), strain


def _unwrapped_final(ini: Atoms, fin: Atoms) -> np.ndarray:
    """Final positions shifted per atom to the minimum image of the initial ones, so that linear
    interpolation moves every atom the short way."""
    from ase.geometry import find_mic

    d, _ = find_mic(fin.positions - ini.positions, ini.cell, pbc=True)
    return ini.positions + d


def _energy(atoms: Atoms, label: str, what: str) -> float:
    e = float(atoms.get_potential_energy())
    if not math.isfinite(e):
        raise MlipNebError(f"{label}: {what} energy is not finite ({e})")
    return e


def _relax(atoms: Atoms, settings: MlipNebSettings, label: str, what: str) -> int:
    if not settings.relax_endpoints:
        _energy(atoms, label, what)
        return 0
    with LBFGS(atoms, logfile=None, maxstep=0.1) as opt:
        opt.run(fmax=settings.relax_fmax, steps=settings.steps)
        n = int(opt.get_number_of_steps())
    _energy(atoms, label, f"relaxed {what}")
    return n


def _fmax(neb: NEB) -> float:
    f = neb.get_forces().reshape(-1, 3)
    return float(np.sqrt((f**2).sum(axis=1)).max()) if len(f) else 0.0


def run_mlip_neb(
    initial: Structure,
    final: Structure,
    settings: MlipNebSettings | None = None,
    calculator: Calculator | None = None,
    *,
    label: str | None = None,
) -> MlipNebResult:
    """Relax both end points (fixed cell), build IDPP images, run a climbing-image improved-tangent
    NEB and return the barrier and profile. ``calculator``: any ASE calculator (default CHGNet);
    ``label`` names the hop in errors. Raises MlipNebError (one line) for unusable end points, end
    points that relax into each other, or non-finite energies."""
    s = settings or MlipNebSettings()
    label = label or f"{initial[0].specie.symbol} hop in {initial.composition.reduced_formula}"
    _check_endpoints(initial, final, label)
    final, strain = _in_initial_cell(initial, final, s, label)
    t0 = time.perf_counter()
    inner = calculator if calculator is not None else chgnet_calculator()
    calls = [0]

    ini = AseAtomsAdaptor.get_atoms(initial)
    fin = AseAtomsAdaptor.get_atoms(final)
    for a in (ini, fin):
        a.pbc = True
    fin.positions = _unwrapped_final(ini, fin)
    cell = np.asarray(ini.cell)
    dist = _segment_distances(ini.positions, ini.positions[0], fin.positions[0], cell)
    frozen = [int(i) for i in np.nonzero(dist > s.freeze_radius)[0] if i != 0]
    for a in (ini, fin):
        a.set_constraint(FixAtoms(indices=frozen) if frozen else None)
        a.calc = _CountingCalculator(inner, calls)

    steps = {"relax_initial": _relax(ini, s, label, "initial end point"),
             "relax_final": _relax(fin, s, label, "final end point")}
    fin.positions = _unwrapped_final(ini, fin)
    hop = float(np.linalg.norm(fin.positions[0] - ini.positions[0]))
    if hop < MIN_HOP_AFTER_RELAX:
        raise MlipNebError(f"{label}: end points relax into each other (moving ion {hop:.3f} Å apart after relaxation)")
    e_ini, e_fin = _energy(ini, label, "initial"), _energy(fin, label, "final")
    for a, e in ((ini, e_ini), (fin, e_fin)):  # fixed in the NEB: don't recompute them every step
        a.calc = SinglePointCalculator(a, energy=e, free_energy=e, forces=a.get_forces(apply_constraint=False))

    images = [ini] + [ini.copy() for _ in range(s.n_images)] + [fin]
    for im in images[1:-1]:
        im.calc = _CountingCalculator(inner, calls)
    pre = NEB(images, k=s.spring, method="improvedtangent")  # IDPP without a climbing image
    pre.interpolate(mic=False, apply_constraint=False)  # frozen atoms too: their ends may differ
    idpp_interpolate(pre, traj=None, log=None, mic=True, fmax=0.1, steps=100)
    neb = NEB(images, k=s.spring, climb=s.climb, method="improvedtangent")
    with _OPTIMIZERS[s.optimizer](neb, logfile=None) as opt:
        converged = bool(opt.run(fmax=s.fmax, steps=s.steps))
        steps["neb"] = int(opt.get_number_of_steps())
    final_fmax = _fmax(neb)  # forces (and neb.energies) at the final images
    energies = [e_ini] + [float(e) for e in neb.energies[1:-1]] + [e_fin]
    if not all(math.isfinite(e) for e in energies):
        raise MlipNebError(f"{label}: non-finite image energies {np.round(energies, 3).tolist()}")
    rel = [float(e - e_ini) for e in energies]
    pos = np.array([im.positions for im in images])
    seg = np.linalg.norm(np.diff(pos, axis=0), axis=-1)
    path = np.concatenate([[0.0], np.cumsum(np.sqrt((seg**2).sum(axis=1)))])

    if calculator is None:
        from chgnet import __version__ as chgnet_version

        model_version = f"chgnet {chgnet_version}, model {getattr(load_chgnet(), 'version', '?')}"
    else:
        model_version = type(calculator).__name__
    return MlipNebResult(
        barrier_ev=float(max(rel)),
        energies_ev=rel,
        converged=converged,
        seconds=time.perf_counter() - t0,
        n_force_calls=calls[0],
        steps=steps,
        images=[AseAtomsAdaptor.get_structure(im) for im in images],
        path_ang=[float(x) for x in path],
        final_fmax=final_fmax,
        n_frozen=len(frozen),
        settings=s,
        label=label,
        model_version=model_version,
        extra={"hop_length_ang": hop, "frozen_indices": frozen, "cell_strain": strain},
    )
