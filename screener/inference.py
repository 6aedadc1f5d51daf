"""Batched barrier inference dispatched through Dask.

The caller (a FireTask) owns the store: it hands band documents to Dask and writes what comes back.
Workers never touch the database, so a worker lost mid-batch costs only that batch. Each worker
process loads the model once (an LRU cache keyed by the model name) and keeps it for every batch.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from screener.bands import band_from_doc
from screener.model import BarrierModel, load_model


@functools.lru_cache(maxsize=4)
def worker_model(name: str) -> BarrierModel:
    """The model, loaded once per process (a Dask worker, or the caller itself)."""
    return load_model(name)


def predict_batch(model_name: str, band_docs: Sequence[dict]) -> tuple[list[float], list[float]]:
    """Predict one batch of bands; runs on a Dask worker and returns plain lists."""
    model = worker_model(model_name)
    mean, std = model.predict([band_from_doc(doc) for doc in band_docs])
    return [float(x) for x in np.asarray(mean)], [float(x) for x in np.asarray(std)]


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, n_workers: int | None = None) -> Iterator:
    """A Dask client: on ``scheduler`` when given, else on a new local cluster of processes."""
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler, timeout="30s")
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(
        n_workers=n_workers or 2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=50,
    )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def predict_bands(
    client,
    model_name: str,
    band_docs: Sequence[dict],
    *,
    batch_size: int = 64,
    gpu: bool = False,
    on_batch: Callable[[list[int], list[float], list[float]], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``band_docs`` into batches, run them on ``client`` and gather (mean, std) in order.

    ``on_batch(indices, means, stds)`` is called in the caller's process as each batch returns, so
    results can be written as they arrive (an interrupted run keeps what finished). With
    ``gpu=True`` every task asks for one ``GPU`` resource, for clusters whose workers declare it.
    """
    from distributed import as_completed

    n = len(band_docs)
    mean = np.full(n, np.nan)
    std = np.full(n, np.nan)
    if n == 0:
        return mean, std
    resources = {"GPU": 1} if gpu else None
    futures = {}
    for start in range(0, n, batch_size):
        idx = list(range(start, min(start + batch_size, n)))
        batch = [band_docs[i] for i in idx]
        fut = client.submit(predict_batch, model_name, batch, resources=resources, pure=False)
        futures[fut] = idx
    for fut in as_completed(futures):
        idx = futures[fut]
        m, s = fut.result()
        mean[idx] = m
        std[idx] = s
        if on_batch is not None:
            on_batch(idx, m, s)
    return mean, std
