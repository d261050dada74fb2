"""Device resolution and the per-process backend settings that follow from a run's configuration."""
from __future__ import annotations

import torch


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """'auto' -> CUDA when present, else the CPU; 'cuda' without a GPU is an error naming the fix."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(name)


def set_threads(threads: int | None) -> None:
    """Fix torch's intra-op thread count (CPU float sums depend on it)."""
    if threads:
        torch.set_num_threads(int(threads))


def set_determinism(deterministic: bool) -> None:
    """cuDNN: deterministic algorithms and no autotuning, or autotuning for speed."""
    torch.backends.cudnn.deterministic = bool(deterministic)
    torch.backends.cudnn.benchmark = not deterministic


def set_tf32(enabled: bool) -> None:
    """TF32 tensor cores for float32 matmuls and convolutions on CUDA (no effect on the CPU)."""
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    torch.backends.cudnn.allow_tf32 = bool(enabled)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
