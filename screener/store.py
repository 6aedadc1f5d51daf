"""The one module that speaks MongoDB.

Everything screener persists (campaigns, hosts, hops, predictions, campaign_hosts) and the FireWorks
LaunchPad live in ONE database, either

* a real MongoDB (a ``mongodb://`` URI or a FireWorks ``my_launchpad.yaml``): for many machines and
  for ``lpad``; or
* the embedded store (litemongo: mongomock on SQLite, one file per collection) in
  ``screener_home()/store``: for one machine, no server.  Every acknowledged write is committed to
  SQLite before the call returns, so it survives SIGKILL, and other processes can read meanwhile.

SQLite connections may only be used by the thread that opened them, so the embedded store gives
each thread its own client (``Store.db`` is per thread).  mongomock checks uniqueness and applies
upserts as read-then-write, so writers in different processes are serialised with a file lock.
"""

from __future__ import annotations

import contextlib
import re
from importlib import resources
import threading
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager

import filelock
import yaml
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, ConfigurationError, InvalidURI

from screener.config import screener_home

if TYPE_CHECKING:
    from fireworks import LaunchPad

__all__ = ["COLLECTIONS", "DEFAULT_DB_NAME", "INDEXES_FILE", "Store", "StoreError"]

#: Database used when a URI names none (and by the embedded store).
DEFAULT_DB_NAME = "screener"
#: The screener collections (FireWorks adds its own: fireworks, launches, workflows, ...).
COLLECTIONS = ("campaigns", "hosts", "hops", "predictions", "campaign_hosts")
#: Index definitions, one place for the embedded store and a real server: the repository's db/
#: folder, installed as the package ``screener.db``.
INDEXES_FILE = Path(str(resources.files("screener.db").joinpath("indexes.yaml")))

#: Documents per bulk round trip.
_BULK_CHUNK = 1000
#: MongoDB's duplicate-key error code.
_DUPLICATE_KEY = 11000
#: Name of the cross-process lock file in the embedded store folder.
LOCK_FILE = "store.lock"


class StoreError(RuntimeError):
    """Bad store settings or a store that cannot be opened; str() is one line."""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _redact(uri: str) -> str:
    """The URI with any password replaced, for messages and describe()."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", uri)


def _db_name_from_uri(uri: str) -> str:
    """Database named in the URI path (without contacting DNS for mongodb+srv), default 'screener'."""
    if not uri.startswith(("mongodb://", "mongodb+srv://")):
        raise StoreError(f"bad MongoDB URI {_redact(uri)!r}: must start with mongodb:// or mongodb+srv://")
    rest = uri.split("://", 1)[1]
    hosts, _, path = rest.partition("/")
    if not hosts or hosts.endswith("@"):
        raise StoreError(f"bad MongoDB URI {_redact(uri)!r}: no host")
    name = path.split("?", 1)[0]
    if any(c in name for c in ' ."$\\/'):
        raise StoreError(f"bad MongoDB URI {_redact(uri)!r}: invalid database name {name!r}")
    return name or DEFAULT_DB_NAME


class Store:
    """A connection to the screener database, embedded (litemongo) or a real MongoDB."""

    mode: str

    def __init__(
        self,
        mode: str,
        *,
        path: Path | None = None,
        client: Any = None,
        db_name: str = DEFAULT_DB_NAME,
        uri: str | None = None,
        launchpad_file: Path | None = None,
        launchpad: LaunchPad | None = None,
    ) -> None:
        """Use connect() or embedded(); this only records what they opened."""
        self.mode = mode
        self.path = path
        self.db_name = db_name
        self.uri = uri
        self.launchpad_file = launchpad_file
        self._client = client
        self._launchpad = launchpad
        self._local = threading.local()
        # Weak: a finished thread's client is then garbage collected, closing its SQLite handles
        # (the Rocket starts a ping thread per Firework; strong refs would leak file descriptors).
        self._clients: weakref.WeakSet[Any] = weakref.WeakSet()
        self._clients_lock = threading.Lock()
        # Singleton per path: two Store objects on one folder in one thread nest instead of deadlocking.
        self._lock = filelock.FileLock(path / LOCK_FILE, is_singleton=True) if path is not None else None

    # ---------------------------------------------------------------- opening
    @classmethod
    def connect(cls, db: str | None = None, launchpad: str | Path | None = None) -> Store:
        """db: a mongodb:// or mongodb+srv:// URI (database name from the URI path, default
        'screener'), or the folder of an embedded store; launchpad: path to a FireWorks
        my_launchpad.yaml (the SAME database as that LaunchPad, read by FireWorks itself); neither:
        the embedded store in screener_home()/'store'."""
        if db and launchpad:
            raise StoreError("give either a MongoDB URI or a launchpad file, not both")
        if launchpad:
            return cls._from_launchpad_file(Path(launchpad))
        if db and "://" not in str(db):
            return cls.embedded(Path(db))
        if db:
            return cls._from_uri(str(db))
        return cls.embedded(screener_home() / "store")

    @classmethod
    def embedded(cls, path: Path) -> Store:
        """The litemongo store in the folder ``path`` (created if missing)."""
        path = Path(path).expanduser().absolute()
        if path.exists() and not path.is_dir():
            raise StoreError(f"embedded store {path}: exists and is not a folder")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"embedded store {path}: cannot create folder ({_one_line(exc)})") from exc
        store = cls("embedded", path=path)
        store.db  # open now so that a bad folder fails here, not at first use  # noqa: B018
        return store

    @classmethod
    def _from_uri(cls, uri: str) -> Store:
        from pymongo import MongoClient

        name = _db_name_from_uri(uri)
        try:
            client = MongoClient(uri)
        except (ConfigurationError, InvalidURI, ValueError, TypeError) as exc:
            raise StoreError(f"bad MongoDB URI {_redact(uri)!r}: {_one_line(exc)}") from exc
        return cls("mongodb", client=client, db_name=name, uri=uri)

    @classmethod
    def _from_launchpad_file(cls, path: Path) -> Store:
        from fireworks import LaunchPad

        if not path.is_file():
            raise StoreError(f"launchpad file {path}: not found")
        try:
            lp = LaunchPad.from_file(str(path))  # exactly as FireWorks (and lpad) read it
        except Exception as exc:  # loaders and pymongo raise many types; all mean "unusable file"
            raise StoreError(f"launchpad file {path}: unreadable ({_one_line(exc)})") from exc
        uri = lp.host if lp.uri_mode else None
        return cls(
            "mongodb",
            client=lp.connection,
            db_name=lp.db.name,
            uri=uri,
            launchpad_file=path,
            launchpad=lp,
        )

    # ----------------------------------------------------------- the database
    @property
    def client(self) -> Any:
        """The MongoClient (per thread for the embedded store)."""
        if self.mode != "embedded":
            return self._client
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._open_embedded_client()
            self._local.client = client
        return client

    def _open_embedded_client(self) -> Any:
        import litemongo
        from litemongo.client import create_store

        assert self.path is not None
        try:
            client = litemongo.MongoClient(create_store(str(self.path)))
        except (OSError, ValueError) as exc:
            raise StoreError(f"embedded store {self.path}: cannot open ({_one_line(exc)})") from exc
        with self._clients_lock:
            self._clients.add(client)
        return client

    @property
    def db(self) -> Any:
        """The pymongo (or litemongo) Database."""
        return self.client[self.db_name]

    def collection(self, name: str) -> Any:
        return self.db[name]

    @property
    def campaigns(self) -> Any:
        return self.db["campaigns"]

    @property
    def hosts(self) -> Any:
        return self.db["hosts"]

    @property
    def hops(self) -> Any:
        return self.db["hops"]

    @property
    def predictions(self) -> Any:
        return self.db["predictions"]

    @property
    def campaign_hosts(self) -> Any:
        return self.db["campaign_hosts"]

    # ----------------------------------------------------------------- writes
    def write_lock(self) -> ContextManager:
        """Cross-process exclusive lock: a file lock in the embedded store folder (re-entrant within
        a thread, exclusive between threads and processes); a no-op for a real server, whose
        single-document operations are atomic already."""
        if self._lock is None:
            return contextlib.nullcontext()
        return self._lock

    def ensure_indexes(self, spec_file: Path | None = None) -> None:
        """Create the indexes of db/indexes.yaml (those marked embedded: false only on a real
        server); idempotent (same name and keys -> no-op)."""
        for name, indexes in load_index_spec(spec_file).items():
            coll = self.collection(name)
            for index in indexes:
                if self.mode == "embedded" and not index.get("embedded", True):
                    continue  # see db/indexes.yaml: kept by the _id convention there
                coll.create_index(
                    [(k, v) for k, v in index["keys"]],
                    name=index["name"],
                    unique=bool(index.get("unique", False)),
                )

    def insert_new(self, name: str, docs: Iterable[dict]) -> int:
        """Bulk insert keyed by each doc's _id; existing _ids (and docs a unique index already
        holds) are left untouched; returns how many were new. One round trip per 1000 docs."""
        coll = self.collection(name)
        new = 0
        for chunk in _chunks(docs, _BULK_CHUNK):
            ops = []
            for doc in chunk:
                if "_id" not in doc:
                    raise StoreError(f"insert_new into {name}: document without _id ({_short(doc)})")
                fields = {k: v for k, v in doc.items() if k != "_id"}  # the upsert takes _id from the filter
                ops.append(UpdateOne({"_id": doc["_id"]}, {"$setOnInsert": fields}, upsert=True))
            with self.write_lock():
                try:
                    result = coll.bulk_write(ops, ordered=False)
                    new += result.upserted_count
                except BulkWriteError as exc:
                    details = exc.details
                    other = [e for e in details.get("writeErrors", []) if e.get("code") != _DUPLICATE_KEY]
                    if other or details.get("writeConcernErrors"):
                        first = (other or details["writeConcernErrors"])[0]
                        raise StoreError(
                            f"insert_new into {name}: {_one_line(Exception(first.get('errmsg', first)))}"
                        ) from exc
                    new += int(details.get("nUpserted", 0))
        return new

    def update_many_by_id(self, name: str, updates: Iterable[tuple[Any, dict]]) -> None:
        """Bulk $set updates: [(_id, {field: value}), ...]; unknown _ids are ignored."""
        coll = self.collection(name)
        for chunk in _chunks(updates, _BULK_CHUNK):
            ops = [UpdateOne({"_id": _id}, {"$set": fields}) for _id, fields in chunk if fields]
            if ops:
                with self.write_lock():
                    coll.bulk_write(ops, ordered=False)

    # ------------------------------------------------------------------ misc
    def launchpad(self) -> LaunchPad:
        """A FireWorks LaunchPad on the SAME database (the embedded one is initialised on first use;
        a real server's is used as is: initialise it once with `lpad reset` or init_launchpad())."""
        if self._launchpad is None:
            if self.mode == "embedded":
                from screener.launchpad import EmbeddedLaunchPad

                from screener.launchpad import init_launchpad

                # `lpad reset` cannot reach this store, so initialise it here (never erases data).
                self._launchpad = init_launchpad(EmbeddedLaunchPad(self, strm_lvl="WARNING"))
            else:
                from fireworks import LaunchPad

                self._launchpad = LaunchPad(
                    host=self.uri, uri_mode=True, name=self.db_name, strm_lvl="WARNING"
                )
        return self._launchpad

    def describe(self) -> str:
        """Where the data lives, without any password."""
        if self.mode == "embedded":
            return f"embedded store at {self.path}"
        if self.uri:
            return _redact(self.uri)
        lp = self._launchpad
        host = f"{lp.host}:{lp.port}" if lp is not None else "?"
        return f"mongodb://{host}/{self.db_name} (from {self.launchpad_file})"

    def close(self) -> None:
        """Close every client this Store opened (embedded clients of other threads included)."""
        if self.mode == "embedded":
            with self._clients_lock:
                clients, self._clients = list(self._clients), weakref.WeakSet()
            for client in clients:
                with contextlib.suppress(Exception):  # a thread's SQLite handle may refuse others
                    client.close()
            self._local = threading.local()
        elif self._client is not None:
            self._client.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def spec(self, *, secrets: bool = True) -> dict[str, str]:
        """JSON-able "how to reconnect" for other processes (FireWorks specs, FWorker env, Dask).
        A URI store's spec carries the URI, password included unless ``secrets=False`` (what is
        recorded in the database); a launchpad file's spec is only the file's path."""
        if self.mode == "embedded":
            return {"mode": "embedded", "path": str(self.path)}
        if self.launchpad_file is not None:
            return {"mode": "mongodb", "launchpad": str(self.launchpad_file.absolute())}
        return {"mode": "mongodb", "uri": str(self.uri) if secrets else _redact(str(self.uri))}

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | None) -> Store:
        """Reopen a store from spec(); an empty spec opens the default embedded store."""
        if not spec:
            return cls.connect()
        mode = spec.get("mode")
        if mode == "embedded" and spec.get("path"):
            return cls.embedded(Path(spec["path"]))
        if mode == "mongodb" and "***@" in str(spec.get("uri", "")):
            raise StoreError(
                f"store {spec['uri']}: the password is not recorded; give the worker the store "
                "(FWorker env screener_store, or SCREENER_DB=URI)"
            )
        if mode == "mongodb" and (spec.get("uri") or spec.get("launchpad")):
            return cls.connect(db=spec.get("uri"), launchpad=spec.get("launchpad"))
        shown = {k: (_redact(v) if isinstance(v, str) else v) for k, v in spec.items()}
        raise StoreError(f"store spec {shown!r}: expected mode embedded+path or mongodb+uri/launchpad")

    def __reduce__(self) -> tuple:
        """Pickle as "how to reconnect" (e.g. for Dask workers): clients and locks don't travel."""
        return (Store.from_spec, (self.spec(),))

    def __repr__(self) -> str:
        return f"Store({self.describe()!r})"


def load_index_spec(spec_file: Path | None = None) -> dict[str, list[dict]]:
    """Index definitions by collection: [{name, keys: [[field, 1|-1], ...], unique, embedded}]."""
    path = Path(spec_file) if spec_file else INDEXES_FILE
    try:
        with path.open() as fh:
            spec = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        raise StoreError(f"index file {path}: unreadable ({_one_line(exc)})") from exc
    if not isinstance(spec, dict):
        raise StoreError(f"index file {path}: expected a mapping of collection -> index list")
    for coll, indexes in spec.items():
        for index in indexes or []:
            keys = index.get("keys") if isinstance(index, dict) else None
            if not index.get("name") or not keys or any(len(k) != 2 or k[1] not in (1, -1) for k in keys):
                raise StoreError(f"index file {path}: bad index {index!r} for {coll}")
    return {coll: list(indexes or []) for coll, indexes in spec.items()}


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _short(doc: dict) -> str:
    text = " ".join(repr(doc).split())
    return text if len(text) <= 80 else text[:77] + "..."
