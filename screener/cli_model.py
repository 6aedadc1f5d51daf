"""`screener model ...`: evaluate, predict with, pre-train and fine-tune the barrier models.

Why a separate app: the model commands pull in torch/sklearn only when used, and the main CLI
registers this app as a sub-command. Every bad input costs one line on stderr.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from screener.cli_common import fail as _fail

model_app = typer.Typer(help="Evaluate, use, pre-train and fine-tune barrier models.",
                        no_args_is_help=True)

ModelOpt = Annotated[str, typer.Option("--model", help="Shipped model name, 'default' or checkpoint path.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout, nothing else.")]
SCORE_KEYS = ("n", "mae", "r2", "accuracy", "precision_good", "recall_good", "coverage90")


def _load(model: str):
    from screener.model.base import load_model

    try:
        m = load_model(model)
    except ValueError as exc:
        _fail(f"--model {model}: {exc}", 2)
    if getattr(m, "cache", False) is None and hasattr(m, "graph_settings"):  # ALIGNN: reuse graphs
        from screener.config import screener_home
        from screener.model.graphs import GraphCache

        m.cache = GraphCache(screener_home() / "graphs", m.graph_settings)
    return m


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v:.1%}" if pct else f"{v:.3f}"


# ---------------------------------------------------------------------------------------------
# evaluate

def evaluation(model: Any, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, mean, std) of a model under one protocol: "test" = the 60 test bands; "cv" = the
    host-grouped 5-fold CV of the training split (descriptor models are refitted per fold, an
    ALIGNN ensemble uses its stored out-of-fold predictions)."""
    from screener.model.descriptor_model import (
        DescriptorModel,
        calibrated_std,
        load_folds,
        load_split,
    )

    if split == "test":
        bands, y, _ = load_split("test")
        mu, sd = model.predict(bands)
        return y, np.asarray(mu), np.asarray(sd)
    if split != "cv":
        raise ValueError(f"--split {split}: unknown split; use test or cv")
    if isinstance(model, DescriptorModel):
        from screener.model.descriptors import descriptor_matrix

        bands, y, _ = load_split("train")
        X = descriptor_matrix(bands)
        mu, raw = model.out_of_fold(X[:, model._cols], y, load_folds())
        return y, mu, calibrated_std(raw, model.std_scale, model.std_floor)
    oof = getattr(model, "info", {}).get("oof")
    if not oof:
        raise ValueError(f"model {model.model_id}: no out-of-fold predictions stored, cannot do --split cv")
    return np.asarray(oof["y"]), np.asarray(oof["mean"]), np.asarray(oof["std"])


def train_oof(model: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, mean, std) out-of-fold over ALL training bands in split order (NaN where a model has
    no prediction for a band, e.g. an ALIGNN ensemble trained on fewer folds)."""
    from screener.model.descriptor_model import load_split

    _, y, meta = load_split("train")
    ys, mu, sd = evaluation(model, "cv")
    if len(mu) == len(y) and "sys_name" not in getattr(model, "info", {}).get("oof", {}):
        return y, mu, sd
    names = model.info["oof"]["sys_name"]
    where = {m["sys_name"]: i for i, m in enumerate(meta)}
    full_mu, full_sd = np.full(len(y), np.nan), np.full(len(y), np.nan)
    for n, a, b in zip(names, mu, sd):
        full_mu[where[n]], full_sd[where[n]] = a, b
    return y, full_mu, full_sd


@model_app.command("evaluate")
def evaluate_cmd(
    model: ModelOpt = "default",
    split: Annotated[str, typer.Option("--split", help="test (the 60 test bands) or cv (host-grouped 5-fold).")] = "test",
    as_json: JsonOpt = False,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for the parity/confusion PNGs.")] = None,
) -> None:
    """Score a model: MAE, R2, accuracy (95% CI), precision/recall of good conductors, coverage90."""
    from screener.config import DEFAULT_THRESHOLD_EV, screener_home
    from screener.model.metrics import bootstrap_accuracy_ci, score
    from screener.model.plots import confusion_plot, parity_plot

    if split not in ("test", "cv"):
        _fail(f"--split {split}: unknown split; use test or cv", 2)
    m = _load(model)
    try:
        y, mu, sd = evaluation(m, split)
    except ValueError as exc:
        _fail(str(exc))
    s = score(y, mu, sd)
    lo, hi = bootstrap_accuracy_ci(y, mu)
    out_dir = out or screener_home() / "evaluate" / m.name
    title = f"{m.model_id} ({split})"
    parity = parity_plot(y, mu, sd, Path(out_dir) / f"parity-{split}.png", title=title)
    confusion = confusion_plot(y, mu, Path(out_dir) / f"confusion-{split}.png", title=m.name)
    if as_json:
        sys.stdout.write(json.dumps({k: s[k] for k in SCORE_KEYS}) + "\n")
        return
    typer.echo(f"{m.model_id} on {'the test split' if split == 'test' else 'host-grouped 5-fold CV'}"
               f" (n={s['n']}, good = E_m <= {DEFAULT_THRESHOLD_EV} eV)")
    typer.echo(f"  MAE        {s['mae']:.3f} eV")
    typer.echo(f"  R2         {s['r2']:.3f}")
    typer.echo(f"  accuracy   {s['accuracy']:.1%} (95% CI {lo:.1%}-{hi:.1%})")
    typer.echo(f"  precision  {_fmt(s['precision_good'], True)}  recall {_fmt(s['recall_good'], True)}"
               " (good conductors)")
    typer.echo(f"  coverage90 {_fmt(s['coverage90'], True)}")
    typer.echo(f"  plots: {parity}, {confusion}")


# ---------------------------------------------------------------------------------------------
# predict

def _band_structures(path: Path) -> list[tuple[str, Any]]:
    """(label, Structure) of every band in a file, sites in file order (the hop must stay first)."""
    from pymatgen.core import Structure

    from screener.sources.dataset import jarvis_to_structure
    from screener.sources.files import _kind, _read_text

    text = _read_text(path)
    if _kind(path, text) != "json":
        try:
            with warnings.catch_warnings():  # pymatgen's parser chatter would bury the one-line error
                warnings.simplefilter("ignore")
                return [(str(path), Structure.from_str(text, fmt=_kind(path, text)))]
        except Exception as exc:  # noqa: BLE001 - pymatgen raises many types for bad files
            raise ValueError(f"{path}: unreadable structure ({' '.join(str(exc).split()) or type(exc).__name__})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path}: invalid JSON ({exc})") from None
    items = data if isinstance(data, list) else [data]
    out = []
    for i, item in enumerate(items):
        label = str(path) if not isinstance(data, list) else f"{path} [{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{label}: expected a JSON object, got {type(item).__name__}")  # noqa: TRY004
        if isinstance(data, list) and "sys_name" in item:
            label = f"{path} [{item['sys_name']}]"
        try:
            if "atoms" in item:
                s = jarvis_to_structure(item["atoms"])
            elif "lattice_mat" in item:
                s = jarvis_to_structure(item)
            elif "structure" in item:
                s = Structure.from_dict(item["structure"])
            else:
                s = Structure.from_dict(item)
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"{label}: not a structure ({' '.join(str(exc).split()) or type(exc).__name__})") from None
        out.append((label, s))
    return out


def read_bands(paths: list[Path]) -> tuple[list[tuple[str, Any]], list[str]]:
    """Bands from files (CIF, POSCAR, pymatgen or JARVIS/dataset JSON) and one error line per bad
    file/entry. A band's first five sites must be one element: the ion at the initial site, three
    images, the final site."""
    bands, errors = [], []
    for p in paths:
        try:
            if not Path(p).is_file():
                raise ValueError(f"{p}: no such file")
            for label, s in _band_structures(Path(p)):
                if len(s) < 6:
                    errors.append(f"{label}: {len(s)} sites; a band needs 5 hop sites plus the host")
                elif len({site.specie.symbol for site in list(s)[:5]}) != 1:
                    errors.append(f"{label}: the first five sites are not one ion's hop "
                                  f"({', '.join(site.specie.symbol for site in list(s)[:5])})")
                else:
                    bands.append((label, s))
        except Exception as exc:  # noqa: BLE001 - one line per bad file, whatever went wrong
            msg = " ".join(str(exc).split()) or type(exc).__name__
            errors.append(msg if str(p) in msg else f"{p}: {msg}")
    return bands, errors


@model_app.command("predict")
def predict_cmd(
    files: Annotated[list[Path], typer.Argument(help="Band structures: first five sites are the hop.")],
    model: ModelOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """E_m (eV) and its standard deviation for bands read from files."""
    from screener.config import DEFAULT_THRESHOLD_EV

    bands, errors = read_bands(files)
    for e in errors:
        typer.echo(f"error: {e}", err=True)
    rows = []
    if bands:
        m = _load(model)
        mu, sd = m.predict([s for _, s in bands])
        rows = [{"band": label, "ion": s[0].specie.symbol, "em_ev": float(a), "std_ev": float(b),
                 "good": bool(a <= DEFAULT_THRESHOLD_EV)} for (label, s), a, b in zip(bands, mu, sd)]
    if as_json:
        sys.stdout.write(json.dumps({"model_id": m.model_id if bands else None, "predictions": rows,
                                     "errors": errors}) + "\n")
    else:
        for r in rows:
            typer.echo(f"{r['band']}: {r['ion']} E_m = {r['em_ev']:.3f} +- {r['std_ev']:.3f} eV"
                       f"{'  (good conductor)' if r['good'] else ''}")
    if errors:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------
# training

@model_app.command("pretrain")
def pretrain_cmd(
    budget_minutes: Annotated[float, typer.Option("--budget-minutes", help="Stop (with a checkpoint) after this long.")] = 60.0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in --out.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Checkpoint/log folder (default $SCREENER_HOME/training/mpt).")] = None,
    epochs: Annotated[int, typer.Option("--epochs")] = 100,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
    lr: Annotated[float, typer.Option("--lr")] = 1e-3,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first N structures.")] = None,
    alignn_layers: Annotated[int, typer.Option("--alignn-layers")] = 2,
    gcn_layers: Annotated[int, typer.Option("--gcn-layers")] = 1,
    hidden: Annotated[int, typer.Option("--hidden", help="Hidden and embedding features.")] = 64,
    threads: Annotated[int, typer.Option("--threads", help="torch threads.")] = 1,
    device: Annotated[str, typer.Option("--device", help="auto (CUDA if torch sees a GPU, else CPU), cpu, cuda, cuda:N.")] = "auto",
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Multi-property pre-training (seven heads, masked L1) of the ALIGNN; resumable."""
    from screener.model.pretrain import ModelConfig, PretrainConfig, pretrain

    cfg = PretrainConfig(out_dir=str(out or ""), budget_minutes=budget_minutes, epochs=epochs,
                         batch_size=batch_size, lr=lr, limit=limit, threads=threads, device=device,
                         model=ModelConfig(alignn_layers=alignn_layers, gcn_layers=gcn_layers,
                                           hidden_features=hidden, embedding_features=hidden))
    try:
        summary = pretrain(cfg, resume=resume, progress=progress)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(json.dumps(summary, default=str))


@model_app.command("finetune")
def finetune_cmd(
    pretrained: Annotated[Path | None, typer.Option("--pretrained", help="MPT checkpoint (default $SCREENER_HOME/training/mpt/best.pt).")] = None,
    budget_minutes: Annotated[float, typer.Option("--budget-minutes", help="Stop after this long (finished epochs kept).")] = 150.0,
    resume: Annotated[bool, typer.Option("--resume", help="Skip finished members, continue the unfinished one.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Folder (default $SCREENER_HOME/training/finetune).")] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Most epochs per member.")] = 40,
    patience: Annotated[int, typer.Option("--patience", help="Early stop after N epochs without a better validation MAE.")] = 10,
    anneal_epochs: Annotated[int, typer.Option("--anneal-epochs", help="Then N epochs with the lr cosine-annealed to --lr-min.")] = 0,
    lr_min: Annotated[float, typer.Option("--lr-min", help="Learning rate at the end of the annealing.")] = 1e-5,
    swa_epochs: Annotated[int, typer.Option("--swa-epochs", help="Then N epochs at --swa-lr whose weights are averaged (SWA; --select last keeps the average).")] = 0,
    swa_lr: Annotated[float, typer.Option("--swa-lr", help="Learning rate while weights are averaged.")] = 2e-4,
    select: Annotated[str, typer.Option("--select", help="Weights a member keeps: best (lowest validation MAE on its fold) or last (final epoch, or the SWA average; CV free of selection).")] = "best",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the members' output layers and shuffling (another seed: another ensemble to merge).")] = 0,
    members: Annotated[int | None, typer.Option("--members", help="Train members for the first N folds only.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 16,
    lr: Annotated[float, typer.Option("--lr")] = 5e-4,
    log_target: Annotated[bool, typer.Option("--log-target/--ev-target", help="Fit log(E_m + 0.05) or E_m.")] = True,
    readout: Annotated[str, typer.Option("--readout", help="mean (over all atoms, as alignn) or band (+ the hop's five sites).")] = "mean",
    crop_radius: Annotated[float, typer.Option("--crop-radius", help="Graph only the atoms within this of the hop's five sites (Angstrom; 0 = the whole band).")] = 0.0,
    hop_descriptors: Annotated[bool, typer.Option("--hop-descriptors/--no-hop-descriptors", help="Band readout: feed the hop descriptors to the output layer beside the graph.")] = False,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first N training bands.")] = None,
    name: Annotated[str, typer.Option("--name", help="Model name.")] = "alignn",
    threads: Annotated[int, typer.Option("--threads", help="torch threads.")] = 1,
    device: Annotated[str, typer.Option("--device", help="auto (CUDA if torch sees a GPU, else CPU), cpu, cuda, cuda:N.")] = "auto",
    score_test: Annotated[bool, typer.Option("--score-test/--no-score-test", help="Score the finished ensemble on the 60 test bands (off for tries still being chosen).")] = True,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Fine-tune one ALIGNN member per host-grouped fold from MPT weights; saves the ensemble."""
    from screener.model.finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig(pretrained=str(pretrained or ""), out_dir=str(out or ""), epochs=epochs,
                         patience=patience, anneal_epochs=anneal_epochs, lr_min=lr_min,
                         swa_epochs=swa_epochs, swa_lr=swa_lr, select=select, seed=seed,
                         members=members, batch_size=batch_size, lr=lr,
                         log_target=log_target, readout=readout, crop_radius=crop_radius, hop_descriptors=hop_descriptors, limit=limit,
                         budget_minutes=budget_minutes,
                         threads=threads, name=name, device=device, score_test=score_test)
    try:
        summary = finetune(cfg, resume=resume, progress=progress)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(json.dumps(summary, default=str))


@model_app.command("merge")
def merge_cmd(
    models: Annotated[list[str], typer.Option("--model", help="ALIGNN ensembles (checkpoint paths or shipped names) trained on the same folds, e.g. with other --seed.")],
    out: Annotated[Path, typer.Option("--out", help="Checkpoint file to write (.joblib); metrics go beside it.")],
    name: Annotated[str, typer.Option("--name", help="Model name.")] = "alignn",
    score_test: Annotated[bool, typer.Option("--score-test/--no-score-test", help="Score the merged ensemble on the 60 test bands (off for tries still being chosen).")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Merge fine-tuning runs into one ensemble: out-of-fold predictions averaged, spread re-calibrated."""
    from screener.model.alignn_model import AlignnModel
    from screener.model.finetune import merge_ensembles, merged_metrics

    loaded = [_load(m) for m in models]
    if bad := [m for m, x in zip(models, loaded) if not isinstance(x, AlignnModel)]:
        _fail(f"--model {bad[0]}: not an ALIGNN ensemble", 2)
    try:
        model = merge_ensembles(loaded, name=name)
    except ValueError as exc:
        _fail(str(exc), 2)
    model.save(out)
    metrics = merged_metrics(model, score_test=score_test)
    Path(out).with_suffix(".metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    summary = {"model": str(out), "model_id": model.model_id, "members": len(model.networks),
               "test": metrics["test"], "grouped_cv": metrics["grouped_cv"]}
    typer.echo(json.dumps(summary) if as_json else json.dumps(summary, indent=1))


@model_app.command("blend")
def blend_cmd(
    components: Annotated[list[str], typer.Option("--component", help="Two models (shipped names or checkpoint paths), in order.")],
    out: Annotated[Path, typer.Option("--out", help="Checkpoint file to write (.joblib).")],
    name: Annotated[str, typer.Option("--name", help="Model name.")] = "blend",
    objective: Annotated[str, typer.Option("--objective", help="mse (weights the high barriers R2 is made of) or mae.")] = "mse",
    gate: Annotated[bool, typer.Option("--gate/--no-gate", help="Let the weight change at a gate on the second model's prediction.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Blend two models with the gate and weights that minimise their host-grouped out-of-fold
    MSE (or MAE) on the training split; the stored CV score is nested (each fold's gate and
    weights from the other folds)."""
    from screener.model.blend import GATE_GRID, OBJECTIVES, BlendModel
    from screener.model.descriptor_model import load_folds
    from screener.model.metrics import score, score_with_ci

    if len(components) != 2:
        _fail(f"--component: give exactly two models, got {len(components)}", 2)
    if objective not in OBJECTIVES:
        _fail(f"--objective: {objective!r} is not one of {', '.join(OBJECTIVES)}", 2)
    models = [_load(c) for c in components]
    try:
        oofs = [train_oof(m) for m in models]
    except ValueError as exc:
        _fail(str(exc))
    y = oofs[0][0]
    keep = np.isfinite(oofs[0][1]) & np.isfinite(oofs[1][1])
    if keep.sum() < 50:
        _fail(f"--component: only {int(keep.sum())} training bands have out-of-fold predictions of both models")
    means = np.array([o[1][keep] for o in oofs])
    stds = np.array([o[2][keep] for o in oofs])
    info = {"components": {c: score(y[keep], means[i], stds[i]) for i, c in enumerate(components)},
            "n_oof": int(keep.sum())}
    model = BlendModel.fit_on_oof(components, y[keep], means, stds, load_folds()[keep], name=name,
                                  objective=objective, gates=GATE_GRID if gate else (None,),
                                  info=info, models=models)
    model.save(out)
    oof = model.info["oof"]
    # the test split is scored once, after the weight is fixed (it chose nothing)
    test = score_with_ci(*evaluation(model, "test"))
    summary = {"model": str(out), "model_id": model.model_id, "class": "screener.model.blend:BlendModel",
               "components": list(components), "component_ids": model.component_ids,
               "weights": model.weights.tolist(), "gate_ev": model.gate_ev,
               "weights_above": model.weights_above.tolist(), "objective": objective,
               "fold_weights": oof["fold_weights"], "fold_rules": oof["fold_rules"],
               "std_scale": model.std_scale, "test": test,
               "grouped_cv": score(oof["y"], oof["mean"], oof["std"]),
               "components_cv": info["components"],
               "selection": "gate and weights chosen on host-grouped out-of-fold predictions of bands-train.json; "
                            "grouped_cv is nested (each fold's gate and weights from the other four folds); "
                            "bands-test.json scored once"}
    Path(out).with_suffix(".metrics.json").write_text(json.dumps(summary, indent=1) + "\n")
    typer.echo(json.dumps(summary) if as_json else json.dumps(summary, indent=1))
