#!/usr/bin/env python
"""Graph-building and network cost on the same bands: screener's builder + alignn's pure-torch
ALIGNN, and (when dgl imports) alignn's jarvis/dgl builder + dgl ALIGNN. Prints one JSON document.

    python scripts/bench_graphs.py --n 100            # pure-torch path only
    /tmp/dglvenv/bin/python scripts/bench_graphs.py --dgl   # both (dgl 2.1 + torchdata 0.9 venv)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types

import numpy as np
import torch


def _timeit(fn, reps: int = 1) -> float:
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def _train_and_infer(model, batches, targets) -> tuple[float, float]:
    """(seconds per train step, bands/s of inference) over the given pre-built batches."""
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    model.train()
    times = []
    for inp, y in zip(batches, targets):
        t = time.perf_counter()
        out = model(inp)["out"].reshape(-1)
        loss = (out - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    model.eval()
    n = sum(len(y) for y in targets)
    with torch.no_grad():
        t = time.perf_counter()
        for inp in batches:
            model(inp)
        infer = n / (time.perf_counter() - t)
    return float(np.median(times[1:] if len(times) > 1 else times)), infer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100, help="bands (first N of the train split)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--dgl", action="store_true", help="also measure the dgl path")
    ap.add_argument("--no-malloc-tuning", action="store_true")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (2 is several times slower when the other core is busy)")
    a = ap.parse_args(argv)
    from screener.model.graphs import GraphSettings, batch_graphs, build_graph
    from screener.model.pretrain import ModelConfig, build_model, tune_allocator
    from screener.sources.dataset import load_bands

    torch.set_num_threads(a.threads)
    report: dict = {"threads": a.threads, "malloc_tuned": False if a.no_malloc_tuning else tune_allocator()}
    torch.manual_seed(0)
    bands = load_bands("train")[: a.n]
    report["n_bands"] = len(bands)
    report["mean_sites"] = float(np.mean([len(b.band) for b in bands]))
    y = torch.tensor([b.target for b in bands], dtype=torch.float32)
    chunks = [range(i, min(i + a.batch, len(bands))) for i in range(0, len(bands), a.batch)]
    for k in (12, 8):
        s = GraphSettings(max_neighbors=k)
        t = time.perf_counter()
        graphs = [build_graph(b.band, s, n_band_sites=5) for b in bands]
        build_ms = (time.perf_counter() - t) / len(bands) * 1e3
        batches = [batch_graphs([graphs[i] for i in c]).model_input() for c in chunks]
        model = build_model(ModelConfig(output_features=1))
        step, infer = _train_and_infer(model, batches, [y[list(c)] for c in chunks])
        report[f"pure_k{k}"] = {
            "build_ms_per_band": round(build_ms, 2),
            "triplets_per_atom": round(float(np.mean([g.num_triplets / g.num_nodes for g in graphs])), 1),
            "train_step_s": round(step, 3), "infer_bands_per_s_prebuilt": round(infer, 1),
            "end_to_end_bands_per_s": round(1.0 / (build_ms / 1e3 + 1.0 / infer), 1)}
    if a.dgl:
        sys.modules.setdefault("dgl.graphbolt", types.ModuleType("dgl.graphbolt"))  # no lib for torch 2.13
        import dgl
        from alignn.graphs import Graph
        from alignn.models.alignn_atomwise import ALIGNNAtomWise, ALIGNNAtomWiseConfig
        from jarvis.core.atoms import Atoms

        report["dgl_version"] = dgl.__version__
        for k in (12, 8):
            t = time.perf_counter()
            pairs = []
            for b in bands:
                atoms = Atoms(lattice_mat=b.band.lattice.matrix, coords=b.band.frac_coords,
                              elements=[sp.symbol for sp in b.band.species], cartesian=False)
                pairs.append(Graph.atom_dgl_multigraph(atoms, cutoff=8.0, max_neighbors=k,
                                                       atom_features="cgcnn", use_canonize=True))
            build_ms = (time.perf_counter() - t) / len(bands) * 1e3
            batches = []
            for c in chunks:
                g = dgl.batch([pairs[i][0] for i in c])
                lg = dgl.batch([pairs[i][1] for i in c])
                batches.append((g, lg, None))
            conf = ALIGNNAtomWiseConfig(name="alignn_atomwise", alignn_layers=2, gcn_layers=1,
                                        atom_input_features=92, hidden_features=64,
                                        embedding_features=64, output_features=1,
                                        gradwise_weight=0.0, calculate_gradient=False,
                                        energy_mult_natoms=False, use_penalty=False)
            model = ALIGNNAtomWise(conf)
            step, infer = _train_and_infer(model, batches, [y[list(c)] for c in chunks])
            report[f"dgl_k{k}"] = {
                "build_ms_per_band": round(build_ms, 2),
                "triplets_per_atom": round(float(np.mean([p[1].num_edges() / p[0].num_nodes()
                                                          for p in pairs])), 1),
                "train_step_s": round(step, 3), "infer_bands_per_s_prebuilt": round(infer, 1),
                "end_to_end_bands_per_s": round(1.0 / (build_ms / 1e3 + 1.0 / infer), 1)}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
