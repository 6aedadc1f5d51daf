"""What every `screener` sub-command shares: the one-line error exit and opening the store.

Why a module of its own: the sub-command modules (cli_model, cli_followup) are imported by
screener.cli, so they cannot import it back (`python -m screener.cli` would load it twice).
"""

from __future__ import annotations

from pathlib import Path

import typer


def fail(message: str, code: int = 1) -> None:
    """Print ``error: <message>`` as one line on stderr and exit with ``code`` (2: bad usage)."""
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(code)


def open_store(db: str | None, launchpad: Path | None):
    """The store of --db / --launchpad (embedded by default), indexes ensured; a bad URI or
    launchpad file exits with its one-line reason."""
    from screener.store import Store, StoreError

    try:
        store = Store.connect(db=db, launchpad=launchpad)
        store.ensure_indexes()
        return store
    except StoreError as exc:
        fail(str(exc))
