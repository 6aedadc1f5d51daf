#!/usr/bin/env python
"""Multi-property pre-training of the ALIGNN on the shipped 28k-structure MP set (resumable).

Example (background, ~45 min):
    nohup python scripts/pretrain_mpt.py --budget-minutes 45 --resume --no-progress \
        > $SCREENER_HOME/training/mpt/stdout.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import sys

from screener.model.pretrain import ModelConfig, PretrainConfig, default_out_dir, pretrain


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(default_out_dir()), help="checkpoint + log folder")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if present")
    ap.add_argument("--budget-minutes", type=float, default=60.0)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--checkpoint-minutes", type=float, default=5.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--alignn-layers", type=int, default=2)
    ap.add_argument("--gcn-layers", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--max-neighbors", type=int, default=8)
    ap.add_argument("--cutoff", type=float, default=8.0)
    ap.add_argument("--limit", type=int, default=None, help="first N structures only")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: see PretrainConfig)")
    ap.add_argument("--graph-cache", default=None, help="graph cache folder")
    ap.add_argument("--no-malloc-tuning", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    cfg = PretrainConfig(
        out_dir=a.out, budget_minutes=a.budget_minutes, epochs=a.epochs,
        checkpoint_minutes=a.checkpoint_minutes, batch_size=a.batch_size, lr=a.lr,
        model=ModelConfig(alignn_layers=a.alignn_layers, gcn_layers=a.gcn_layers,
                          hidden_features=a.hidden, embedding_features=a.hidden),
        max_neighbors=a.max_neighbors, cutoff=a.cutoff, limit=a.limit, threads=a.threads,
        graph_cache=a.graph_cache, tune_malloc=not a.no_malloc_tuning, seed=a.seed)
    summary = pretrain(cfg, resume=a.resume, progress=not a.no_progress)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
