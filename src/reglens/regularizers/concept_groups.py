"""Concept Group Learning's activation regularizers (Varshneya et al., IJCAI 2021, "Learning
Interpretable Concept Groups in CNNs"), to combine with the general block norm (`group_norm`, their
Section 3.3) in a named variant, e.g. `cgl: [{kind: group_norm}, {kind: group_activation},
{kind: group_spatial}]`.

Both act on the pre-activation maps of every convolution inside the model's named layers, taken from
the training step's own forward pass by forward hooks (no second forward). A convolution's filters are
split into `groups` contiguous groups, as `group_norm` splits them.

- Soft receptive field (Section 3.1, Eq. 1): psi = sigmoid(P1 * a / S + P2), a the pre-activation map,
  S its standard deviation over the minibatch (batch and positions). After batch norm (Eq. 4):
  psi = sigmoid(P1 * tau + P2), tau = a_hat + beta / gamma (a_hat the standardized pre-activation),
  i.e. the batch-norm output divided by gamma. The paper learns P1 and P2; learned from these losses
  alone they reach the trivial minimum P1 = 0 (psi constant, every distance 0), so here they are
  fixed settings.
- Distance (Eq. 2): D(psi1, psi2) = 2 ||psi1 - psi2||_1 / (||psi1||_1 + ||psi2||_1 + ||psi1 - psi2||_1),
  a soft 1 - IoU, the L1 norms over the minibatch and the positions.
- Group activation loss L_g (Eq. 5, with the paper's lambda_2 = 0: no comparison across layers):
  sum over layers l and groups g of (1/r) sum over (i, j) in R of D(psi_ig, psi_jg), R a random set of
  r = 3 N_g distinct pairs of {1..N_g} x {1..N_g} (at most N_g^2), drawn anew every step.
- Spatial loss L_s (Section 3.2, Eq. 6): per map, sum_j psi_j ||j - c||_2 / sum_j psi_j with
  c = sum_j j psi_j / sum_j psi_j (j the position in the map, in its pixels); the mean over the
  minibatch's maps and the layer's filters, summed over layers.
"""
from __future__ import annotations

import torch
from torch import nn

from reglens.regularizers.base import Regularizer


def conv_taps(model: nn.Module) -> list[tuple[nn.Module, nn.BatchNorm2d | None]]:
    """Per convolution inside the model's named layers: the module whose output is its pre-activation
    map (the convolution, or the batch norm right after it) and that batch norm (or None)."""
    taps = []
    for name in getattr(model, "layer_names", ()):
        modules = [m for m in model.get_submodule(name).modules() if not list(m.children())]
        for k, m in enumerate(modules):
            if isinstance(m, nn.Conv2d):
                bn = modules[k + 1] if k + 1 < len(modules) and isinstance(modules[k + 1], nn.BatchNorm2d) else None
                taps.append((bn if bn is not None else m, bn))
    return taps


def soft_receptive_field(pre: torch.Tensor, p1: float, p2: float, bn: nn.BatchNorm2d | None = None) -> torch.Tensor:
    """psi (N, C, H, W) of pre-activation maps (Eq. 1), or of a batch norm's output (Eq. 4)."""
    if bn is None:
        scale = pre.std(dim=(0, 2, 3), unbiased=False, keepdim=True).clamp_min(1e-6)
        return torch.sigmoid(p1 * pre / scale + p2)
    gamma = bn.weight.view(1, -1, 1, 1) if bn.affine else torch.ones(1, pre.shape[1], 1, 1, device=pre.device)
    safe = torch.where(gamma.abs() < 1e-6, torch.full_like(gamma, 1e-6), gamma)
    return torch.sigmoid(p1 * pre / safe + p2)


def soft_iou_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Eq. 2 per leading index: a, b (P, ...) -> (P,)."""
    diff = (a - b).abs().flatten(1).sum(1)
    return 2 * diff / (a.abs().flatten(1).sum(1) + b.abs().flatten(1).sum(1) + diff).clamp_min(1e-12)


def group_activation_loss(psi: torch.Tensor, groups: int, pairs_per_filter: int = 3) -> torch.Tensor:
    """One layer's term of L_g: sum over groups of the mean distance over r random distinct pairs
    (the device's global RNG draws them, so a seeded run draws the same)."""
    total = psi.new_zeros(())
    for block in torch.tensor_split(torch.arange(psi.shape[1], device=psi.device), groups):
        n = len(block)
        if n < 2:
            continue
        r = min(pairs_per_filter * n, n * n)
        pairs = torch.randperm(n * n, device=psi.device)[:r]  # drawn where psi lives: no copy per step
        i, j = block[pairs // n], block[pairs % n]
        total = total + soft_iou_distance(psi[:, i].transpose(0, 1), psi[:, j].transpose(0, 1)).mean()
    return total


def spatial_loss(psi: torch.Tensor) -> torch.Tensor:
    """One layer's L_s: the psi-weighted mean distance of each map's positions from its centre, averaged
    over the maps (N x C)."""
    n, c, h, w = psi.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=psi.device, dtype=psi.dtype),
                            torch.arange(w, device=psi.device, dtype=psi.dtype), indexing="ij")
    mass = psi.sum((2, 3)).clamp_min(1e-12)
    cy, cx = (psi * ys).sum((2, 3)) / mass, (psi * xs).sum((2, 3)) / mass
    dist = torch.sqrt((ys - cy[..., None, None]) ** 2 + (xs - cx[..., None, None]) ** 2 + 1e-12)
    return ((psi * dist).sum((2, 3)) / mass).mean()


class _ActivationRegularizer(Regularizer):
    """Hooks that keep the training forward's pre-activation maps for the penalty."""

    nonnegative = ("weight",)
    hooks_model = True
    needs_fp32 = True  # steep sigmoids of the maps: under bf16 the step's gradient drifted (cosine 0.986)

    def check_task(self, input_dim, output_dim, square_dim=None):
        if square_dim is not None:
            raise ValueError(f"{self.kind} acts on convolution maps; this architecture has none")

    def init_model(self, model):
        self._taps = conv_taps(model)
        if not self._taps:
            raise ValueError(f"regularizer {self.kind!r}: {type(model).__name__} has no convolution in its named layers")
        self._maps: dict[int, torch.Tensor] = {}
        for k, (module, _) in enumerate(self._taps):
            module.register_forward_hook(self._keep(k))

    def _keep(self, k):
        def hook(module, inputs, output):
            if module.training and torch.is_grad_enabled():
                self._maps[k] = output
        return hook

    def fields(self, batch: int) -> list[torch.Tensor]:
        """psi of every tapped layer from the last training forward of `batch` images."""
        if len(self._maps) != len(self._taps) or any(m.shape[0] != batch for m in self._maps.values()):
            raise RuntimeError(f"regularizer {self.kind!r}: no pre-activation maps of this batch were recorded")
        return [soft_receptive_field(self._maps[k].float(), self.p1, self.p2, bn)
                for k, (_, bn) in enumerate(self._taps)]


class GroupActivation(_ActivationRegularizer):
    kind = "group_activation"
    params = {"weight": 0.1, "groups": 5, "pairs_per_filter": 3, "p1": 1.0, "p2": 0.0}
    summary = ("weight * L_g of Concept Group Learning (Varshneya et al. 2021, Eq. 5): soft 1 - IoU between the "
               "sigmoid receptive fields of random filter pairs of each group, summed over conv layers")

    def validate(self):
        for key in ("groups", "pairs_per_filter"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ValueError(f"regularizer 'group_activation': {key} must be an integer >= 1, got {getattr(self, key)!r}")

    def step_cost(self):
        return 4.68  # benchmarks/train_throughput.py --regularizers group_activation (SimpleCNN 0.25, CPU)

    def penalty(self, model, x, y, logits):
        return self.weight * torch.stack([group_activation_loss(psi, min(self.groups, psi.shape[1]), self.pairs_per_filter)
                                          for psi in self.fields(len(x))]).sum()


class GroupSpatial(_ActivationRegularizer):
    kind = "group_spatial"
    params = {"weight": 0.01, "p1": 1.0, "p2": 0.0}
    summary = ("weight * L_s of Concept Group Learning (Varshneya et al. 2021, Eq. 6): each filter's receptive "
               "field concentrated around its centre, summed over conv layers")

    def step_cost(self):
        return 3.02  # benchmarks/train_throughput.py --regularizers group_spatial (SimpleCNN 0.25, CPU)

    def penalty(self, model, x, y, logits):
        return self.weight * torch.stack([spatial_loss(psi) for psi in self.fields(len(x))]).sum()
