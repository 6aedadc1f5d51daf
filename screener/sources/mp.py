"""Materials Project hosts: query MP with the official client (mp-api's ``MPRester``) and turn each
material into a ``Host`` named by its material id, with the MP provenance in ``Host.source``.

The API key comes from the ``api_key`` argument or the ``MP_API_KEY`` environment variable and goes
only into the client's request header: it is never stored, logged or put into a message (every
message passes through ``_redact``). Paging (``_limit``/``_skip``), retries with backoff on 429/502/
504 and document validation against emmet's ``SummaryDoc`` are the client's; this module adds the
query checks, a heartbeat with a timeout (the client's has none, so an unreachable host would
hang), one-line errors and the working-ion filter.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from pymatgen.core import Element

from screener.hosts import Host, HostInputError, host_from_structure, one_line

__all__ = ["MP_FIELDS", "MPError", "MPFetch", "fetch_mp", "mp_endpoint", "mp_hosts"]

log = logging.getLogger(__name__)

#: Summary fields fetched per material (everything the host and its provenance need, no more).
MP_FIELDS = ["material_id", "formula_pretty", "structure", "energy_above_hull", "builder_meta",
             "last_updated"]
#: Seconds to wait for the heartbeat before calling MP unreachable.
HEARTBEAT_TIMEOUT_S = 20.0
#: Where to get a key (for the missing-key message).
KEY_URL = "https://next-gen.materialsproject.org/api"


class MPError(RuntimeError):
    """A Materials Project query that failed; ``str()`` is one line naming the query and the reason."""


@dataclass
class MPFetch:
    """What one MP query gave: the hosts, the materials refused (bad structure) or dropped (no
    working ion), and where it came from."""

    hosts: list[Host]
    errors: list[HostInputError]
    dropped: list[str]
    n_found: int
    query: str
    endpoint: str
    database_version: str
    retrieved_at: str


def mp_endpoint(endpoint: str | None = None) -> str:
    """The API URL to use: the argument, else ``MP_API_ENDPOINT``, else the client's default."""
    from mp_api.client.core.settings import MAPI_CLIENT_SETTINGS

    url = endpoint or os.environ.get("MP_API_ENDPOINT") or MAPI_CLIENT_SETTINGS.ENDPOINT
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise MPError(f"Materials Project endpoint {_public_url(url)!r}: not an http(s) URL")
    return url if url.endswith("/") else url + "/"


def _public_url(url: str) -> str:
    """The URL without user info, query or fragment: safe to store and show."""
    p = urlsplit(url)
    host = p.hostname or ""
    netloc = f"{host}:{p.port}" if p.port else host
    return urlunsplit((p.scheme, netloc, p.path, "", ""))


def _redact(text: str, key: str | None) -> str:
    """One line, with the key (if any) blanked out: every message goes through here."""
    s = one_line(text, limit=400)
    return s.replace(key, "***") if key else s


def _as_list(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Comma-separated string or list -> list of stripped, non-empty strings."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(v).strip() for v in items if str(v).strip()]


def _check_symbols(symbols: list[str], what: str) -> None:
    bad = [s for s in symbols if not Element.is_valid_symbol(s)]
    if bad:
        raise MPError(f"Materials Project query: {what} has unknown element(s) {', '.join(bad)}")


def _criteria(
    chemsys: Any, elements: Any, formula: Any, material_ids: Any, e_above_hull_max: float
) -> dict[str, Any]:
    """Keyword arguments for ``summary.search``; refuses an empty or malformed query (an empty one
    would make the client download all of MP)."""
    crit: dict[str, Any] = {}
    systems = _as_list(chemsys)
    if systems:
        for c in systems:
            _check_symbols(c.split("-"), f"chemsys {c!r}")
        # MP stores chemsys with sorted elements: "Li-Fe-P-O" -> "Fe-Li-O-P"
        crit["chemsys"] = ["-".join(sorted(c.split("-"))) for c in systems]
    els = _as_list(elements)
    if els:
        _check_symbols(els, "elements")
        crit["elements"] = els
    formulas = _as_list(formula)
    if formulas:  # MP also takes anonymous formulas and wildcards (ABO3, Li*): left to it
        crit["formula"] = formulas
    ids = _as_list(material_ids)
    if ids:
        bad = [i for i in ids if not re.fullmatch(r"(mp|mvc)-[0-9a-z]+", i)]
        if bad:
            raise MPError(f"Materials Project query: bad material id(s) {', '.join(bad)} "
                          "(expected e.g. mp-19017)")
        crit["material_ids"] = ids
    if not crit:
        raise MPError("Materials Project query: give a chemical system, elements, a formula or "
                      "material ids (an empty query would fetch all of MP)")
    if not e_above_hull_max >= 0:
        raise MPError(f"Materials Project query: e_above_hull_max must be >= 0, got {e_above_hull_max}")
    crit["energy_above_hull"] = (0.0, float(e_above_hull_max))
    return crit


def _describe(crit: dict[str, Any]) -> str:
    """Short text of the query for messages, e.g. ``chemsys=Fe-Li-O-P e_above_hull<=0.05``."""
    parts = [f"{k}={','.join(v)}" for k, v in crit.items() if k != "energy_above_hull"]
    return " ".join(parts + [f"e_above_hull<={crit['energy_above_hull'][1]:g}"])


def _reason(exc: BaseException) -> str:
    """Turn what the client (or requests) raised into a user-facing reason."""
    from mp_api.client.core.settings import MAPI_CLIENT_SETTINGS

    text = str(exc)
    retried = re.search(r"too many (\d{3}) error responses", text)
    code_m = retried or re.search(r"status code (\d{3})", text)
    code = int(code_m.group(1)) if code_m else None
    if code in (401, 403):
        return f"the API key was refused (HTTP {code}); check MP_API_KEY"
    if code == 429:
        return (f"rate limited (HTTP 429) after {MAPI_CLIENT_SETTINGS.MAX_RETRIES} retries with "
                "backoff; wait a minute and re-run")
    if code is not None and code >= 500:
        again = f" after {MAPI_CLIENT_SETTINGS.MAX_RETRIES} retries" if retried else ""
        return f"server error (HTTP {code}){again}; try again later"
    if code is not None:
        return f"HTTP {code}: {text.split('with message:')[-1]}"
    if "Valid API keys are 32 characters" in text:
        return "MP_API_KEY is not a valid API key (Materials Project keys are 32 characters)"
    if "Max retries exceeded" in text or "Connection" in type(exc).__name__:
        return f"cannot connect ({type(exc).__name__})"
    return f"{type(exc).__name__}: {text}"


def _heartbeat(endpoint: str, where: str, key: str) -> None:
    """Fail fast, with a timeout, if the endpoint is unreachable (the client's heartbeat has none)."""
    import requests

    try:
        requests.get(urljoin(endpoint, "heartbeat"), timeout=HEARTBEAT_TIMEOUT_S)
    except requests.RequestException as exc:
        raise MPError(_redact(f"{where}: cannot reach the API ({type(exc).__name__}); check the "
                              "network or --mp-endpoint / MP_API_ENDPOINT", key)) from None


def _provenance(doc: Any, mp: dict[str, str]) -> dict:
    """``Host.source`` for one material: what it is, which MP release, when and from where."""
    meta = getattr(doc, "builder_meta", None)
    updated = getattr(doc, "last_updated", None)
    e_hull = getattr(doc, "energy_above_hull", None)
    return {
        "kind": "mp",
        "material_id": str(doc.material_id),
        "formula_pretty": getattr(doc, "formula_pretty", None),
        "energy_above_hull": None if e_hull is None else float(e_hull),
        "database_version": mp["database_version"] or getattr(meta, "database_version", None) or None,
        "builder_database_version": getattr(meta, "database_version", None),
        "last_updated": updated.isoformat() if hasattr(updated, "isoformat") else updated,
        **{k: mp[k] for k in ("retrieved_at", "endpoint", "client", "query")},
    }


def fetch_mp(
    *,
    chemsys: str | list[str] | None = None,
    elements: str | list[str] | None = None,
    formula: str | list[str] | None = None,
    material_ids: str | list[str] | None = None,
    working_ion: str | None = None,
    e_above_hull_max: float = 0.05,
    api_key: str | None = None,
    endpoint: str | None = None,
    progress: bool = True,
    chunk_size: int = 1000,
) -> MPFetch:
    """Query MP's summary endpoint and build checked hosts; raises MPError (one line) on a missing
    key, a refused key, rate limiting, server errors, an unreachable API or an empty result.

    ``chunk_size`` is the page size the client asks for (``_limit``); the client pages with
    ``_skip`` until it has ``meta.total_doc`` documents.
    """
    crit = _criteria(chemsys, elements, formula, material_ids, e_above_hull_max)
    if working_ion is not None and not Element.is_valid_symbol(working_ion):
        raise MPError(f"Materials Project query: unknown working ion {working_ion!r}")
    url = mp_endpoint(endpoint)
    public = _public_url(url)
    where = f"Materials Project {_describe(crit)} at {public}"
    key = (api_key or os.environ.get("MP_API_KEY") or "").strip()
    if not key:
        raise MPError(f"{where}: no API key; set the MP_API_KEY environment variable (get a key at "
                      f"{KEY_URL})")
    _heartbeat(url, where, key)

    import requests
    from mp_api.client import MPRester
    from mp_api.client.core import MPRestError

    retrieved_at = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        with MPRester(api_key=key, endpoint=url, mute_progress_bars=not progress) as mpr:
            db_version = str(mpr.db_version or "")
            docs = mpr.materials.summary.search(
                **crit, deprecated=False, fields=MP_FIELDS, chunk_size=chunk_size
            )
    except (MPRestError, requests.RequestException, ValueError, KeyError) as exc:
        raise MPError(_redact(f"{where}: {_reason(exc)}", key)) from None
    if not docs:
        raise MPError(f"{where}: no materials match (nothing stored)")

    mp = {
        "database_version": db_version,
        "retrieved_at": retrieved_at,
        "endpoint": public,
        "client": f"mp-api {version('mp-api')}",
        "query": _describe(crit),
    }
    hosts: list[Host] = []
    errors: list[HostInputError] = []
    dropped: list[str] = []
    from tqdm import tqdm

    for doc in tqdm(docs, desc="MP structures -> hosts", disable=not progress, file=sys.stderr):
        mid = str(doc.material_id)
        structure = getattr(doc, "structure", None)
        if structure is None:
            errors.append(HostInputError(mid, "Materials Project returned no structure"))
            continue
        if working_ion and working_ion not in {e.symbol for e in structure.composition.elements}:
            dropped.append(mid)
            continue
        try:
            hosts.append(host_from_structure(structure, mid, _provenance(doc, mp)))
        except HostInputError as exc:
            errors.append(exc)
    log.info("Materials Project: %d materials found, %d without the working ion %s dropped, "
             "%d refused", len(docs), len(dropped), working_ion or "-", len(errors))
    if dropped and not hosts and not errors:
        raise MPError(f"{where}: {len(docs)} materials found but none contains {working_ion} "
                      "(nothing stored)")
    return MPFetch(hosts, errors, dropped, len(docs), _describe(crit), public, db_version,
                   retrieved_at)


def mp_hosts(**query: Any) -> tuple[list[Host], list[HostInputError]]:
    """(hosts, refused) from the Materials Project, like the other sources; ``query`` takes
    ``fetch_mp``'s keyword arguments. Materials without the working ion are dropped (their number
    is logged), materials with an unusable structure come back as errors."""
    got = fetch_mp(**query)
    return got.hosts, got.errors
