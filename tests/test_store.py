"""Store: idempotent bulk inserts, unique indexes, durability under SIGKILL, concurrent readers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from pymongo.errors import DuplicateKeyError

from screener.store import Store, StoreError

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO / "screener" / "data" / "em-dataset" / "bands-train.json"


@pytest.fixture(scope="module")
def bands() -> list[dict]:
    with DATASET.open() as fh:
        return json.load(fh)[:40]


def hop_docs(bands: list[dict]) -> list[dict]:
    """One hop document per shipped band: first site = initial, fifth = final position of the ion."""
    docs = []
    for i, entry in enumerate(bands):
        atoms = entry["atoms"]
        lattice = np.array(atoms["lattice_mat"])
        frac = np.array(atoms["coords"][:5])
        length = float(np.linalg.norm((frac[4] - frac[0]) @ lattice))
        host_id = f"jarvis:{entry['sys_name']}:{i}"
        key = f"{host_id}:{atoms['elements'][0]}:{i:04d}"
        docs.append({"_id": key, "hop_key": key, "host_id": host_id,
                     "working_ion": atoms["elements"][0], "length": length, "target": entry["target"]})
    return docs


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


WRITER = textwrap.dedent(
    """
    import json, sys, time
    from screener.store import Store
    path, n_batches, batch, pause = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[5])
    with open(sys.argv[4]) as fh:
        base = json.load(fh)
    store = Store.embedded(path)
    for b in range(n_batches):
        docs = [dict(base[i % len(base)], _id=f"b{b}-{i}") for i in range(batch)]
        store.insert_new("hops", docs)
        print(f"ACK {b}", flush=True)   # acknowledged: every doc of batch b must survive
        time.sleep(pause)
    """
)


def start_writer(
    tmp_path: Path, path: Path, docs: list[dict], n_batches: int, batch: int, pause: float = 0.0
) -> subprocess.Popen:
    base = tmp_path / "base.json"
    base.write_text(json.dumps([{k: v for k, v in d.items() if k != "_id"} for d in docs]))
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(n_batches), str(batch), str(base), str(pause)],
        stdout=subprocess.PIPE, text=True, env=child_env(),
    )


def test_insert_new_is_idempotent(store: Store, bands: list[dict]) -> None:
    store.ensure_indexes()
    docs = hop_docs(bands)
    assert store.insert_new("hops", docs) == len(docs)
    assert store.insert_new("hops", docs) == 0
    assert store.hops.count_documents({}) == len(docs)
    # Existing documents are not overwritten.
    changed = [dict(d, length=-1.0) for d in docs[:3]]
    assert store.insert_new("hops", changed + [dict(docs[0], _id="new", hop_key="new")]) == 1
    assert store.hops.count_documents({"length": -1.0}) == 0
    assert store.hops.count_documents({}) == len(docs) + 1


def test_insert_new_many_and_update(store: Store, bands: list[dict]) -> None:
    docs = [dict(d, _id=f"{d['_id']}#{r}", hop_key=f"{d['hop_key']}#{r}") for r in range(60) for d in hop_docs(bands)]
    assert len(docs) > 2000  # several bulk chunks
    assert store.insert_new("hops", iter(docs)) == len(docs)
    store.update_many_by_id("hops", [(d["_id"], {"em_ev": d["target"]}) for d in docs[:1500]])
    assert store.hops.count_documents({"em_ev": {"$exists": True}}) == 1500
    first = store.hops.find_one({"_id": docs[0]["_id"]})
    assert first["em_ev"] == docs[0]["target"] and first["length"] == pytest.approx(docs[0]["length"])


def test_unique_index_refuses_duplicates(store: Store, bands: list[dict]) -> None:
    store.ensure_indexes()
    store.ensure_indexes()  # idempotent
    assert {"hop_identity", "hops_by_host_ion"} <= set(store.hops.index_information())
    doc = hop_docs(bands)[0]
    store.insert_new("hops", [doc])
    with pytest.raises(DuplicateKeyError):
        store.hops.insert_one(dict(doc, _id="other-id"))
    # Re-adding the same hop under another _id through insert_new is a no-op, not an error.
    assert store.insert_new("hops", [dict(doc, _id="other-id")]) == 0
    assert store.hops.count_documents({}) == 1
    pred = {"_id": f"m1|{doc['hop_key']}", "model_id": "m1", "hop_key": doc["hop_key"], "em_ev": 0.3}
    assert store.insert_new("predictions", [pred]) == 1
    assert store.insert_new("predictions", [dict(pred, em_ev=9.9)]) == 0
    assert store.predictions.find_one()["em_ev"] == 0.3
    if store.mode == "mongodb":
        with pytest.raises(DuplicateKeyError):
            store.predictions.insert_one({"_id": "x", "model_id": "m1", "hop_key": doc["hop_key"]})
    else:  # compound unique indexes marked embedded: false (O(collection) per insert on mongomock)
        assert "prediction_identity" not in store.predictions.index_information()
        assert "predictions_by_hop" in store.predictions.index_information()


def test_write_lock_nests_across_store_objects_and_excludes_threads(tmp_path: Path) -> None:
    import threading

    a, b = Store.embedded(tmp_path / "s"), Store.embedded(tmp_path / "s")
    got: list[float] = []
    with a.write_lock():
        with b.write_lock():  # same folder, same thread: nests (a FireTask opening its own Store)
            assert b.insert_new("hosts", [{"_id": "h1"}]) == 1
        start = time.monotonic()
        other = threading.Thread(target=lambda: (b.write_lock().acquire(), got.append(time.monotonic() - start),
                                                 b.write_lock().release()))
        other.start()
        time.sleep(0.3)
        assert not got  # another thread waits for the holder
    other.join(timeout=10)
    assert got and got[0] >= 0.3
    a.close()
    b.close()


def test_insert_new_requires_id(store: Store) -> None:
    with pytest.raises(StoreError, match="insert_new into hosts: document without _id"):
        store.insert_new("hosts", [{"formula": "Li2O"}])


def test_sigkill_keeps_acknowledged_writes(tmp_path: Path, bands: list[dict]) -> None:
    path = tmp_path / "store"
    proc = start_writer(tmp_path, path, hop_docs(bands), n_batches=10_000, batch=25)
    acked = []
    assert proc.stdout is not None
    for line in proc.stdout:
        acked.append(int(line.split()[1]))
        if len(acked) >= 8:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    acked += [int(line.split()[1]) for line in proc.stdout.read().splitlines()]  # buffered before the kill
    with Store.embedded(path) as store:
        ids = {d["_id"] for d in store.hops.find({}, {"_id": 1})}
        for b in acked:
            assert {f"b{b}-{i}" for i in range(25)} <= ids, f"acknowledged batch {b} lost"
        assert store.hops.find_one({"_id": "b0-0"})["working_ion"] == hop_docs(bands)[0]["working_ion"]


def test_second_process_reads_while_writing(tmp_path: Path, bands: list[dict]) -> None:
    path = tmp_path / "store"
    Store.embedded(path).close()
    proc = start_writer(tmp_path, path, hop_docs(bands), n_batches=60, batch=25, pause=0.02)
    seen = []
    try:
        with Store.embedded(path) as reader:
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                seen.append(reader.hops.count_documents({}))
                time.sleep(0.05)
            assert proc.wait(timeout=60) == 0
            final = reader.hops.count_documents({})
    finally:
        proc.kill()
    growing = [n for n in seen if 0 < n < 60 * 25]
    assert len(set(growing)) >= 3, f"reader saw no progress while the writer ran: {seen}"
    assert seen == sorted(seen)
    assert final == 60 * 25


def test_connect_default_is_embedded_in_screener_home(screener_home: Path) -> None:
    with Store.connect() as store:
        assert store.mode == "embedded"
        assert store.path == screener_home / "store"
        assert store.describe() == f"embedded store at {screener_home / 'store'}"
        store.insert_new("campaigns", [{"_id": "c1"}])
        assert store.campaigns.count_documents({}) == 1


def test_pickled_store_reconnects_to_the_same_data(store: Store) -> None:
    import pickle

    store.insert_new("hosts", [{"_id": "jarvis:Li4P2S7", "formula": "Li67 P32 S112"}])
    clone = pickle.loads(pickle.dumps(store))
    try:
        assert clone.describe() == store.describe()
        assert clone.hosts.find_one({"_id": "jarvis:Li4P2S7"})["formula"] == "Li67 P32 S112"
    finally:
        clone.close()


def test_spec_round_trip(tmp_path: Path, screener_home: Path) -> None:
    with Store.embedded(tmp_path / "s") as store:
        spec = store.spec()
        assert json.loads(json.dumps(spec)) == {"mode": "embedded", "path": str(tmp_path / "s")}
        with Store.from_spec(spec) as again:
            assert again.path == store.path
    with Store.from_spec({}) as default:
        assert default.path == screener_home / "store"
    uri = "mongodb://db.example.org/em"
    with Store.connect(db=uri) as store, Store.from_spec(store.spec()) as again:
        assert again.mode == "mongodb" and again.uri == uri and again.db.name == "em"
    with pytest.raises(StoreError, match="store spec .*expected mode") as info:
        Store.from_spec({"mode": "mongodb", "uri": None, "secret": "mongodb://u:pw@h/"})
    assert "pw" not in str(info.value)


def test_bad_inputs_raise_one_line_errors(tmp_path: Path) -> None:
    for uri, reason in [("http://example.org/db", "must start with mongodb://"),
                        ("mongodb:///db", "no host"),
                        ("mongodb://localhost/bad.name", "invalid database name")]:
        with pytest.raises(StoreError, match=reason) as info:
            Store.connect(db=uri)
        assert "\n" not in str(info.value)
    with pytest.raises(StoreError, match="launchpad file .*nope.yaml: not found"):
        Store.connect(launchpad=tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("host: [unclosed\n")
    with pytest.raises(StoreError, match="bad.yaml: unreadable") as info:
        Store.connect(launchpad=bad)
    assert "\n" not in str(info.value)
    afile = tmp_path / "a_file"
    afile.write_text("")
    with pytest.raises(StoreError, match="exists and is not a folder"):
        Store.embedded(afile)


def test_uri_and_launchpad_settings_without_server(tmp_path: Path) -> None:
    """Opening is lazy (pymongo connects in the background), so settings are checked offline."""
    with Store.connect(db="mongodb://alice:s3cret@db.example.org:27017/em?authSource=admin") as store:
        assert store.mode == "mongodb" and store.db.name == "em"
        assert "s3cret" not in store.describe() and "alice" in store.describe()
        lp = store.launchpad()
        assert lp.db.name == "em" and lp.uri_mode
    with Store.connect(db="mongodb://db.example.org") as store:
        assert store.db.name == "screener"
    lp_file = tmp_path / "my_launchpad.yaml"
    lp_file.write_text("host: db.example.org\nport: 27018\nname: campaigns\nusername: bob\npassword: pw\n"
                       "authsource: admin\n")
    with Store.connect(launchpad=lp_file) as store:
        assert store.mode == "mongodb" and store.db.name == "campaigns"
        assert store.launchpad().name == "campaigns" and store.launchpad().port == 27018
        assert "pw" not in store.describe()
    with Store.connect(launchpad=REPO / "fw_specs" / "my_launchpad.yaml") as store:
        assert store.db.name == "screener"


@pytest.mark.mongodb
def test_real_server_round_trip(store: Store, bands: list[dict]) -> None:
    store.ensure_indexes()
    docs = hop_docs(bands)
    assert store.insert_new("hops", docs) == len(docs)
    assert store.insert_new("hops", docs) == 0
    assert store.insert_new("hops", [dict(docs[0], _id="other-id")]) == 0
    lp = store.launchpad()
    assert lp.db.name == store.db.name
