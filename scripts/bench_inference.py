"""End-to-end inference throughput: stored band documents in, barriers out.

Measures the shipped (or given) model on the dataset's bands, as the engine runs it: in one
process, and through the engine's Dask path (a LocalCluster of --workers processes, batches of
--batch bands, the model loaded once per worker; cluster start-up reported separately).

    python scripts/bench_inference.py [--model default] [--repeat 4] [--workers 2] [--batch 64]
        [--bands all|test] [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from screener.bands import band_to_doc
from screener.inference import dask_client, predict_bands, worker_model
from screener.sources.dataset import load_bands


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--repeat", type=int, default=4, help="passes over the 619 dataset bands")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--bands", choices=["all", "test"], default="all",
                    help="all 619 dataset bands, or the 60 test bands (for the slow graph models)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the single process")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)  # Dask workers get 1 thread each (OMP_NUM_THREADS=1)
    splits = ("test",) if args.bands == "test" else ("train", "test")
    docs = [band_to_doc(b.band) for split in splits for b in load_bands(split)]
    docs = docs * args.repeat
    n = len(docs)

    t0 = time.perf_counter()
    model = worker_model(args.model)
    t_load = time.perf_counter() - t0
    from screener.inference import predict_batch

    t0 = time.perf_counter()
    for i in range(0, n, args.batch):
        predict_batch(args.model, docs[i : i + args.batch])
    single = n / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    with dask_client(None, args.workers) as client:
        t_start = time.perf_counter() - t0
        client.run(worker_model, args.model)  # load once per worker, outside the timing
        t1 = time.perf_counter()
        predict_bands(client, args.model, docs, batch_size=args.batch)
        dask = n / (time.perf_counter() - t1)

    result = {
        "model_id": model.model_id,
        "bands": n,
        "bands_per_s": round(max(single, dask), 1),
        "single_process_bands_per_s": round(single, 1),
        "dask_bands_per_s": round(dask, 1),
        "dask_workers": args.workers,
        "batch": args.batch,
        "model_load_s": round(t_load, 2),
        "cluster_start_s": round(t_start, 2),
    }
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        for k, v in result.items():
            print(f"{k:28s} {v}")


if __name__ == "__main__":
    main()
