"""Controls for what a removal reveals besides the content it removes (ROAR / KAR / ROAD).

Two ways the class can reach a retrained learner without the removed pixels:
- the removal mask itself carries the class (where an attribution method puts its top pixels
  depends on the class): `mask_data` builds the control, a learner on the binary mask alone;
- the filled image reveals the mask (a flat mean region, imputed values off the data's value grid,
  the smoothness of a linear fill): `detect_removed` trains a small fully convolutional detector to
  find removed pixels in the filled images, and the masks it recovers feed the same learner.

`value_grid` and `dither` keep imputed values on the grid of values the data takes (scikit-learn's
digits: 17 grey levels), so that off-grid values cannot give the removal away.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from reglens.data import TensorData

DETECTOR_DEFAULTS = {"enabled": True, "epochs": 30, "lr": 0.01, "batch_size": 128, "width": 32, "images": 10000}
DETECTOR_STATUS = {"fitted": "training pixel accuracy reached the majority rate (a constant guess reaches it)",
                   "underfit": "training pixel accuracy below the majority rate, or a non-finite loss: the "
                               "optimizer failed, so the point is excluded and counted"}


def value_grid(x_uint8: torch.Tensor) -> torch.Tensor:
    """The distinct values the images take (sorted, float64, pixel units 0..255)."""
    return torch.unique(x_uint8).double()


def dither(values: torch.Tensor, grid: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each value (pixel units) onto one of its two neighbouring grid values, the upper one with
    probability (v - low) / (high - low): unbiased (E = v) and never more than one grid step from v.
    Values beyond the grid's ends go to the end. Returns float64 grid values."""
    grid = grid.to(values.device, torch.float64)
    v = values.double().clamp(float(grid[0]), float(grid[-1]))
    if len(grid) == 1:
        return torch.full_like(v, float(grid[0]))
    high = torch.searchsorted(grid, v.contiguous()).clamp(1, len(grid) - 1)
    low_value, high_value = grid[high - 1], grid[high]
    p = ((v - low_value) / (high_value - low_value)).clamp(0, 1)
    up = torch.rand(v.shape, generator=generator, device=v.device, dtype=torch.float64) < p
    return torch.where(up, high_value, low_value)


def nearest(values: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Each value (pixel units) at its nearest grid value (float64)."""
    grid = grid.to(values.device, torch.float64)
    return grid[(values.double().unsqueeze(-1) - grid).abs().argmin(-1)]


def mask_images(removed: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, H, W) bool -> uint8 images (N, C, H, W): 255 where removed, 0 where kept, every channel."""
    return (removed.to(torch.uint8) * 255).unsqueeze(1).expand(-1, channels, -1, -1).contiguous()


def mask_data(data: TensorData, removed_train: torch.Tensor, removed_test: torch.Tensor, name: str) -> TensorData:
    """The dataset whose images are the given removal masks, nothing of the image: a learner that
    beats chance on it reads the class from where pixels were removed."""
    c = data.channels
    return TensorData(f"{data.name}-{name}", mask_images(removed_train, c), data.y_train, mask_images(removed_test, c),
                      data.y_test, data.classes, [0.5] * c, [0.5] * c)


class MaskDetector(nn.Module):
    """Per pixel, the logit that it was removed, from its 5x5 neighbourhood of the filled image."""

    def __init__(self, channels: int, mean, std, width: int = 32):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1).clamp_min(1e-3))
        self.net = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 1, 1))

    def forward(self, x_uint8: torch.Tensor) -> torch.Tensor:
        return self.net((x_uint8.float() / 255.0 - self.mean) / self.std).squeeze(1)


def detector_forward_flops(channels: int, size: int, width: int) -> int:
    """2 x the multiply-adds of MaskDetector's convolutions on one image."""
    return 2 * size * size * (9 * channels * width + 9 * width * width + width)


def detector_flops(channels: int, size: int, cfg: dict, n_train: int, n_test: int) -> float:
    """FLOPs of one detect_removed call: two detectors, each trained (forward and backward, 3 forward
    passes' worth) for cfg.epochs on at most cfg.images / 2 images, then predicting the other half, its
    own half (its fit) and the test split."""
    forward = detector_forward_flops(channels, size, cfg["width"])
    fit = min(max(1, cfg["images"] // 2), n_train // 2)
    return 2 * forward * (3 * cfg["epochs"] * fit + fit + n_train - n_train // 2 + n_test)


def _fit_detector(x, removed, mean, std, cfg: dict, seed: int) -> tuple[MaskDetector, float, bool]:
    """A detector trained on (x, removed); its final training pixel accuracy, and whether every loss
    was finite."""
    gen = torch.Generator(device=x.device).manual_seed(seed)
    with torch.random.fork_rng(devices=[]):                # seeded weights; the caller's RNG state untouched
        torch.manual_seed(seed)
        detector = MaskDetector(x.shape[1], mean, std, cfg["width"]).to(x.device)
    opt = torch.optim.Adam(detector.parameters(), lr=cfg["lr"])
    target = removed.float()
    finite = True
    for _ in range(cfg["epochs"]):
        order = torch.randperm(len(x), generator=gen, device=x.device)
        bad = torch.zeros((), dtype=torch.bool, device=x.device)    # read once per epoch: no sync per step
        for i in range(0, len(x), cfg["batch_size"]):
            batch = order[i:i + cfg["batch_size"]]
            loss = F.binary_cross_entropy_with_logits(detector(x[batch]), target[batch])
            bad |= ~torch.isfinite(loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if bool(bad):
            finite = False
            break
    detector.eval()
    correct = (_logits(detector, x, cfg["batch_size"]) > 0) == removed
    return detector, float(correct.float().mean()), finite


@torch.no_grad()
def _logits(detector: MaskDetector, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([detector(x[i:i + 4 * batch_size]) for i in range(0, len(x), 4 * batch_size)])


def _majority(removed: torch.Tensor) -> float:
    share = float(removed.float().mean())
    return max(share, 1 - share)


def detect_removed(x_train, removed_train, x_test, removed_test, mean, std, cfg: dict | None = None,
                   seed: int = 0) -> dict:
    """How well the filled images reveal their removal masks. Cross-fitted: the training images are
    split in two halves (a seeded permutation); a detector trained on each half (at most cfg.images / 2
    images) recovers the masks of the other half, and the mean of both detectors' logits recovers the
    test masks. Returns the test pixel accuracy, the majority rate a constant guess reaches, the
    balanced accuracy (mean of the removed and kept pixels' hit rates; 0.5 = nothing found), the
    status (DETECTOR_STATUS), and the recovered masks of both splits."""
    cfg = {**DETECTOR_DEFAULTS, **(cfg or {})}
    gen = torch.Generator(device=x_train.device).manual_seed(seed)
    order = torch.randperm(len(x_train), generator=gen, device=x_train.device)
    halves = order[: len(order) // 2], order[len(order) // 2:]
    cap = max(1, cfg["images"] // 2)
    recovered_train = torch.zeros_like(removed_train)
    test_logits = torch.zeros(removed_test.shape, device=x_test.device)
    fitted = True
    for k, (own, other) in enumerate((halves, halves[::-1])):
        fit = own[:cap]
        detector, train_acc, finite = _fit_detector(x_train[fit], removed_train[fit], mean, std, cfg, seed * 2 + k)
        fitted &= finite and train_acc >= _majority(removed_train[fit]) - 0.01
        recovered_train[other] = _logits(detector, x_train[other], cfg["batch_size"]) > 0
        test_logits += _logits(detector, x_test, cfg["batch_size"])
    recovered_test = test_logits > 0
    hit = recovered_test == removed_test
    rates = [float(hit[removed_test == side].float().mean()) for side in (True, False)
             if bool((removed_test == side).any())]                # a side with no pixels has no hit rate
    balanced = sum(rates) / len(rates)
    return {"detector_acc": float(hit.float().mean()), "detector_base": _majority(removed_test),
            "detector_balanced_acc": balanced, "detector_status": "fitted" if fitted else "underfit",
            "recovered_train": recovered_train, "recovered_test": recovered_test}
