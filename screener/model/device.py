"""Where the networks run: "auto" takes CUDA when torch sees a GPU, else the CPU.

Why one function: training, fine-tuning and inference must agree on the rule, and a user who asks
for a GPU that is not there gets one clear line instead of a CUDA traceback.
"""

from __future__ import annotations

import torch


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """torch.device for "auto" (cuda if available, else cpu), "cpu", "cuda" or "cuda:N"."""
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r}: torch sees no CUDA GPU here (use --device auto or cpu)")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s)")
        return dev
    raise ValueError(f"device {spec!r}: unknown; use auto, cpu, cuda or cuda:N")
