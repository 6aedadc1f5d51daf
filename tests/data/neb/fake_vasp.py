"""A stand-in for VASP in tests: writes what a finished run leaves (CONTCAR, a minimal OUTCAR).

In a relaxation folder (INCAR without IMAGES) CONTCAR = POSCAR and the energy is -100 eV; in a
CI-NEB folder (IMAGES = n) every image 01..n gets CONTCAR = POSCAR and an OUTCAR with the energy
-100 + 0.4 sin(pi k / (n + 1)) eV, so the barrier is 0.4 eV for an odd number of images.
The OUTCARs carry only the lines pymatgen's Outcar/NEBAnalysis read.
"""

from __future__ import annotations

import math
import re
import shutil
import sys
from pathlib import Path

BASE_EV = -100.0
HEIGHT_EV = 0.4


def outcar_text(energy: float, tangent: float | None = None, nions: int = 29) -> str:
    """A minimal VASP 6 OUTCAR that pymatgen parses: header, one ionic step, the NEB line."""
    lines = [
        " vasp.6.4.2 18Apr23 (build Jul 01 2023) complex",
        " running on    6 total cores",
        f"   number of dos      NEDOS =    301   number of ions     NIONS = {nions:6d}",
        "   k-points           NKPTS =      4   k-points in BZ     NKDIM =      4   number of bands    NBANDS=    192",
        "   total plane-waves  NPLWV =  54000",
        "   IBRION =      3    ionic relax: 0-MD 1-quasi-New 2-CG",
        "   ISPIN  =      2    spin polarized calculation?",
        "",
        "  FREE ENERGIE OF THE ION-ELECTRON SYSTEM (eV)",
        "  ---------------------------------------------------",
        f"  free  energy   TOTEN  = {energy - 0.0004:18.8f} eV",
        "",
        f"  energy  without entropy= {energy + 0.0002:18.8f}  energy(sigma->0) = {energy:18.8f}",
    ]
    if tangent is not None:
        lines.append(f"  NEB: projections on to tangent (spring, REAL) :   0.000123  {tangent:10.6f}")
        lines.append(f"  tangential force (eV/A) {tangent:10.6f}")
    lines += [
        "",
        " General timing and accounting informations for this job:",
        " ========================================================",
        "",
        "                  Total CPU time used (sec):      123.456",
        "                            User time (sec):      120.000",
        "                          System time (sec):        3.456",
        "                         Elapsed time (sec):      125.000",
        "",
    ]
    return "\n".join(lines) + "\n"


def _images(incar: Path) -> int:
    m = re.search(r"^\s*IMAGES\s*=\s*(\d+)", incar.read_text(), re.MULTILINE) if incar.is_file() else None
    return int(m.group(1)) if m else 0


def main(folder: Path) -> int:
    n = _images(folder / "INCAR")
    if n == 0:
        shutil.copy(folder / "POSCAR", folder / "CONTCAR")
        (folder / "OUTCAR").write_text(outcar_text(BASE_EV))
        return 0
    for k in range(1, n + 1):
        d = folder / f"{k:02d}"
        shutil.copy(d / "POSCAR", d / "CONTCAR")
        energy = BASE_EV + HEIGHT_EV * math.sin(math.pi * k / (n + 1))
        (d / "OUTCAR").write_text(outcar_text(energy, tangent=0.01 * (k - (n + 1) / 2)))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()))
