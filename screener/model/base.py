"""The barrier-model interface every E_m predictor implements, and how checkpoints are found.

A checkpoint is one joblib file holding a dict that records the model class, so a path alone is
enough to load any model; predictions carry ``model_id`` (name + checkpoint hash) so a stored E_m
can always be traced to the exact file that produced it.
"""

from __future__ import annotations

import hashlib
import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from pymatgen.core import Structure

#: Folder of the shipped checkpoints (<name>.joblib) and their metrics (<name>.metrics.json).
MODELS_DIR = Path(__file__).resolve().parent.parent / "data" / "models"
#: Shipped model that "default" resolves to: the one that wins the host-grouped CV (README).
DEFAULT_MODEL = "blend"
CHECKPOINT_SUFFIX = ".joblib"
_FORMAT = "screener-barrier-model"


class BarrierModel(ABC):
    """Predicts E_m (eV) with an uncertainty for bands (first five sites: the hop)."""

    name: str
    model_id: str

    @abstractmethod
    def predict(self, bands: Sequence[Structure]) -> tuple[np.ndarray, np.ndarray]:
        """E_m mean and standard deviation (eV), one per band. A band is a pymatgen Structure whose
        first five sites are the migrating ion at the initial site, three images, the final site."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path) -> "BarrierModel":
        """Rebuild the model from a checkpoint file written by its save()."""


def file_hash(path: Path, n: int = 10) -> str:
    """Short sha256 of a file's bytes (identifies a checkpoint independent of its name)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:n]


def checkpoint_model_id(name: str, path: Path) -> str:
    """The id predictions are stored under: the model's name and a hash of its checkpoint file."""
    return f"{name}@{file_hash(path)}"


def write_checkpoint(path: Path, model: BarrierModel, state: dict[str, Any]) -> Path:
    """Write {format, class, name, state} with joblib (compressed: shipped files stay small) and
    set the model's model_id from the written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cls = type(model)
    doc = {"format": _FORMAT, "class": f"{cls.__module__}:{cls.__qualname__}", "name": model.name,
           "state": state}
    joblib.dump(doc, path, compress=3)
    model.model_id = checkpoint_model_id(model.name, path)
    return path


def read_checkpoint(path: Path, keep: bool = False) -> dict[str, Any]:
    """Load and check a checkpoint dict; one-line ValueError naming the file otherwise.

    keep=True stashes the document (keyed by path, size, mtime) for the next read of the same file,
    so load_model's class lookup and the class's load() do not unpickle it twice.
    """
    path = Path(path)
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and _LAST[0] == key:
        doc = _LAST[1]
        _LAST[:] = [None, None]
        return doc
    doc = _read_checkpoint_uncached(path)
    if keep and key is not None:
        _LAST[:] = [key, doc]
    return doc


_LAST: list[Any] = [None, None]


def _read_checkpoint_uncached(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ValueError(f"model checkpoint {path}: no such file")
    try:
        doc = joblib.load(path)
    except Exception as exc:  # corrupt / not joblib / truncated: all mean "unreadable"
        raise ValueError(f"model checkpoint {path}: unreadable ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT or "class" not in doc:
        raise ValueError(f"model checkpoint {path}: not a screener barrier-model checkpoint")
    return doc


def _resolve_class(path: Path, spec: str) -> type[BarrierModel]:
    module, _, qualname = spec.partition(":")
    if not module.startswith("screener."):
        raise ValueError(f"model checkpoint {path}: class {spec!r} is outside screener")
    try:
        cls = getattr(importlib.import_module(module), qualname)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"model checkpoint {path}: unknown model class {spec!r}") from exc
    if not (isinstance(cls, type) and issubclass(cls, BarrierModel)):
        raise ValueError(f"model checkpoint {path}: {spec!r} is not a BarrierModel")
    return cls


def available_models() -> list[str]:
    """Names of the shipped checkpoints ('default' is an alias of DEFAULT_MODEL)."""
    return sorted(p.name[: -len(CHECKPOINT_SUFFIX)] for p in MODELS_DIR.glob(f"*{CHECKPOINT_SUFFIX}"))


def model_path(name_or_path: str = "default") -> Path:
    """Checkpoint file of a shipped name, 'default', or a path; ValueError for an unknown name."""
    name = DEFAULT_MODEL if name_or_path == "default" else name_or_path
    shipped = MODELS_DIR / f"{name}{CHECKPOINT_SUFFIX}"
    if shipped.is_file():
        return shipped
    candidate = Path(name_or_path).expanduser()
    looks_like_path = candidate.suffix or "/" in name_or_path or candidate.exists()
    if looks_like_path:
        return candidate
    raise ValueError(f"unknown model {name_or_path!r}; shipped: {', '.join(available_models()) or 'none'}"
                     f" (or give a checkpoint path)")


def load_model(name_or_path: str = "default") -> BarrierModel:
    """'default' and shipped names resolve to files in screener/data/models/; a path loads that file
    (the checkpoint records its class). Clear one-line error for an unknown name / unreadable file."""
    path = model_path(name_or_path)
    doc = read_checkpoint(path, keep=True)
    return _resolve_class(path, doc["class"]).load(path)
