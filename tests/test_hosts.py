"""Host checks and ids on real dataset hosts."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.core.operations import SymmOp

from screener.hosts import (
    Host,
    HostInputError,
    check_structure,
    host_from_structure,
    make_host_id,
)
from screener.sources.dataset import dataset_hosts


@pytest.fixture(scope="module")
def hosts() -> dict[str, Host]:
    return {h.name: h for h in dataset_hosts()}


@pytest.fixture(scope="module")
def lfp(hosts) -> Structure:
    return hosts["O-LiFePO4"].structure


def test_id_format_and_formula(hosts):
    h = hosts["O-LiFePO4"]
    assert h.formula == "LiFePO4"
    assert h.host_id.startswith("LiFePO4-")
    assert len(h.host_id.split("-")[-1]) == 10
    assert make_host_id(h.structure) == h.host_id


def test_id_invariant_under_permutation_translation_rotation_supercell(lfp):
    ref = make_host_id(lfp)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(lfp))
    permuted = Structure.from_sites([lfp[int(i)] for i in order])
    assert make_host_id(permuted) == ref
    shifted = lfp.copy()
    shifted.translate_sites(list(range(len(shifted))), [0.137, -0.42, 0.31], to_unit_cell=True)
    assert make_host_id(shifted) == ref
    rotated = lfp.copy()
    rotated.apply_operation(SymmOp.from_axis_angle_and_translation([1, 2, 3], 37.0))
    assert make_host_id(rotated) == ref
    assert make_host_id(lfp * (1, 1, 2)) == ref


def test_id_tells_crystals_apart(hosts, lfp):
    strained = lfp.copy()
    strained.scale_lattice(lfp.volume * 1.03)
    assert make_host_id(strained) != make_host_id(lfp)
    ids = [h.host_id for h in hosts.values()]
    assert len(set(ids)) == len(ids)
    # Same formula, different structure: the two olivine-type sodium iron phosphates.
    assert hosts["O-NaFePO4"].formula == hosts["M-NaFePO4"].formula
    assert hosts["O-NaFePO4"].host_id != hosts["M-NaFePO4"].host_id


def test_id_is_cheap(hosts):
    big = max(hosts.values(), key=lambda h: len(h.structure)).structure
    assert len(big) > 1000
    make_host_id(big)
    t0 = time.perf_counter()
    for _ in range(5):
        make_host_id(big)
    assert (time.perf_counter() - t0) / 5 < 0.2


def _one_line_error(structure, name="bad.cif", **kw) -> str:
    with pytest.raises(HostInputError) as exc:
        check_structure(structure, name, **kw)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{name}: ")
    return msg


def test_check_structure_refuses_bad_cells(lfp):
    assert check_structure(lfp, "ok") is lfp
    assert "more than the limit" in _one_line_error(lfp, max_sites=50)
    disordered = lfp.copy()
    disordered.replace_species({"Fe": {"Fe": 0.5, "Mn": 0.5}})
    assert "disordered" in _one_line_error(disordered)
    vacancy = lfp.copy()
    vacancy.replace_species({"Li": {"Li": 0.75}})
    assert "partially occupied" in _one_line_error(vacancy)
    overlap = lfp.copy()
    overlap.append("O", overlap[5].coords + [0.1, 0.0, 0.0], coords_are_cartesian=True)
    assert "overlapping atoms" in _one_line_error(overlap)
    nan = Structure(Lattice.cubic(4), ["Li", "O"], [[0, 0, 0], [np.nan, 0.5, 0.5]])
    assert "NaN" in _one_line_error(nan)
    nan_lattice = Structure(
        Lattice([[4, 0, 0], [0, np.inf, 0], [0, 0, 4]]), ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    assert "lattice" in _one_line_error(nan_lattice)
    flat = Structure(Lattice([[4, 0, 0], [0, 4, 0], [0, 0, 0]]), ["Li"], [[0, 0, 0]])
    assert "zero cell volume" in _one_line_error(flat)
    tiny = Structure(Lattice.cubic(1.0), ["Li"], [[0, 0, 0]])
    assert "tiny cell volume" in _one_line_error(tiny)
    dummy = Structure(Lattice.cubic(4), ["Li", "X"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert "unknown or dummy element" in _one_line_error(dummy)


def test_host_documents_round_trip(hosts):
    h = hosts["LiMn2O4"]
    doc = h.to_doc()
    assert doc["_id"] == h.host_id and doc["nsites"] == len(h.structure)
    assert doc["elements"] == ["Li", "Mn", "O"] and doc["source"]["kind"] == "dataset"
    back = Host.from_doc(doc)
    assert back.host_id == h.host_id and back.structure == h.structure
    assert make_host_id(back.structure) == h.host_id
    d = json.loads(json.dumps(h.as_dict()))
    again = Host.from_dict(d)
    assert again.name == h.name and again.structure == h.structure
    assert h.has_ion("Li") and not h.has_ion("Na")
    with pytest.raises(HostInputError, match="^x: bad host document"):
        Host.from_doc({"_id": "x", "name": "x"})
    with pytest.raises(HostInputError, match="got NoneType"):
        Host.from_doc(None)  # e.g. find_one() found nothing


def test_host_from_structure_sets_fields(lfp):
    h = host_from_structure(lfp.copy(), "mine", {"kind": "file", "path": "mine.cif"})
    assert (h.name, h.formula, h.source["kind"]) == ("mine", "LiFePO4", "file")
    assert h.host_id == make_host_id(lfp)
