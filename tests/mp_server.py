"""A local stand-in for the Materials Project API, so the real mp-api client code runs in tests.

There is no network here, so tests point ``MPRester(endpoint=...)`` at this threaded HTTP server on
127.0.0.1 (random port). It answers what mp-api 0.46.5 calls for ``materials.summary.search``:

* ``GET /heartbeat`` (no key; the client reads ``version``, ``db_version`` and
  ``access_controlled_batch_ids``);
* ``GET /materials/summary/`` with the key in ``x-api-key`` and the query parameters the client
  sends (``chemsys``, ``elements``, ``exclude_elements``, ``formula``, ``material_ids``,
  ``energy_above_hull_min/max``, ``deprecated``, ``_limit``, ``_skip``, ``_fields``, ...), answering
  ``{"data": [...], "meta": {"total_doc": N, ...}}`` one page at a time (``_skip``/``_limit``), with
  documents serialised from emmet-core's ``SummaryDoc`` (the model the client validates against).
  Unknown parameters get a 400, as a wrong client call should fail loudly here.

It can be told to answer 401 (any key is refused), a given status ``n`` times (429 with or without
Retry-After, 500, 502...), or nothing (empty result). Every request is recorded in ``requests``.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from emmet.core.base import EmmetMeta
from emmet.core.summary import SummaryDoc
from pymatgen.core import Composition, Structure

from screener.sources.dataset import dataset_hosts

#: The MP database version the fake server claims to serve.
DB_VERSION = "2025.09.25"
#: A syntactically valid (32 characters) key that the fake server accepts.
GOOD_KEY = "K3yFakeMPserver0123456789abcdefZ"

#: (material id, dataset host name, energy above hull in eV/atom, remove the Li?) -- real
#: structures from the shipped dataset; the ids are MP-style labels for the test, not MP's ids.
CATALOGUE = (
    ("mp-19017", "O-LiFePO4", 0.0, False),      # olivine LiFePO4
    ("mp-1101000", "O-FePO4_Li", 0.012, False),  # FePO4 with one Li (Li-Fe-P-O, metastable)
    ("mp-20361", "O-FePO4_Li", 0.0, True),      # heterosite FePO4 (no Li)
    ("mp-22584", "LiMn2O4", 0.0, False),        # spinel
    ("mp-1101001", "LiMnO2_c2m", 0.08, False),  # layered LiMnO2 (C2/m), above the default 0.05
    ("mp-24850", "LiCoO2", 0.03, False),        # layered oxide (with one Li vacancy)
)

_FILTERS = {
    "chemsys", "elements", "exclude_elements", "formula", "material_ids",
    "energy_above_hull_min", "energy_above_hull_max", "deprecated",
}
_PAGING = {"_limit", "_skip", "_fields", "_all_fields", "_page", "_per_page", "_sort_fields"}


def summary_doc(material_id: str, structure: Structure, e_above_hull: float) -> dict:
    """One ``/materials/summary/`` document as the API serves it, built with emmet's SummaryDoc."""
    doc = SummaryDoc.from_structure(
        meta_structure=structure,
        material_id=material_id,
        energy_above_hull=e_above_hull,
        is_stable=e_above_hull == 0.0,
        deprecated=False,
        builder_meta=EmmetMeta(database_version=DB_VERSION),
    )
    out = doc.model_dump(mode="json")
    # emmet serialises ids in its new alphabetic form; the API shows the familiar "mp-19017"
    out["material_id"] = str(doc.material_id)
    out["formula_pretty"] = structure.composition.reduced_formula
    return out


@lru_cache(maxsize=1)
def catalogue_docs() -> tuple[dict, ...]:
    """The CATALOGUE as summary documents (built once per test session)."""
    by_name = {h.name: h for h in dataset_hosts()}
    docs = []
    for mid, name, e_hull, strip_li in CATALOGUE:
        s = by_name[name].structure.copy()
        if strip_li:
            s.remove_species(["Li"])
        docs.append(summary_doc(mid, s, e_hull))
    return tuple(docs)


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _norm_chemsys(value: str) -> str:
    return "-".join(sorted(value.split("-")))


@dataclass
class FakeMP:
    """The server and its knobs; use as a context manager (``with FakeMP(docs) as mp: mp.url``)."""

    docs: list[dict]
    api_key: str = GOOD_KEY
    db_version: str = DB_VERSION
    #: statuses to answer the next summary requests with, oldest first (e.g. [429, 429]).
    failures: deque = field(default_factory=deque)
    #: Retry-After header sent with a 429 (None: none, the client then backs off on its own).
    retry_after: str | None = None
    #: answer every summary query with no documents.
    empty: bool = False
    #: (path, params, key_ok, status) of every request, in order.
    requests: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control
    def fail(self, status: int, times: int = 1) -> None:
        """Answer the next ``times`` summary requests with ``status``."""
        self.failures.extend([status] * times)

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def summary_requests(self) -> list[tuple]:
        return [r for r in self.requests if r[0].startswith("/materials/summary")]

    def start(self) -> FakeMP:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeMP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ answers
    def heartbeat(self) -> tuple[int, dict]:
        import emmet.core

        return 200, {
            "version": getattr(emmet.core, "__version__", "0.87.3"),
            "db_version": self.db_version,
            "access_controlled_batch_ids": [],
        }

    def summary(self, params: dict[str, str], key: str | None) -> tuple[int, dict, dict]:
        """(status, body, extra headers) for one summary request."""
        if key != self.api_key:
            return 401, {"detail": "Invalid authentication credentials"}, {}
        if self.failures:
            status = self.failures.popleft()
            headers = {"Retry-After": self.retry_after} if status == 429 and self.retry_after else {}
            return status, {"detail": f"fake MP error {status}"}, headers
        unknown = set(params) - _FILTERS - _PAGING
        if unknown:
            return 400, {"detail": f"unknown query parameters: {sorted(unknown)}"}, {}
        hits = [] if self.empty else [d for d in self.docs if self._matches(d, params)]
        hits.sort(key=lambda d: d["material_id"])
        skip, limit = int(params.get("_skip", 0)), int(params.get("_limit", 1000))
        if limit > 1000:
            return 400, {"detail": "_limit must be at most 1000"}, {}
        page = hits[skip : skip + limit]
        if "_fields" in params:
            wanted = _split(params["_fields"])
            page = [{k: d.get(k) for k in wanted} for d in page]
        meta = {"api_version": "fake", "total_doc": len(hits), "max_limit": 1000}
        return 200, {"data": page, "meta": meta}, {}

    @staticmethod
    def _matches(doc: dict, p: dict[str, str]) -> bool:
        elements = set(doc["elements"])
        if "chemsys" in p and doc["chemsys"] not in {_norm_chemsys(c) for c in _split(p["chemsys"])}:
            return False
        if "elements" in p and not set(_split(p["elements"])) <= elements:
            return False
        if "exclude_elements" in p and set(_split(p["exclude_elements"])) & elements:
            return False
        if "formula" in p:
            want = {Composition(f).reduced_formula for f in _split(p["formula"])}
            if Composition(doc["formula_pretty"]).reduced_formula not in want:
                return False
        if "material_ids" in p and doc["material_id"] not in _split(p["material_ids"]):
            return False
        e = doc["energy_above_hull"]
        if "energy_above_hull_min" in p and e < float(p["energy_above_hull_min"]):
            return False
        if "energy_above_hull_max" in p and e > float(p["energy_above_hull_max"]):
            return False
        if "deprecated" in p and str(doc["deprecated"]).lower() != p["deprecated"].lower():
            return False
        return True


def _handler_for(mp: FakeMP) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            key = self.headers.get("x-api-key")
            headers: dict = {}
            if parts.path == "/heartbeat":
                status, body = mp.heartbeat()
            elif parts.path.rstrip("/") == "/materials/summary":
                status, body, headers = mp.summary(params, key)
            else:
                status, body = 404, {"detail": "Not Found"}
            mp.requests.append((parts.path, params, key == mp.api_key, status))
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

    return Handler
