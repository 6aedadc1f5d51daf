"""Materials Project hosts: the real mp-api client against a local fake MP server (tests/mp_server.py).

Checks paging, the query filters, provenance, the working-ion filter, every error MP gives as one
line (401, 429 retried then given up, 5xx, empty, unreachable, no key), re-runs adding nothing twice,
and that the API key never reaches the store, the logs or a message.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
from mp_api.client.core.settings import MAPI_CLIENT_SETTINGS
from mp_server import GOOD_KEY, FakeMP, catalogue_docs, summary_doc
from typer.testing import CliRunner

from screener.cli import app
from screener.sources.mp import MPError, fetch_mp, mp_hosts

runner = CliRunner()
LIFEPO = ["mp-1101000", "mp-19017"]  # the catalogue's Li-Fe-P-O materials within 0.05 eV/atom


@pytest.fixture
def mp(monkeypatch: pytest.MonkeyPatch):
    """A fake MP server with the catalogue, and MP_API_KEY set to the key it accepts."""
    monkeypatch.setenv("MP_API_KEY", GOOD_KEY)
    monkeypatch.delenv("MP_API_ENDPOINT", raising=False)
    with FakeMP(list(catalogue_docs())) as server:
        yield server


def _fetch(mp: FakeMP, **kw):
    kw.setdefault("progress", False)
    return fetch_mp(endpoint=mp.url, **kw)


def _error(mp: FakeMP, **kw) -> str:
    with pytest.raises(MPError) as info:
        _fetch(mp, **kw)
    text = str(info.value)
    assert "\n" not in text and "Traceback" not in text
    return text


# ------------------------------------------------------------------------------------ queries


def test_chemsys_query_pages_through_all_results_with_provenance(mp):
    got = _fetch(mp, chemsys="Li-Fe-P-O", working_ion="Li", chunk_size=1)
    assert sorted(h.name for h in got.hosts) == LIFEPO
    pages = mp.summary_requests()
    assert len(pages) == 2  # one page per material: _limit=1, then _skip=1
    assert [p[1].get("_skip") for p in pages] == [None, "1"]
    assert all(p[1]["chemsys"] == "Fe-Li-O-P" and p[1]["energy_above_hull_max"] == "0.05" for p in pages)
    assert all(key_ok for _, _, key_ok, _ in pages)  # the key went in the x-api-key header
    lfp = next(h for h in got.hosts if h.name == "mp-19017")
    assert lfp.formula == "LiFePO4" and len(lfp.structure) == 112
    src = lfp.source
    assert src["kind"] == "mp" and src["material_id"] == "mp-19017"
    assert src["energy_above_hull"] == 0.0 and src["database_version"] == "2025.09.25"
    assert src["endpoint"] == mp.url and src["client"].startswith("mp-api ")
    assert src["retrieved_at"].endswith("+00:00") and "chemsys=Fe-Li-O-P" in src["query"]
    assert got.database_version == "2025.09.25" and got.n_found == 2 and got.dropped == []


def test_working_ion_filter_drops_and_counts_hosts_without_the_ion(mp, caplog):
    caplog.set_level(logging.INFO, logger="screener.sources.mp")
    got = _fetch(mp, elements="Fe,P,O", working_ion="Li")
    assert got.n_found == 3 and got.dropped == ["mp-20361"]  # heterosite FePO4 has no Li
    assert sorted(h.name for h in got.hosts) == LIFEPO
    assert "1 without the working ion Li dropped" in caplog.text
    hosts, errors = mp_hosts(elements=["Fe", "P", "O"], endpoint=mp.url, progress=False)
    assert len(hosts) == 3 and errors == []  # no working ion: nothing dropped


def test_energy_above_hull_formula_and_material_id_queries(mp):
    assert [h.name for h in _fetch(mp, chemsys="Li-Mn-O").hosts] == ["mp-22584"]
    wide = _fetch(mp, chemsys="Li-Mn-O", e_above_hull_max=0.1).hosts
    assert sorted(h.name for h in wide) == ["mp-1101001", "mp-22584"]
    assert [h.name for h in _fetch(mp, formula="LiFePO4").hosts] == ["mp-19017"]
    by_id = _fetch(mp, material_ids="mp-19017,mp-22584").hosts
    assert sorted(h.formula for h in by_id) == ["LiFePO4", "LiMn2O4"]


def test_a_bad_structure_is_one_error_named_by_its_id_and_the_rest_is_kept(monkeypatch):
    monkeypatch.setenv("MP_API_KEY", GOOD_KEY)
    lfp = next(d for d in catalogue_docs() if d["material_id"] == "mp-19017")
    from pymatgen.core import Structure

    broken = Structure.from_dict(lfp["structure"])
    broken.translate_sites([1], broken[0].coords - broken[1].coords + 0.1, frac_coords=False)
    with FakeMP([lfp, summary_doc("mp-999999", broken, 0.0)]) as server:
        hosts, errors = mp_hosts(chemsys="Li-Fe-P-O", endpoint=server.url, progress=False)
    assert [h.name for h in hosts] == ["mp-19017"]
    assert len(errors) == 1 and str(errors[0]).startswith("mp-999999: ") and "overlapping" in str(errors[0])


def test_bad_queries_are_refused_before_any_request(mp):
    assert "give a chemical system" in _error(mp)
    assert "unknown element(s) Xx" in _error(mp, chemsys="Li-Xx-O")
    assert "bad material id(s) 19017" in _error(mp, material_ids="19017")
    assert "must be >= 0" in _error(mp, chemsys="Li-O", e_above_hull_max=-1)
    with pytest.raises(MPError, match="not an http"):
        fetch_mp(chemsys="Li-O", endpoint="ftp://127.0.0.1/", progress=False)
    assert mp.requests == []


# ------------------------------------------------------------------------------------ errors


def test_429_is_retried_with_backoff_and_then_succeeds(mp):
    mp.fail(429, times=2)
    got = _fetch(mp, chemsys="Li-Fe-P-O")
    assert sorted(h.name for h in got.hosts) == LIFEPO
    assert [r[3] for r in mp.summary_requests()] == [429, 429, 200]
    mp.retry_after = "1"  # MP's Retry-After is honoured
    mp.fail(429, times=1)
    t0 = time.perf_counter()
    assert len(_fetch(mp, chemsys="Li-Fe-P-O").hosts) == 2
    assert time.perf_counter() - t0 >= 1.0


def test_repeated_429_gives_a_clear_error_after_the_clients_retries(mp):
    mp.fail(429, times=20)
    text = _error(mp, chemsys="Li-Fe-P-O")
    assert "rate limited (HTTP 429)" in text and "chemsys=Fe-Li-O-P" in text
    assert len(mp.summary_requests()) == MAPI_CLIENT_SETTINGS.MAX_RETRIES + 1


@pytest.mark.parametrize("status, retried", [(500, False), (502, True)])
def test_server_errors(mp, status, retried):
    mp.fail(status, times=20)
    assert f"server error (HTTP {status})" in _error(mp, chemsys="Li-Fe-P-O")
    assert len(mp.summary_requests()) == (MAPI_CLIENT_SETTINGS.MAX_RETRIES + 1 if retried else 1)


def test_refused_missing_and_malformed_keys(mp, monkeypatch):
    wrong = "W" * 32
    text = _error(mp, chemsys="Li-Fe-P-O", api_key=wrong)
    assert "API key was refused (HTTP 401)" in text and wrong not in text
    monkeypatch.delenv("MP_API_KEY")
    assert "set the MP_API_KEY environment variable" in _error(mp, chemsys="Li-Fe-P-O")
    assert "not a valid API key" in _error(mp, chemsys="Li-Fe-P-O", api_key="short-key")


def test_empty_result_and_unreachable_server(mp):
    mp.empty = True
    assert "no materials match" in _error(mp, chemsys="Li-Fe-P-O")
    mp.empty = False
    assert "none contains Na" in _error(mp, chemsys="Li-Fe-P-O", working_ion="Na")
    url = mp.url
    mp.stop()
    with pytest.raises(MPError, match="cannot reach the API"):
        fetch_mp(chemsys="Li-Fe-P-O", endpoint=url, progress=False)


def test_rerun_adds_nothing_twice(mp, store):
    hosts, _ = mp_hosts(chemsys="Li-Fe-P-O", working_ion="Li", endpoint=mp.url, progress=False)
    assert store.insert_new("hosts", [h.to_doc() for h in hosts]) == 2
    again, _ = mp_hosts(chemsys="Li-Fe-P-O", working_ion="Li", endpoint=mp.url, progress=False)
    assert store.insert_new("hosts", [h.to_doc() for h in again]) == 0
    docs = list(store.hosts.find({}))
    assert sorted(d["name"] for d in docs) == LIFEPO
    assert {d["source"]["kind"] for d in docs} == {"mp"}


# ------------------------------------------------------------------------------------ CLI


def _cli(*args: str, env: dict | None = None):
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


def test_cli_hosts_add_mp_end_to_end(mp, tmp_path):
    db = str(tmp_path / "store")
    first = _cli("hosts", "add", "--mp", "--chemsys", "Li-Fe-P-O", "--working-ion", "Li",
                 "--mp-endpoint", mp.url, "--db", db)
    assert first.exit_code == 0, first.stderr
    assert "2 new hosts stored, 0 already stored, 0 refused" in first.stdout
    assert "2 materials, 0 without Li dropped" in first.stderr
    assert "Retrieving SummaryDoc documents" in first.stderr  # the client's progress bar
    listed = json.loads(_cli("hosts", "list", "--json", "--db", db).stdout)
    assert sorted(h["name"] for h in listed) == LIFEPO and {h["source"] for h in listed} == {"mp"}
    # MP_API_ENDPOINT instead of --mp-endpoint; a re-run stores nothing twice
    again = _cli("hosts", "add", "--mp", "--elements", "Fe,P,O", "--working-ion", "Li", "--db", db,
                 env={"MP_API_ENDPOINT": mp.url})
    assert again.exit_code == 0, again.stderr
    assert "0 new hosts stored, 2 already stored" in again.stdout
    assert "3 materials, 1 without Li dropped" in again.stderr
    assert len(json.loads(_cli("hosts", "list", "--json", "--db", db).stdout)) == 2


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (lambda mp: mp.fail(401, 1), ["--chemsys", "Li-Fe-P-O"], "API key was refused (HTTP 401)"),
        (lambda mp: mp.fail(429, 20), ["--chemsys", "Li-Fe-P-O"], "rate limited (HTTP 429)"),
        (lambda mp: mp.fail(503, 1), ["--chemsys", "Li-Fe-P-O"], "server error (HTTP 503)"),
        (lambda mp: setattr(mp, "empty", True), ["--chemsys", "Li-Fe-P-O"], "no materials match"),
        (lambda mp: mp.stop(), ["--chemsys", "Li-Fe-P-O"], "cannot reach the API"),
        (lambda mp: None, ["--material-ids", "mp-1"], "no materials match"),
    ],
    ids=["401", "429", "503", "empty", "unreachable", "unknown-id"],
)
def test_cli_mp_errors_are_one_line_and_exit_nonzero(mp, tmp_path, setup, args, message):
    url = mp.url
    setup(mp)
    result = _cli("hosts", "add", "--mp", *args, "--mp-endpoint", url, "--db", str(tmp_path / "s"))
    assert result.exit_code == 1
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: Materials Project ") and message in lines[0]
    assert "Traceback" not in result.output


def test_cli_mp_usage_errors(mp, monkeypatch, tmp_path):
    db = str(tmp_path / "s")
    assert _cli("hosts", "add", "--chemsys", "Li-O", "--db", db).exit_code == 2
    assert _cli("hosts", "add", "--mp", "--db", db).exit_code == 2
    monkeypatch.delenv("MP_API_KEY")
    missing = _cli("hosts", "add", "--mp", "--chemsys", "Li-O", "--mp-endpoint", mp.url, "--db", db)
    assert missing.exit_code == 1 and "set the MP_API_KEY environment variable" in missing.stderr


def test_the_api_key_never_reaches_the_store_the_logs_or_a_message(mp, tmp_path, screener_home, caplog, capfd):
    """The whole flow with a distinctive key, including failures, then grep for it everywhere."""
    caplog.set_level(logging.DEBUG)  # urllib3 and mp-api log requests at DEBUG/INFO
    key = "LeakCanaryKey" + "Zq9" * 6 + "X"
    assert len(key) == 32
    mp.api_key = key
    env = {"MP_API_KEY": key}
    db = tmp_path / "store"
    base = ["hosts", "add", "--mp", "--chemsys", "Li-Fe-P-O", "--working-ion", "Li",
            "--mp-endpoint", mp.url, "--db", str(db)]
    results = [_cli(*base, env=env), _cli(*base, env=env)]
    mp.fail(429, 20)
    results.append(_cli(*base, env=env))
    mp.failures.clear()
    mp.fail(500, 1)
    results.append(_cli(*base, env=env))
    mp.api_key = GOOD_KEY  # now the distinctive key is refused
    results.append(_cli(*base, env=env))
    assert [r.exit_code for r in results] == [0, 0, 1, 1, 1]
    assert "2 new hosts stored" in results[0].stdout
    assert sum(r[2] for r in mp.summary_requests()) >= 2  # the key really was sent
    assert "/materials/summary/" in caplog.text  # the request logs were captured
    texts = [r.output for r in results] + [caplog.text, *capfd.readouterr()]
    assert all(key not in t for t in texts)
    files = [p for d in (tmp_path, screener_home) for p in Path(d).rglob("*") if p.is_file()]
    assert any(p.stat().st_size > 0 for p in files)
    assert not [p for p in files if key.encode() in p.read_bytes()]
