"""Concepts beyond single units: Net2Vec concept embeddings, and lesions.

Net2Vec (Fong & Vedaldi, CVPR 2018): per layer and concept, a weight per unit and a bias such that
sigmoid(sum_k w_k A_k + b), the layer's activations A upsampled bilinearly to the mask, segments the
concept; trained on one split by the class-balanced per-pixel loss
-alpha M log p - (1 - alpha)(1 - M) log(1 - p), alpha = 1 - the concept's pixel share, and scored on
the other split by set IoU of the thresholded map (w.A + b > 0) summed over images. All concepts of a
layer are fitted at once. Units enter divided by their root mean square over the training split, so
the weights compare units on one scale. Against it: the best single unit's set IoU on the same split
(the unit thresholded at its dissection threshold), how many of the largest |w| are needed to reach
90% of the embedding's IoU, and the entropy of the normalized |w| (how distributed the concept is).

Lesions: per class, the units of a layer that matter most to it (mean gradient x activation of its
logit over its training images, summed over positions) are zeroed k at a time, and the class's test
accuracy is measured, against k units drawn at random (several draws).
"""
from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F

from reglens import attribution
from reglens.dissect.geometry import shrinks

NET2VEC_DEFAULTS = {"enabled": True, "images": 2000, "val_fraction": 0.3, "min_pixels": 200, "max_concepts": 60,
                    "categories": ["color", "object", "part", "material"], "epochs": 30, "lr": 0.05,
                    "batch_size": 64, "margin": 0.05, "reach": 0.9, "mask_size": None, "seed": 0}
LESION_DEFAULTS = {"enabled": True, "layer": None, "ks": [1, 2, 4, 8], "draws": 5, "train_images": 500, "seed": 0}


def upsample(features: torch.Tensor, shape) -> torch.Tensor:
    """Maps at the mask size: bilinear (align_corners=False), antialiased along an axis where the map
    is larger than the mask, as PIL's resize and dissection's default (reglens.dissect.resize_maps)."""
    if tuple(features.shape[-2:]) == tuple(shape):
        return features
    return F.interpolate(features, size=tuple(shape), mode="bilinear", align_corners=False,
                         antialias=shrinks(features.shape, shape))


def concept_masks(planes: torch.Tensor, concepts: torch.Tensor) -> torch.Tensor:
    """(B, C, sh, sw) bool: whether each pixel carries each concept, from label planes (B, P, sh, sw)."""
    return (planes.unsqueeze(1) == concepts.view(1, -1, 1, 1, 1)).any(2)


def weighted_map(features: torch.Tensor, w: torch.Tensor, b: torch.Tensor, shape) -> torch.Tensor:
    """w.A + b at the mask's resolution, A upsampled bilinearly: the weighted sum is taken first (the
    upsampling is linear, so the two commute) and C maps are upsampled instead of K."""
    return upsample(torch.einsum("nkhw,ck->nchw", features, w), shape) + b.view(1, -1, 1, 1)


def fit_net2vec(features: torch.Tensor, masks: torch.Tensor, epochs: int = 30, lr: float = 0.05,
                batch_size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights (C, K), bias (C,)) fitted on features (N, K, h, w) (already scaled) and masks
    (N, C, sh, sw) by Adam on the class-balanced loss, concepts in parallel, minibatches seeded."""
    n, k = features.shape[:2]
    c = masks.shape[1]
    alpha = (1 - masks.float().mean((0, 2, 3))).view(1, c, 1, 1)
    gen = torch.Generator().manual_seed(seed)
    w = torch.zeros(c, k, device=features.device, requires_grad=True)
    b = torch.zeros(c, device=features.device, requires_grad=True)
    optimizer = torch.optim.Adam([w, b], lr=lr)
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=gen).split(batch_size):
            idx = idx.to(features.device)
            logits = weighted_map(features[idx], w, b, masks.shape[-2:])
            m = masks[idx].float()
            loss = -(alpha * m * F.logsigmoid(logits) + (1 - alpha) * (1 - m) * F.logsigmoid(-logits)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return w.detach(), b.detach()


def embedding_iou(features: torch.Tensor, masks: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                  batch_size: int = 64) -> torch.Tensor:
    """Set IoU per concept of the thresholded embedding maps (w.A + b > 0)."""
    inter = torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
    union = torch.zeros_like(inter)
    for i in range(0, len(features), batch_size):
        pred = weighted_map(features[i:i + batch_size], w, b, masks.shape[-2:]) > 0
        m = masks[i:i + batch_size]
        inter += (pred & m).flatten(2).sum((0, 2)).double()
        union += (pred | m).flatten(2).sum((0, 2)).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(union, float("nan")))


def unit_iou(features: torch.Tensor, thresholds: torch.Tensor, masks: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """(K, C) set IoU of each unit thresholded at its threshold (as dissection does) with each concept."""
    k, c = features.shape[1], masks.shape[1]
    inter = torch.zeros(k, c, dtype=torch.float64, device=features.device)
    union = torch.zeros_like(inter)
    for i in range(0, len(features), batch_size):
        on = (upsample(features[i:i + batch_size], masks.shape[-2:]) > thresholds.view(1, -1, 1, 1)).flatten(2)
        m = masks[i:i + batch_size].flatten(2)
        both = torch.einsum("nkp,ncp->kc", on.double(), m.double())
        inter += both
        union += on.sum((0, 2)).double().unsqueeze(1) + m.sum((0, 2)).double().unsqueeze(0) - both
    return torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(union))


def units_to_reach(features: torch.Tensor, masks: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                   reach: float = 0.9, batch_size: int = 64) -> torch.Tensor:
    """Per concept, the fewest units (largest |w| first, the rest zeroed, the bias kept) whose embedding
    reaches `reach` x the full embedding's IoU (NaN where the full IoU is undefined or 0). One pass over
    the images: the map of the top-k units is the top-(k-1) map plus the k-th unit's term."""
    c, k_all = w.shape
    order = w.abs().argsort(dim=1, descending=True)                     # (C, K)
    weights = w.gather(1, order)                                         # (C, K) in that order
    inter = torch.zeros(k_all, c, dtype=torch.float64, device=w.device)
    union = torch.zeros_like(inter)
    for i in range(0, len(features), batch_size):
        a = features[i:i + batch_size]                                           # (N, K, h, w)
        m = masks[i:i + batch_size].flatten(2)                                    # (N, C, P)
        low = torch.zeros(len(a), c, *a.shape[-2:], dtype=a.dtype, device=a.device)
        for k in range(k_all):
            low += a[:, order[:, k]] * weights[:, k].view(1, c, 1, 1)
            pred = (upsample(low, masks.shape[-2:]) + b.view(1, c, 1, 1)).flatten(2) > 0
            inter[k] += (pred & m).sum((0, 2)).double()
            union[k] += (pred | m).sum((0, 2)).double()
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(union, float("nan")))  # (K, C)
    full = iou[-1]
    reached = iou >= reach * full.unsqueeze(0) - 1e-12
    first = reached.double().argmax(0) + 1                               # the first k that reaches
    ok = torch.isfinite(full) & (full > 0) & reached.any(0)
    return torch.where(ok, first.double(), torch.full_like(first.double(), float("nan"))).cpu()


def net2vec_layer(train_feats, train_masks, val_feats, val_masks, thresholds, cfg: dict) -> dict:
    """Everything Net2Vec reports for one layer's concepts: per concept the embedding's and the best
    single unit's IoU on the held-out split, the IoU of marking every pixel (what a map that ignores the
    image scores: a frequent concept's embedding must beat it), units to reach 90 % and the weights'
    entropy."""
    scale = train_feats.pow(2).mean((0, 2, 3)).sqrt().clamp_min(1e-12).view(1, -1, 1, 1)
    w, b = fit_net2vec(train_feats / scale, train_masks, cfg["epochs"], cfg["lr"], cfg["batch_size"], cfg["seed"])
    val = val_feats / scale
    emb = embedding_iou(val, val_masks, w, b, cfg["batch_size"])
    single = unit_iou(val_feats, thresholds, val_masks, cfg["batch_size"])
    everywhere = val_masks.flatten(2).double().mean((0, 2))
    return {"embedding_iou": emb, "best_unit_iou": single.max(0).values, "best_unit": single.argmax(0),
            "everywhere_iou": everywhere.cpu(),
            "units_to_reach": units_to_reach(val, val_masks, w, b, cfg["reach"], cfg["batch_size"]),
            "entropy": attribution.entropy(w.abs()),  # of |w| / sum |w|
            "weights": w.cpu()}


# ---------------------------------------------------------------- lesions

def unit_importance(model, layer: str, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                    batch_size: int = 256) -> torch.Tensor:
    """(classes, units): per class, the mean over its images of sum over positions of
    d logit_class / d A_u * A_u, A the layer's output."""
    module = model.get_submodule(layer)
    held = {}
    handle = module.register_forward_hook(lambda m, i, o: held.__setitem__("a", o))
    scores = None
    counts = torch.zeros(num_classes, dtype=torch.float64)
    try:
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size].clone().requires_grad_(True), y[i:i + batch_size]  # a graph through frozen weights
            with torch.enable_grad():
                logits = model(xb)
            a = held["a"]
            grad, = torch.autograd.grad(logits.gather(1, yb.view(-1, 1)).sum(), a)
            per_image = (grad * a).detach().flatten(2).sum(2).double().cpu()  # (B, units)
            if scores is None:
                scores = torch.zeros(num_classes, per_image.shape[1], dtype=torch.float64)
            scores.index_add_(0, yb.cpu(), per_image)
            counts += torch.bincount(yb.cpu(), minlength=num_classes).double()
    finally:
        handle.remove()
    return scores / counts.clamp_min(1).unsqueeze(1)


def ablated_accuracy(model, layer: str, x: torch.Tensor, y: torch.Tensor, units: torch.Tensor) -> float:
    """Accuracy on (x, y) with the given units of `layer` zeroed."""
    module = model.get_submodule(layer)

    def zero(m, i, o):
        o = o.clone()
        o[:, units.to(o.device)] = 0
        return o

    handle = module.register_forward_hook(zero)
    try:
        with torch.no_grad():
            return float((model(x).argmax(1) == y).double().mean()) if len(y) else float("nan")
    finally:
        handle.remove()


def lesion_curves(model, layer: str, importance: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
                  ks, draws: int = 5, seed: int = 0) -> list[dict]:
    """Rows (class, k, kind, draw, accuracy): the class's test accuracy with its k most important units
    zeroed ('top'), with k random units zeroed ('random', `draws` seeded draws), and intact (k = 0)."""
    gen = torch.Generator().manual_seed(seed)
    units = importance.shape[1]
    rows = []
    for c in range(importance.shape[0]):
        sel = y_test == c
        xc, yc = x_test[sel], y_test[sel]
        base = ablated_accuracy(model, layer, xc, yc, torch.tensor([], dtype=torch.long))
        rows.append({"class": c, "k": 0, "kind": "none", "draw": 0, "accuracy": base, "images": int(sel.sum())})
        order = importance[c].argsort(descending=True)
        for k in ks:
            if k > units:
                continue
            rows.append({"class": c, "k": k, "kind": "top", "draw": 0,
                         "accuracy": ablated_accuracy(model, layer, xc, yc, order[:k]), "images": int(sel.sum())})
            for d in range(draws):
                pick = torch.randperm(units, generator=gen)[:k]
                rows.append({"class": c, "k": k, "kind": "random", "draw": d,
                             "accuracy": ablated_accuracy(model, layer, xc, yc, pick), "images": int(sel.sum())})
    return rows


def lesion_summary(curves) -> dict:
    """Per k: the mean over classes of the accuracy drop from the intact model with the top units
    zeroed, with random ones (mean over draws), and their difference (concentration)."""
    d = pd.DataFrame(curves)
    base = d[d.kind == "none"].set_index("class").accuracy
    out = {}
    for k, g in d[d.kind != "none"].groupby("k"):
        top = (base - g[g.kind == "top"].set_index("class").accuracy).mean()
        rand = (base - g[g.kind == "random"].groupby("class").accuracy.mean()).mean()
        out[f"lesion_drop_top@{k}"] = float(top)
        out[f"lesion_drop_random@{k}"] = float(rand)
        out[f"lesion_concentration@{k}"] = float(top - rand)
    return out

