"""The shipped dataset: split sizes, folds, xc, and the hosts rebuilt from the bands."""

from __future__ import annotations

import re
import time

import pytest

from screener.config import KNOWN_IONS
from screener.hosts import Host, make_host_id
from screener.sources.dataset import (
    DATASET_DIR,
    _raw_entries,
    dataset_hosts,
    host_name_of,
    jarvis_to_structure,
    load_bands,
)


@pytest.fixture(scope="module")
def hosts() -> list[Host]:
    t0 = time.perf_counter()
    out = dataset_hosts()
    assert time.perf_counter() - t0 < 60  # seconds, not minutes (~3 s here)
    return out


def test_dataset_dir_ships_the_files():
    for name in ("bands-train.json", "bands-test.json", "folds-train.json", "anchors.csv"):
        assert (DATASET_DIR / name).is_file()


def test_split_sizes_folds_and_xc():
    train, test = load_bands("train"), load_bands("test")
    assert (len(train), len(test)) == (559, 60)
    assert {b.fold for b in train} == {0, 1, 2, 3, 4}
    assert all(b.fold is None for b in test)
    assert all(b.xc in {"GGA", "GGA+U", "SCAN", "LDA"} for b in train + test)
    # all paths of one host share a fold
    fold_of: dict[str, int] = {}
    for b in train:
        assert fold_of.setdefault(b.host_name, b.fold) == b.fold
    assert len(fold_of) == 403
    assert load_bands("train")[0] is train[0]  # parsed once
    with pytest.raises(ValueError, match="unknown split"):
        load_bands("validation")


def test_band_fields_match_the_stored_entries():
    b = next(x for x in load_bands("test") if x.sys_name == "CaMnP2O7_1")
    assert (b.host_name, b.working_ion, b.cls, b.xc) == ("CaMnP2O7", "Ca", "PYROPHOSPHATE", "GGA")
    assert b.target == pytest.approx(1.2)
    assert all(b.band[i].specie.symbol == "Ca" for i in range(5))
    for x in load_bands("train") + load_bands("test"):
        assert x.working_ion in KNOWN_IONS
        assert 33 <= len(x.band) <= 1027


def test_host_name_strips_only_a_path_number():
    assert host_name_of("CaMnP2O7_2") == "CaMnP2O7"
    assert host_name_of("Co2O4_Ca") == "Co2O4_Ca"
    assert host_name_of("Li7La3Zr2O12_1") == "Li7La3Zr2O12"


def test_jarvis_to_structure_reads_rows_as_lattice_vectors():
    entry = _raw_entries("test")[0]
    s = jarvis_to_structure(entry["atoms"])
    assert s.lattice.abc == pytest.approx(entry["atoms"]["abc"], abs=1e-4)
    assert len(s) == len(entry["atoms"]["elements"])
    with pytest.raises(ValueError, match="lacks"):
        jarvis_to_structure({"elements": ["Li"]})


def test_distinct_hosts(hosts):
    names = {host_name_of(e["sys_name"]) for s in ("train", "test") for e in _raw_entries(s)}
    assert len(hosts) == len(names) == 440
    assert len({h.host_id for h in hosts}) == 440
    assert all(re.fullmatch(r"[A-Za-z0-9.]+-[0-9a-f]{10}", h.host_id) for h in hosts)
    assert all(h.source["kind"] == "dataset" for h in hosts)
    assert all(h.structure.is_ordered for h in hosts)
    ion_of = {b.host_name: b.working_ion for b in load_bands("train") + load_bands("test")}
    assert all(h.has_ion(ion_of[h.name]) for h in hosts)


@pytest.mark.parametrize(
    "name, formula, ion",
    [("LiMn2O4", "LiMn2O4", "Li"), ("O-LiFePO4", "LiFePO4", "Li"), ("NaMnO2_c2m", "NaMnO2", "Na")],
)
def test_spinel_olivine_layered_hosts(hosts, name, formula, ion):
    h = next(x for x in hosts if x.name == name)
    assert h.formula == formula and h.has_ion(ion) and h.structure.is_ordered
    assert make_host_id(h.structure) == h.host_id


def test_ion_put_back_on_one_or_both_ends(hosts):
    by_name = {h.name: h for h in hosts}
    for split in ("train", "test"):
        for entry in _raw_entries(split):
            name = host_name_of(entry["sys_name"])
            h = by_name[name]
            if h.source["sys_name"] != entry["sys_name"] or "merged_duplicate_sites" in h.source:
                continue
            elements = entry["atoms"]["elements"]
            ion, rest = elements[0], elements[5:]
            expected = rest.count(ion) + (2 if ion in rest else 1)
            assert h.structure.composition[ion] == expected, name
            assert len(h.structure) == len(rest) + (2 if ion in rest else 1)


def test_duplicated_sites_of_na4mnalp3o12_are_merged(hosts):
    h = next(x for x in hosts if x.name == "Na4MnAlP3O12")
    assert h.source["merged_duplicate_sites"] == 48
    assert h.formula == "Na4MnAl(PO4)3"  # pymatgen's reduced formula groups polyanions
    assert h.host_id.startswith("Na4MnAlP3O12-")
