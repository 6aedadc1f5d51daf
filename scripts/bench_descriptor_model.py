"""Throughput of the descriptor model in one process: bands/s for descriptors + prediction.

    python scripts/bench_descriptor_model.py [--model descriptor-et] [--repeat 2] [--batch 64]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from screener.model.base import load_model
from screener.model.descriptor_model import load_split
from screener.model.descriptors import descriptor_matrix


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="descriptor-et", help="a descriptor model: shipped name or checkpoint path")
    ap.add_argument("--repeat", type=int, default=2, help="passes over the 559 training bands")
    ap.add_argument("--batch", type=int, default=64, help="bands per predict() call")
    args = ap.parse_args()

    t0 = time.perf_counter()
    model = load_model(args.model)
    t_load = time.perf_counter() - t0
    bands, _, _ = load_split("train")
    bands = bands * args.repeat
    t0 = time.perf_counter()
    X = descriptor_matrix(bands)
    t_desc = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(0, len(bands), args.batch):
        model.predict_descriptors(X[i:i + args.batch])
    t_pred = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(0, len(bands), args.batch):
        model.predict(bands[i:i + args.batch])
    t_all = time.perf_counter() - t0
    sizes = np.array([len(b) for b in bands])
    big = bands[int(sizes.argmax())]
    t0 = time.perf_counter()
    for _ in range(10):
        descriptor_matrix([big])
    t_big = (time.perf_counter() - t0) / 10
    n = len(bands)
    print(f"model {model.model_id} (load {t_load:.2f} s); {n} bands, median {int(np.median(sizes))} sites")
    print(f"  descriptors only : {n / t_desc:7.0f} bands/s")
    print(f"  prediction only  : {n / t_pred:7.0f} bands/s (batches of {args.batch})")
    print(f"  end to end       : {n / t_all:7.0f} bands/s")
    print(f"  largest band ({len(big)} sites): descriptors {t_big * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
