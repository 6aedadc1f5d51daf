"""Score a descriptor-model checkpoint under both protocols and draw its figures.

(1) the paper's split: the checkpoint (trained on all 559) scored once on the 60 test bands;
(2) host-grouped 5-fold CV on the training split (same hyper-parameters refitted per fold).
Writes parity + confusion-matrix PNGs for both into --out.

    python scripts/evaluate_descriptor_model.py [--model default] [--out DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from screener.model.base import load_model
from screener.model.descriptor_model import DescriptorModel, evaluate_protocols, load_folds, load_split
from screener.model.descriptors import descriptor_matrix
from screener.model.plots import confusion_plot, parity_plot


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="shipped name or checkpoint path")
    ap.add_argument("--out", type=Path, default=Path("descriptor-model-eval"), help="folder for PNGs")
    ap.add_argument("--json", action="store_true", help="print the scores as JSON")
    ap.add_argument("--threshold", type=float, default=0.65)
    args = ap.parse_args()

    model = load_model(args.model)
    if not isinstance(model, DescriptorModel):
        raise SystemExit(f"{args.model}: {type(model).__name__} is not a DescriptorModel")
    bands, y, _ = load_split("train")
    test_bands, y_test, _ = load_split("test")
    res = evaluate_protocols(model, descriptor_matrix(bands), y, load_folds(),
                             descriptor_matrix(test_bands), y_test, threshold=args.threshold)
    figures = []
    for proto, label in (("test", "paper split (60 test bands)"),
                         ("grouped_cv", "host-grouped 5-fold CV (559)")):
        t, mu, sd = res["predictions"][proto]
        figures.append(str(parity_plot(t, mu, sd, args.out / f"parity_{proto}.png",
                                       f"{model.model_id}: {label}", args.threshold)))
        figures.append(str(confusion_plot(t, mu, args.out / f"confusion_{proto}.png", label,
                                          args.threshold)))
    report = {"model_id": model.model_id, "test": res["test"], "grouped_cv": res["grouped_cv"],
              "figures": figures}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.1%}"

    print(f"model {model.model_id}")
    for proto in ("test", "grouped_cv"):
        s = res[proto]
        extra = (f", accuracy 95% CI {s['accuracy_ci95'][0]:.0%}-{s['accuracy_ci95'][1]:.0%}"
                 if "accuracy_ci95" in s else "")
        print(f"  {proto:10s} n={s['n']:3d}  MAE {s['mae']:.3f} eV  R2 {s['r2']:.3f}  "
              f"accuracy {s['accuracy']:.1%}{extra}  precision(good) {pct(s['precision_good'])}  "
              f"recall(good) {pct(s['recall_good'])}  coverage90 {pct(s['coverage90'])}")
    print("  figures: " + ", ".join(figures))


if __name__ == "__main__":
    main()
