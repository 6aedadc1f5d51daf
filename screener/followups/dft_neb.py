"""DFT-NEB inputs for a hop, and the parser of a finished NEB run.

Why these pieces: the end-point relaxations use pymatgen-analysis-diffusion's MVLCINEBEndPointSet,
the images come from IDPP (its IDPPSolver) between the relaxed end points, and the CI-NEB inputs
from MVLCINEBSet; all three keep the site order (no sorting), so the moving ion stays site 0 in
every POSCAR. Without pseudopotentials on this machine a ``POTCAR.spec`` (one symbol per line) is
written instead of a POTCAR; a VASP worker with ``PMG_VASP_PSP_DIR`` set writes real POTCARs.
NEBSet.write_input always writes a POTCAR, so the NEB folder is written here from the set's own
INCAR, KPOINTS, POSCARs and POTCAR symbols.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

#: Intermediate images of the NEB (as in the band: three images between the end points).
DEFAULT_NIMAGES = 3


class DftNebError(ValueError):
    """Bad NEB input or output; str() is one line naming the folder or hop and the reason."""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def have_potcars() -> bool:
    """True when pymatgen can find real POTCARs (PMG_VASP_PSP_DIR in the env or ~/.config/.pmgrc)."""
    from pymatgen.core import SETTINGS

    psp = os.environ.get("PMG_VASP_PSP_DIR") or SETTINGS.get("PMG_VASP_PSP_DIR")
    return bool(psp) and Path(str(psp)).is_dir()


def _potcar_spec(potcar_spec: bool | None) -> bool:
    return not have_potcars() if potcar_spec is None else potcar_spec


def endpoint_set(structure: Structure, user_incar_settings: dict | None = None) -> Any:
    """MVLCINEBEndPointSet of one end point, unsorted (the moving ion stays site 0)."""
    from pymatgen.analysis.diffusion.neb.io import MVLCINEBEndPointSet

    return MVLCINEBEndPointSet(
        structure, sort_structure=False, user_incar_settings=dict(user_incar_settings or {})
    )


def write_endpoint_inputs(
    structure: Structure,
    out_dir: str | Path,
    *,
    user_incar_settings: dict | None = None,
    potcar_spec: bool | None = None,
) -> Path:
    """INCAR, KPOINTS, POSCAR and POTCAR (or POTCAR.spec when ``potcar_spec``; None: when no
    POTCARs are configured) for relaxing one end point in ``out_dir``."""
    out = Path(out_dir)
    vis = endpoint_set(structure, user_incar_settings)
    try:
        vis.write_input(str(out), potcar_spec=_potcar_spec(potcar_spec))
    except (OSError, ValueError, RuntimeError) as exc:
        raise DftNebError(f"{out}: cannot write end-point inputs ({_one_line(exc)})") from exc
    return out


def idpp_images(initial: Structure, final: Structure, nimages: int = DEFAULT_NIMAGES) -> list[Structure]:
    """End points plus ``nimages`` IDPP images (nimages + 2 structures), site order kept: sites
    are matched by index (sort_tol=0), never re-sorted, so site 0 stays the moving ion."""
    from pymatgen.analysis.diffusion.neb.pathfinder import IDPPSolver

    if [s.species_string for s in initial] != [s.species_string for s in final]:
        raise DftNebError(
            f"end points {initial.composition.reduced_formula}: initial and final sites differ in species or order"
        )
    solver = IDPPSolver.from_endpoints([initial, final], nimages=nimages, sort_tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "max iterations reached": images still usable
        return solver.run(maxiter=2000, tol=1e-5, gtol=1e-3)


def neb_set(images: list[Structure], user_incar_settings: dict | None = None) -> Any:
    """MVLCINEBSet over the end points and images (IMAGES = len(images) - 2)."""
    from pymatgen.analysis.diffusion.neb.io import MVLCINEBSet

    return MVLCINEBSet(
        [s.copy() for s in images], user_incar_settings=dict(user_incar_settings or {})
    )


def write_neb_inputs(
    images: list[Structure],
    out_dir: str | Path,
    *,
    user_incar_settings: dict | None = None,
    potcar_spec: bool | None = None,
) -> Path:
    """The CI-NEB folder: INCAR, KPOINTS, POTCAR (or POTCAR.spec) and 00..NN/POSCAR."""
    out = Path(out_dir)
    try:
        vis = neb_set(images, user_incar_settings)
        out.mkdir(parents=True, exist_ok=True)
        vis.incar.write_file(str(out / "INCAR"))
        vis.kpoints.write_file(str(out / "KPOINTS"))
        if _potcar_spec(potcar_spec):
            (out / "POTCAR.spec").write_text("\n".join(vis.potcar_symbols) + "\n")
        else:
            vis.potcar.write_file(str(out / "POTCAR"))
        for k, poscar in enumerate(vis.poscars):
            d = out / f"{k:02d}"
            d.mkdir(exist_ok=True)
            poscar.write_file(str(d / "POSCAR"))
    except (OSError, ValueError, RuntimeError) as exc:
        raise DftNebError(f"{out}: cannot write NEB inputs ({_one_line(exc)})") from exc
    return out


def relaxed_structure(run_dir: str | Path) -> Structure:
    """The relaxed structure of a finished VASP run: its CONTCAR (POSCAR if VASP left none)."""
    run = Path(run_dir)
    for name in ("CONTCAR", "POSCAR"):
        path = run / name
        if path.is_file() and path.stat().st_size > 0:
            try:
                return Structure.from_file(str(path))
            except Exception as exc:
                raise DftNebError(f"{path}: unreadable ({_one_line(exc)})") from exc
    raise DftNebError(f"{run}: no CONTCAR or POSCAR (did the end-point relaxation run?)")


@dataclass
class NebOutcome:
    """A parsed NEB run: barrier = highest image energy minus the initial energy."""

    barrier_ev: float
    energies_ev: list[float]  # total energies along the path (eV), end points included
    profile_ev: list[float]  # energies relative to the initial end point
    coordinate: list[float]  # cumulative RMS displacement along the path (Angstrom)
    run_dir: str
    relaxation_dirs: list[str] | None = None

    def as_doc(self) -> dict[str, Any]:
        return {
            "barrier_ev": self.barrier_ev,
            "energies_ev": self.energies_ev,
            "profile_ev": self.profile_ev,
            "coordinate": self.coordinate,
            "run_dir": self.run_dir,
            "relaxation_dirs": self.relaxation_dirs,
        }


def parse_neb(run_dir: str | Path, relaxation_dirs: tuple[str | Path, str | Path] | None = None) -> NebOutcome:
    """Read a finished NEB folder with pymatgen's NEBAnalysis.from_dir (image OUTCARs + CONTCARs;
    end-point energies from ``relaxation_dirs`` or the 00/NN folders)."""
    from pymatgen.analysis.transition_state import NEBAnalysis

    run = Path(run_dir)
    if not run.is_dir():
        raise DftNebError(f"{run}: NEB folder not found")
    images = sorted(p.name for p in run.iterdir() if p.is_dir() and p.name.isdigit())
    if len(images) < 3:
        raise DftNebError(f"{run}: expected image folders 00, 01, ..., found {images or 'none'}")
    for name in images[1:-1]:
        for f in ("OUTCAR", "CONTCAR"):
            if not list((run / name).glob(f"{f}*")):
                raise DftNebError(f"{run / name}: no {f} (NEB not finished?)")
    rel = tuple(str(d) for d in relaxation_dirs) if relaxation_dirs else None
    try:
        neb = NEBAnalysis.from_dir(str(run), relaxation_dirs=rel)
    except Exception as exc:
        raise DftNebError(f"{run}: unreadable NEB output ({_one_line(exc)})") from exc
    energies = [float(e) for e in np.asarray(neb.energies)]
    profile = [e - energies[0] for e in energies]
    return NebOutcome(
        barrier_ev=float(max(profile)),
        energies_ev=energies,
        profile_ev=profile,
        coordinate=[float(x) for x in np.asarray(neb.r)],
        run_dir=str(run),
        relaxation_dirs=list(rel) if rel else None,
    )
