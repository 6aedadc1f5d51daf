"""A FireWorks LaunchPad on the embedded (litemongo) store.

FireWorks' LaunchPad builds its own pymongo MongoClient, so it cannot open a litemongo store.
EmbeddedLaunchPad reuses the Store's database instead and fixes what breaks on mongomock/SQLite:

* per-thread connections: SQLite handles belong to the thread that opened them, and the Rocket pings
  from a second thread, so every collection is looked up on the calling thread's client;
* a cross-process lock: mongomock's find_one_and_update is read-then-write, so two processes could
  check out the same Firework or draw the same fw_id; every LaunchPad write runs under the store's
  file lock (which also serialises the ping thread with complete_launch);
* sorting: FireWorks sorts by created_on/updated_on through ``$dateFromString`` aggregations, which
  mongomock does not implement, so those queries sort in Python here;
* GridFS (the large-action fallback) is enabled through mongomock's gridfs integration.

``lpad`` cannot open this store: use a real MongoDB for many machines or for ``lpad``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gridfs
from fireworks import LaunchPad
from fireworks.fw_config import GRIDFS_FALLBACK_COLLECTION, STREAM_LOGLEVEL
from fireworks.utilities.fw_utilities import get_fw_logger

if TYPE_CHECKING:
    from screener.store import Store

__all__ = ["EmbeddedLaunchPad", "init_launchpad"]

# LaunchPad methods that write; each runs under the store's cross-process lock (re-entrant).
_LOCKED_METHODS = (
    "reset",
    "add_wf",
    "bulk_add_wfs",
    "append_wf",
    "update_spec",
    "delete_fws",
    "delete_wf",
    "pause_fw",
    "defuse_fw",
    "reignite_fw",
    "resume_fw",
    "defuse_wf",
    "pause_wf",
    "reignite_wf",
    "archive_wf",
    "_restart_ids",
    "checkout_fw",
    "reserve_fw",
    "cancel_reservation_by_reservation_id",
    "cancel_reservation",
    "detect_unreserved",
    "mark_fizzled",
    "detect_lostruns",
    "set_reservation_id",
    "change_launch_dir",
    "restore_backup_data",
    "complete_launch",
    "ping_launch",
    "get_new_fw_id",
    "get_new_launch_id",
    "_upsert_fws",
    "rerun_fw",
    "_refresh_wf",
    "set_priority",
    "add_offline_run",
    "recover_offline",
    "forget_offline",
)

_gridfs_enabled = False


def _enable_gridfs() -> None:
    """Let pymongo's gridfs accept mongomock databases (patches isinstance checks, once)."""
    global _gridfs_enabled
    if not _gridfs_enabled:
        from litemongo._vendor.mongomock.gridfs import enable_gridfs_integration

        enable_gridfs_integration()
        _gridfs_enabled = True


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: EmbeddedLaunchPad, *args: Any, **kwargs: Any) -> Any:
        with self.store.write_lock():
            return method(self, *args, **kwargs)

    return wrapper


class EmbeddedLaunchPad(LaunchPad):
    """LaunchPad whose collections are the embedded Store's (same database as screener's data)."""

    def __init__(self, store: Store, logdir: str | None = None, strm_lvl: str | None = None) -> None:
        # Deliberately not LaunchPad.__init__: it would open a pymongo client to localhost.
        if store.mode != "embedded":
            raise ValueError(f"EmbeddedLaunchPad needs an embedded store, got {store.describe()}")
        self.store = store
        self.host = str(store.path)
        self.port = None
        self.name = store.db_name
        self.username = None
        self.password = None
        self.authsource = self.name
        self.uri_mode = False
        self.mongoclient_kwargs = {}
        self.logdir = logdir
        self.strm_lvl = strm_lvl or STREAM_LOGLEVEL
        self.m_logger = get_fw_logger("launchpad", l_dir=self.logdir, stream_level=self.strm_lvl)
        self.user_indices = []
        self.wf_user_indices = []
        self.backup_launch_data = {}
        self.backup_fw_data = {}
        if GRIDFS_FALLBACK_COLLECTION:
            _enable_gridfs()

    # Collections are looked up per call so that each thread uses its own SQLite connection.
    @property
    def connection(self) -> Any:  # type: ignore[override]
        return self.store.client

    @property
    def db(self) -> Any:  # type: ignore[override]
        return self.store.db

    @property
    def fireworks(self) -> Any:  # type: ignore[override]
        return self.db["fireworks"]

    @property
    def launches(self) -> Any:  # type: ignore[override]
        return self.db["launches"]

    @property
    def offline_runs(self) -> Any:  # type: ignore[override]
        return self.db["offline_runs"]

    @property
    def fw_id_assigner(self) -> Any:  # type: ignore[override]
        return self.db["fw_id_assigner"]

    @property
    def workflows(self) -> Any:  # type: ignore[override]
        return self.db["workflows"]

    @property
    def gridfs_fallback(self) -> Any:  # type: ignore[override]
        if not GRIDFS_FALLBACK_COLLECTION:
            return None
        return gridfs.GridFS(self.db, GRIDFS_FALLBACK_COLLECTION)

    # ------------------------------------------------------------------ queries
    def get_fw_ids(self, query=None, sort=None, limit=0, count_only=False, launches_mode=False):
        """As LaunchPad.get_fw_ids, with find() + a Python sort instead of aggregations."""
        coll = self.launches if launches_mode else self.fireworks
        criteria = dict(query or {})
        if launches_mode:
            criteria["launch_id"] = {"$in": self._get_active_launch_ids()}
        if count_only and limit:
            return ValueError("Cannot count_only and limit at the same time!")
        if count_only:
            return coll.count_documents(criteria)
        return [d["fw_id"] for d in _find_sorted(coll, criteria, "fw_id", sort, limit)]

    def get_wf_ids(self, query=None, sort=None, limit=0, count_only=False):
        """As LaunchPad.get_wf_ids (one fw_id per workflow), without aggregations."""
        criteria = dict(query or {})
        if count_only:
            return self.workflows.count_documents(criteria)
        return [d["nodes"][0] for d in _find_sorted(self.workflows, criteria, "nodes", sort, limit)]

    def get_fw_ids_in_wfs(
        self, wf_query=None, fw_query=None, sort=None, limit=0, count_only=False, launches_mode=False
    ):
        """As LaunchPad.get_fw_ids_in_wfs, as two finds instead of a $lookup aggregation."""
        fw_ids = {n for wf in self.workflows.find(dict(wf_query or {}), {"nodes": 1}) for n in wf["nodes"]}
        criteria = dict(fw_query or {})
        if criteria:
            criteria = {"$and": [criteria, {"fw_id": {"$in": sorted(fw_ids)}}]}
        else:
            criteria = {"fw_id": {"$in": sorted(fw_ids)}}
        return self.get_fw_ids(criteria, sort=sort, limit=limit, count_only=count_only, launches_mode=launches_mode)


# Wrap the writing methods of LaunchPad in the store's lock.
for _name in _LOCKED_METHODS:
    setattr(EmbeddedLaunchPad, _name, _locked(getattr(LaunchPad, _name)))


def _find_sorted(coll: Any, criteria: dict, field: str, sort: Any, limit: int) -> list[dict]:
    """find() sorted in Python (dates stored as strings or datetimes sort alike as ISO text)."""
    projection = {field: 1, "_id": 0}
    for key, _ in sort or ():
        projection[key] = 1
    docs = list(coll.find(criteria, projection))
    for key, direction in reversed(list(sort or ())):
        docs.sort(key=lambda d, k=key: _sort_key(_get_path(d, k)), reverse=_descending(direction))
    return docs[:limit] if limit and limit > 0 else docs


def _get_path(doc: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc


def _sort_key(value: Any) -> tuple:
    """Missing/None first, then numbers, then text and dates (as ISO text), like MongoDB."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (3, int(value))
    if isinstance(value, (int, float)):
        return (1, value)
    if hasattr(value, "isoformat"):
        return (2, value.isoformat())
    return (2, str(value))


def _descending(direction: Any) -> bool:
    return direction in (-1, "-1", "desc", "descending", "DESCENDING")


def init_launchpad(lp: LaunchPad) -> LaunchPad:
    """Initialise a LaunchPad's database once (ids and indexes) without erasing an existing one."""
    lock = lp.store.write_lock() if isinstance(lp, EmbeddedLaunchPad) else contextlib.nullcontext()
    with lock:
        if lp.fw_id_assigner.count_documents({}) == 0:
            lp._restart_ids(1, 1)
            lp.tuneup(bkground=True)
    return lp

