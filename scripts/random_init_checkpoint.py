"""Write an MPT-format checkpoint whose network is freshly initialised (no pre-training), so that
`screener model finetune --pretrained OUT` trains the same recipe from scratch: the control for
what multi-property pre-training is worth, and the way to try a network size that was never
pre-trained. Graph settings (8 neighbours within 8 Angstrom) are copied from the template, so the
graphs are built exactly as for the shipped model.

    python scripts/random_init_checkpoint.py --out random.pt [--hidden 128 --gcn-layers 2]
    screener model finetune --pretrained random.pt --readout band --crop-radius 3 --epochs 16 \
        --patience 5 --anneal-epochs 8 --select last --no-score-test --out RUN
    python scripts/compare_cv.py alignn RUN/alignn.joblib
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from screener.model.pretrain import ModelConfig, build_model, load_checkpoint, save_checkpoint

TEMPLATE = Path(__file__).resolve().parents[1] / "screener" / "data" / "models" / "mpt" / "best.pt"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="checkpoint to write")
    ap.add_argument("--template", type=Path, default=TEMPLATE, help="MPT checkpoint whose config and graph settings are kept")
    ap.add_argument("--alignn-layers", type=int)
    ap.add_argument("--gcn-layers", type=int)
    ap.add_argument("--hidden", type=int, help="hidden features")
    ap.add_argument("--seed", type=int, default=0, help="seed of the initial weights")
    args = ap.parse_args(argv)

    state = load_checkpoint(args.template)
    model = dict(state["config"]["model"])
    for key, value in (("alignn_layers", args.alignn_layers), ("gcn_layers", args.gcn_layers),
                       ("hidden_features", args.hidden)):
        if value is not None:
            model[key] = value
    torch.manual_seed(args.seed)
    net = build_model(ModelConfig(**model))
    state["config"]["model"] = model
    # a fresh network: nothing of the template's training is carried over
    state.update(model=net.state_dict(), optimizer=None, epoch=0, step=0, pos=0, perm=None, history=[],
                 best=float("inf"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(args.out, state)
    print(f"{args.out}: {sum(p.numel() for p in net.parameters()):,} parameters, untrained ({model})")


if __name__ == "__main__":
    main()
