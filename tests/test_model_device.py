"""Device choice: auto falls back to the CPU; asking for a GPU that is not there is one clear line."""

from __future__ import annotations

import pytest
import torch

from screener.model.device import resolve_device


def test_auto_and_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device("CPU") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the no-GPU error cannot happen")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="no CUDA GPU") as exc:
        resolve_device("cuda")
    assert "\n" not in str(exc.value)


def test_unknown_device():
    with pytest.raises(ValueError, match="unknown"):
        resolve_device("tpu")
