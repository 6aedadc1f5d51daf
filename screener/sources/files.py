"""Hosts from structure files: CIF, POSCAR/CONTCAR, pymatgen Structure JSON and dataset JSON.

One bad file (or one bad block/entry inside a file) costs the user one line and never stops the
rest: ``read_hosts`` returns the hosts it could build and one HostInputError per failure.
"""

from __future__ import annotations

import fnmatch
import gzip
import json
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pymatgen.core import Composition, Structure
from pymatgen.io.cif import CifBlock, CifFile, CifParser
from pymatgen.io.vasp import Poscar

from screener.hosts import Host, HostInputError, host_from_structure, one_line
from screener.sources.dataset import host_from_entry, jarvis_to_structure

#: File-name patterns picked up when walking a directory (matched case-insensitively).
STRUCTURE_PATTERNS: tuple[str, ...] = (
    "*.cif",
    "POSCAR*",
    "CONTCAR*",
    "*.vasp",
    "*.poscar",
    "*.json",
    "*.json.gz",
)


def is_structure_file(path: Path) -> bool:
    name = path.name.lower()
    return any(fnmatch.fnmatch(name, p.lower()) for p in STRUCTURE_PATTERNS)


def _kind(path: Path, text: str) -> str:
    """Format from the name, else sniffed from the content (for files given explicitly)."""
    name = path.name.lower()
    if name.endswith(".cif"):
        return "cif"
    if name.endswith(".json") or name.endswith(".json.gz"):
        return "json"
    if any(fnmatch.fnmatch(name, p.lower()) for p in ("POSCAR*", "CONTCAR*", "*.vasp", "*.poscar")):
        return "poscar"
    head = text.lstrip()[:1]
    if head in ("{", "["):
        return "json"
    if "data_" in text and "_cell_length_a" in text:
        return "cif"
    return "poscar"


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise HostInputError(str(path), f"not a valid gzip file ({exc})") from None
    if not raw.strip():
        raise HostInputError(str(path), "empty file")
    if b"\x00" in raw:
        raise HostInputError(str(path), "binary data, not a structure file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = raw.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
            raise HostInputError(str(path), "binary data, not a structure file") from None
        printable = sum(c.isprintable() or c.isspace() for c in text) / len(text)
        if printable < 0.95:
            raise HostInputError(str(path), "binary data, not a structure file") from None
        return text


def _cif_hosts(path: Path, text: str, max_sites: int) -> Iterator[Host | HostInputError]:
    """One host per data block; a bad block is one error and the other blocks still load."""
    try:
        blocks = CifFile.from_str(text).data
    except Exception as exc:  # noqa: BLE001 - any parser failure is "not a CIF"
        yield HostInputError(str(path), f"not a readable CIF ({one_line(exc)})")
        return
    blocks = {k: b for k, b in blocks.items() if "_atom_site_fract_x" in b.data
              or "_atom_site_Cartn_x" in b.data or "_cell_length_a" in b.data}
    if not blocks:
        yield HostInputError(str(path), "no CIF data block with a cell and atom sites")
        return
    multi = len(blocks) > 1
    for key, block in blocks.items():
        label = f"{path} [{key}]" if multi else str(path)
        yield _one_cif_block(label, block, path, key, max_sites)


def _cif_truncation(block: CifBlock) -> str | None:
    """Why a CIF block looks cut short, if it does: pymatgen reads a cut atom loop silently."""
    for loop in block.loops:
        lengths = {len(block.data.get(col, [])) for col in loop}
        if len(lengths) > 1:
            return f"loop of {loop[0]} has an incomplete last row (truncated file?)"
    return None


def _formula_mismatch(block: CifBlock, structure: Structure) -> str | None:
    """Compare with _chemical_formula_sum: a file cut at a row boundary loses atoms silently."""
    stated = block.data.get("_chemical_formula_sum")
    if not isinstance(stated, str) or not stated.strip():
        return None
    try:
        expected = Composition(stated.replace("'", "").replace('"', ""))
    except Exception:  # noqa: BLE001 - an unparsable formula is just not checked
        return None
    got = structure.composition.element_composition
    if expected.reduced_formula != got.reduced_formula and not got.almost_equals(
        expected * (got.num_atoms / max(expected.num_atoms, 1e-9)), rtol=0.02
    ):
        return (
            f"atom sites give {got.reduced_formula} but _chemical_formula_sum says "
            f"{expected.reduced_formula} (truncated file?)"
        )
    return None


def _one_cif_block(
    label: str, block: CifBlock, path: Path, key: str, max_sites: int
) -> Host | HostInputError:
    """Parse one data block on its own so a bad block cannot take its neighbours down."""
    block_text = str(block)
    why = _cif_truncation(block)
    if why:
        return HostInputError(label, why)
    for tag in ("_cell_length_a", "_cell_length_b", "_cell_length_c"):
        if tag not in block_text:
            return HostInputError(label, f"CIF lacks {tag} (truncated or not a crystal)")
    if "_atom_site_fract_x" not in block_text and "_atom_site_Cartn_x" not in block_text:
        return HostInputError(label, "CIF has no atom sites (truncated?)")
    parser = CifParser.from_str(block_text)
    try:
        structures = parser.parse_structures(primitive=False, on_error="raise")
    except Exception as exc:  # noqa: BLE001
        # pymatgen's exception says "no structure parsed"; its last warning usually says why
        lines = [ln for ln in str(exc).splitlines() if "No structure parsed" not in ln]
        why = lines[-1] if lines else (parser.warnings[-1] if parser.warnings else repr(exc))
        return HostInputError(label, f"unreadable CIF: {one_line(why)}")
    if not structures:
        why = parser.warnings[0] if parser.warnings else "no structure"
        return HostInputError(label, f"unreadable CIF: {one_line(why)}")
    why = _formula_mismatch(block, structures[0])
    if why:
        return HostInputError(label, why)
    source = {"kind": "file", "path": str(path), "format": "cif", "block": key}
    try:
        return host_from_structure(structures[0], label, source, max_sites=max_sites)
    except HostInputError as exc:
        return exc


def _poscar_host(path: Path, text: str, max_sites: int) -> Host | HostInputError:
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            structure = Poscar.from_str(text, read_velocities=False).structure
    except Exception as exc:  # noqa: BLE001 - pymatgen raises many types for bad POSCARs
        return HostInputError(str(path), f"unreadable POSCAR ({one_line(exc) or type(exc).__name__})")
    if any("cannot be determined" in str(w.message) for w in caught):
        # pymatgen would silently call the atoms H, He, ... (VASP 4 file without a POTCAR)
        return HostInputError(str(path), "POSCAR has no element symbols line (VASP 4 format)")
    try:
        return host_from_structure(
            structure, str(path), {"kind": "file", "path": str(path), "format": "poscar"},
            max_sites=max_sites,
        )
    except HostInputError as exc:
        return exc


def _json_item(item: Any, label: str, path: Path, max_sites: int) -> Host:
    """One JSON object: a pymatgen Structure, a dataset entry, a bare JARVIS Atoms dict or a
    host document (``Host.to_doc``/``as_dict``)."""
    if not isinstance(item, dict):
        raise HostInputError(label, f"expected a JSON object, got {type(item).__name__}")
    source = {"kind": "file", "path": str(path), "format": "json"}
    if "atoms" in item:
        host = host_from_entry(item, name=label, max_sites=max_sites)
        host.name = str(item.get("sys_name") or host.name)
        host.source = {**host.source, **source}  # keeps sys_name, host_name, repairs
        return host
    if "structure" in item and isinstance(item["structure"], dict):
        name = str(item.get("name") or label)
        struct_dict = item["structure"]
    elif "lattice_mat" in item:
        try:
            structure = jarvis_to_structure(item)
        except Exception as exc:  # noqa: BLE001
            raise HostInputError(label, f"bad JARVIS atoms: {one_line(exc)}") from None
        return host_from_structure(structure, label, source, max_sites=max_sites)
    elif "lattice" in item and "sites" in item:
        name, struct_dict = label, item
    else:
        raise HostInputError(label, "JSON object is neither a Structure, a dataset entry nor a host")
    try:
        structure = Structure.from_dict(struct_dict)
    except Exception as exc:  # noqa: BLE001
        raise HostInputError(label, f"bad Structure JSON: {one_line(exc)}") from None
    host = host_from_structure(structure, label, source, max_sites=max_sites)
    host.name = name
    return host


def _json_hosts(path: Path, text: str, max_sites: int) -> Iterator[Host | HostInputError]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        yield HostInputError(str(path), f"invalid JSON ({one_line(exc)})")
        return
    items = data if isinstance(data, list) else [data]
    if not items:
        yield HostInputError(str(path), "empty JSON list")
        return
    for i, item in enumerate(items):
        label = str(path) if not isinstance(data, list) else f"{path} [{i}]"
        if isinstance(item, dict) and "sys_name" in item and isinstance(data, list):
            label = f"{path} [{item['sys_name']}]"
        try:
            yield _json_item(item, label, path, max_sites)
        except HostInputError as exc:
            yield exc


def _file_hosts(path: Path, max_sites: int) -> Iterator[Host | HostInputError]:
    try:
        text = _read_text(path)
    except HostInputError as exc:
        yield exc
        return
    except OSError as exc:
        yield HostInputError(str(path), f"cannot read ({exc.strerror or exc})")
        return
    kind = _kind(path, text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "cif":
            yield from _cif_hosts(path, text, max_sites)
        elif kind == "json":
            yield from _json_hosts(path, text, max_sites)
        else:
            yield _poscar_host(path, text, max_sites)


def _expand(paths: Sequence[str | Path]) -> Iterator[Path | HostInputError]:
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files = sorted(f for f in path.rglob("*") if f.is_file() and is_structure_file(f))
            if not files:
                yield HostInputError(
                    str(path), f"directory holds no structure files ({', '.join(STRUCTURE_PATTERNS)})"
                )
            yield from files
        elif path.is_file():
            yield path
        elif path.exists():
            yield HostInputError(str(path), "not a regular file or directory")
        else:
            yield HostInputError(str(path), "no such file or directory")


def read_hosts(
    paths: Sequence[str | Path], *, max_sites: int = 2000
) -> tuple[list[Host], list[HostInputError]]:
    """Read every structure in files and directories (recursively) into checked hosts.

    Returns (hosts, errors): each bad path, file, CIF block or JSON entry gives exactly one
    HostInputError (one line naming it) and reading goes on. Hosts keep file order; duplicates
    (same host_id) are kept, deduplication is the caller's choice.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    hosts: list[Host] = []
    errors: list[HostInputError] = []
    for item in _expand(paths):
        if isinstance(item, HostInputError):
            errors.append(item)
            continue
        for result in _file_hosts(item, max_sites):
            (errors if isinstance(result, HostInputError) else hosts).append(result)
    return hosts, errors
