"""Shared fixtures: an isolated SCREENER_HOME for every test and a `store` (embedded or real MongoDB)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from screener.store import Store


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--mongodb-uri",
        default=os.environ.get("SCREENER_TEST_MONGODB_URI"),
        help="MongoDB URI for tests marked 'mongodb' (also env SCREENER_TEST_MONGODB_URI); "
        "each test gets a fresh database that is dropped afterwards",
    )


@pytest.fixture(scope="session")
def mongodb_uri(request: pytest.FixtureRequest) -> str | None:
    return request.config.getoption("--mongodb-uri")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--mongodb-uri"):
        return
    skip = pytest.mark.skip(reason="needs a real MongoDB: pass --mongodb-uri or set SCREENER_TEST_MONGODB_URI")
    for item in items:
        if "mongodb" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def screener_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test touches the user's data dir."""
    home = tmp_path_factory.mktemp("screener_home")
    monkeypatch.setenv("SCREENER_HOME", str(home))
    return home


def _with_db_name(uri: str, name: str) -> str:
    """The URI with its database path replaced by `name` (options kept)."""
    scheme, rest = uri.split("://", 1)
    hosts, _, path = rest.partition("/")
    _, q, options = path.partition("?")
    return f"{scheme}://{hosts}/{name}{q}{options}"


@pytest.fixture
def store(tmp_path: Path, mongodb_uri: str | None) -> Iterator[Store]:
    """An embedded Store in tmp_path, or a fresh uniquely named database on --mongodb-uri."""
    if not mongodb_uri:
        s = Store.embedded(tmp_path / "store")
        yield s
        s.close()
        return
    name = f"screener_test_{uuid.uuid4().hex[:12]}"
    s = Store.connect(db=_with_db_name(mongodb_uri, name))
    try:
        yield s
    finally:
        s.client.drop_database(name)
        s.close()


@pytest.fixture(scope="session")
def store_location(tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str | None):
    """Factory of fresh store locations, as `--db` takes them: an embedded store folder, or a
    uniquely named database on --mongodb-uri (all dropped at the end of the session)."""
    made: list[str] = []

    def make() -> str:
        if not mongodb_uri:
            return str(tmp_path_factory.mktemp("db") / "store")
        name = f"screener_test_{uuid.uuid4().hex[:12]}"
        made.append(name)
        return _with_db_name(mongodb_uri, name)

    yield make
    if made:
        s = Store.connect(db=mongodb_uri)
        for name in made:
            s.client.drop_database(name)
        s.close()
