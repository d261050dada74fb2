"""Worst-case robustness in the manner of AutoAttack (Croce & Hein, ICML 2020): APGD with the
cross-entropy (APGD-CE) or the targeted DLR loss (APGD-T), and the black-box Square attack
(Andriushchenko et al., ECCV 2020), L-inf and L2, each a direct port of the reference loops; robust
accuracy as the per-point worst case over an attack set. Models take pixels in [0, 1].

Every attack returns (robust, adv): per image, whether it is still classified correctly after the
attack (False where it was already wrong), and the adversarial image found (the input where none)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reglens.attacks import pgd

NORMS = ("linf", "l2")
ATTACKS = ("apgd-ce", "apgd-t", "square", "pgd")


def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *[1] * (like.dim() - 1))


def _l2(v: torch.Tensor) -> torch.Tensor:
    return _view(v.flatten(1).norm(dim=1), v)


def _check_norm(norm: str):
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def project(x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """x_adv moved into the eps-ball around x and the pixel range [0, 1] (APGD's projection)."""
    if norm == "linf":
        return torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    d = x_adv - x
    n = _l2(d)
    return (x + d / (n + 1e-12) * torch.clamp(n, max=eps)).clamp(0, 1)


# ---------------------------------------------------------------- losses

def dlr(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of logits ratio, per image: -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)."""
    z, _ = logits.sort(dim=1)
    top_is_y = (logits.argmax(1) == y).float()
    other = z[:, -2] * top_is_y + z[:, -1] * (1 - top_is_y)
    return -(logits.gather(1, y[:, None])[:, 0] - other) / (z[:, -1] - z[:, -3] + 1e-12)


def dlr_targeted(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)."""
    z, _ = logits.sort(dim=1)
    zy, zt = logits.gather(1, y[:, None])[:, 0], logits.gather(1, target[:, None])[:, 0]
    return -(zy - zt) / (z[:, -1] - 0.5 * z[:, -3] - 0.5 * z[:, -4] + 1e-12)


def _loss_and_grad(model, x_adv, loss_of):
    x_adv = x_adv.detach().requires_grad_(True)
    logits = model(x_adv)
    per_image = loss_of(logits)
    (grad,) = torch.autograd.grad(per_image.sum(), x_adv)
    return logits.detach(), per_image.detach(), grad.detach()


# ---------------------------------------------------------------- APGD

def apgd_schedule(steps: int) -> tuple[int, int, int]:
    """The first checkpoint, the least distance between checkpoints and its decrement (0.22, 0.06,
    0.03 of the steps, at least 1)."""
    return max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)


def _random_start(x: torch.Tensor, eps: float, norm: str, gen) -> torch.Tensor:
    if norm == "linf":
        t = 2 * torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) - 1
        t = t / _view(t.flatten(1).abs().max(dim=1).values, t)
    else:
        t = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        t = t / (_l2(t) + 1e-12)
    return (x + eps * t).clamp(0, 1)


def apgd_run(model, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str, steps: int, loss_of,
             gen: torch.Generator | None = None, rho: float = 0.75) -> tuple[torch.Tensor, torch.Tensor]:
    """One run of APGD maximizing loss_of(logits) (per image) from a random start: momentum 0.75,
    step 2 eps halved at a checkpoint where the loss rose in at most rho of the steps since the last
    one, or where the best loss did not improve and the step was not halved last time; after a
    halving the iterate restarts from the best point. (robust, adv) as the module says."""
    x = x.detach()
    first, least, decrement = apgd_schedule(steps)
    x_adv = _random_start(x, eps, norm, gen)
    x_best, x_best_adv = x_adv.clone(), x_adv.clone()
    loss_steps = torch.zeros(steps, len(x), device=x.device)
    logits, loss, grad = _loss_and_grad(model, x_adv, loss_of)
    grad_best = grad.clone()
    robust = logits.argmax(1) == y
    loss_best = loss.clone()
    step = torch.full((len(x),), 2.0 * eps, device=x.device, dtype=x.dtype)
    x_old = x_adv.clone()
    k, counter = first, 0
    loss_best_last = loss_best.clone()
    reduced_last = torch.ones(len(x), dtype=torch.bool, device=x.device)
    for i in range(steps):
        with torch.no_grad():
            momentum = x_adv - x_old
            x_old = x_adv.clone()
            a = 0.75 if i > 0 else 1.0
            direction = grad.sign() if norm == "linf" else grad / (_l2(grad) + 1e-12)
            z = project(x, x_adv + _view(step, x) * direction, eps, norm)
            x_adv = project(x, x_adv + (z - x_adv) * a + momentum * (1 - a), eps, norm)
        logits, loss, grad = _loss_and_grad(model, x_adv, loss_of)
        correct = logits.argmax(1) == y
        robust &= correct
        x_best_adv[~correct] = x_adv[~correct]
        with torch.no_grad():
            loss_steps[i] = loss
            better = loss > loss_best
            x_best[better], grad_best[better], loss_best[better] = x_adv[better], grad[better], loss[better]
            counter += 1
            if counter == k:
                # rows i, i-1, ..., i-k; index -1 is the last row, zero until then (as the reference)
                rises = sum((loss_steps[i - c] > loss_steps[i - c - 1]).float() for c in range(k))
                oscillating = rises <= k * rho
                stalled = ~reduced_last & (loss_best_last >= loss_best)
                reduce = oscillating | stalled
                reduced_last, loss_best_last = reduce.clone(), loss_best.clone()
                step[reduce] /= 2
                x_adv[reduce], grad[reduce] = x_best[reduce], grad_best[reduce]
                counter, k = 0, max(k - decrement, least)
    return robust, x_best_adv


def _restarted(model, x, y, runs) -> tuple[torch.Tensor, torch.Tensor]:
    """Each run attacks only the images still robust; the per-point union of their successes."""
    with torch.no_grad():
        robust = model(x).argmax(1) == y
    adv = x.detach().clone()
    for run in runs:
        idx = robust.nonzero().flatten()
        if len(idx) == 0:
            break
        still, found = run(x[idx], y[idx])
        fooled = idx[~still]
        robust[fooled] = False
        adv[fooled] = found[~still]
    return robust, adv


def apgd(model, x, y, eps: float, norm: str = "linf", steps: int = 100, restarts: int = 1, loss: str = "ce",
         generator: torch.Generator | None = None):
    """APGD-CE (loss 'ce') or APGD-DLR (loss 'dlr'), `restarts` runs on the images still robust."""
    _check_norm(norm)
    losses = {"ce": lambda yy: (lambda z: F.cross_entropy(z, yy, reduction="none")),
              "dlr": lambda yy: (lambda z: dlr(z, yy))}
    if loss not in losses:
        raise ValueError(f"loss must be one of {sorted(losses)}, got {loss!r}")
    model.eval()
    run = lambda xs, ys: apgd_run(model, xs, ys, eps, norm, steps, losses[loss](ys), generator)
    return _restarted(model, x, y, [run] * restarts)


def apgd_targeted(model, x, y, eps: float, norm: str = "linf", steps: int = 100, restarts: int = 1,
                  targets: int = 9, generator: torch.Generator | None = None):
    """APGD-T: targeted DLR towards each of the `targets` classes ranked highest after the prediction
    (by the clean logits), `restarts` runs each, on the images still robust."""
    _check_norm(norm)
    model.eval()
    with torch.no_grad():
        classes = model(x[:1]).shape[1]
    if classes < 4:
        raise ValueError(f"APGD-T's targeted DLR needs at least 4 classes, the model has {classes}")
    targets = min(targets, classes - 1)

    def towards(rank):
        def run(xs, ys):
            with torch.no_grad():
                target = model(xs).sort(dim=1).indices[:, -rank]
            return apgd_run(model, xs, ys, eps, norm, steps, lambda z: dlr_targeted(z, ys, target), generator)
        return run

    return _restarted(model, x, y, [towards(r) for r in range(2, targets + 2) for _ in range(restarts)])


# ---------------------------------------------------------------- Square

def square_p(i: int, queries: int, p_init: float = 0.8) -> float:
    """The share of pixels a square covers at query i, the schedule rescaled to 10,000 queries."""
    i = int(i / queries * 10000)
    for limit, div in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128),
                       (8000, 256)):
        if i <= limit:
            return p_init / div
    return p_init / 512


def _sign(shape, x, gen) -> torch.Tensor:
    return torch.sign(2 * torch.rand(shape, generator=gen, device=x.device, dtype=x.dtype) - 1)


def _randint(high: int, x, gen) -> int:
    return int(high * torch.rand(1, generator=gen, device=x.device).item())


def _margin(model, x, y) -> torch.Tensor:
    with torch.no_grad():
        z = model(x)
    correct = z.gather(1, y[:, None])[:, 0]
    return correct - z.scatter(1, y[:, None], -float("inf")).max(1).values


def _rectangles(a: int, b: int, like) -> torch.Tensor:
    delta = torch.zeros(a, b, device=like.device, dtype=like.dtype)
    ca, cb = a // 2, b // 2
    for r in range(max(ca + 1, cb + 1)):
        delta[max(ca - r, 0):min(ca - r + 2 * r + 1, a), max(cb - r, 0):min(cb - r + 2 * r + 1, b)] += 1.0 / (r + 1) ** 2
    return delta / delta.norm()


def _eta(s: int, like, gen) -> torch.Tensor:
    """Square's L2 window: two rectangles of opposite sign with 1/r^2 rings, unit norm."""
    delta = torch.zeros(s, s, device=like.device, dtype=like.dtype)
    delta[:s // 2] = _rectangles(s // 2, s, like)
    delta[s // 2:] = -_rectangles(s - s // 2, s, like)
    delta = delta / delta.norm()
    return delta.t() if torch.rand(1, generator=gen, device=like.device).item() > 0.5 else delta


def _square_start(x, eps, norm, gen):
    n, c, h, w = x.shape
    if norm == "linf":   # vertical stripes of +-eps
        return (x + eps * _sign((n, c, 1, w), x, gen)).clamp(0, 1)
    delta = torch.zeros_like(x)
    s = h // 5
    start = (h - 5 * s) // 2
    for vh in range(start, start + s * (h // s), s):
        for vw in range(start, start + s * (w // s), s):
            delta[:, :, vh:vh + s, vw:vw + s] += _eta(s, x, gen).view(1, 1, s, s) * _sign((n, c, 1, 1), x, gen)
    return (x + delta / (_l2(delta) + 1e-12) * eps).clamp(0, 1)


def _square_proposal(x, best, eps, norm, p, gen):
    n, c, h, w = x.shape
    if norm == "linf":
        s = max(int(round(math.sqrt(p * h * w))), 1)
        vh, vw = _randint(h - s, x, gen), _randint(w - s, x, gen)
        step = torch.zeros(c, h, w, device=x.device, dtype=x.dtype)
        step[:, vh:vh + s, vw:vw + s] = 2.0 * eps * _sign((c, 1, 1), x, gen)
        return torch.min(torch.max(best + step, x - eps), x + eps).clamp(0, 1)
    delta = best - x
    s = max(int(round(math.sqrt(p * h * w))), 3)
    s += 1 - s % 2
    vh, vw = _randint(h - s, x, gen), _randint(w - s, x, gen)
    vh2, vw2 = _randint(h - s, x, gen), _randint(w - s, x, gen)
    window = (slice(None), slice(None), slice(vh, vh + s), slice(vw, vw + s))
    mask = torch.zeros_like(x)
    mask[window] = 1.0
    mask[:, :, vh2:vh2 + s, vw2:vw2 + s] = 1.0
    norm_window = delta[window].pow(2).sum(dim=(-2, -1), keepdim=True).sqrt()
    norm_image, norm_windows = _l2(delta), _l2(delta * mask)
    new = _eta(s, x, gen).view(1, 1, s, s) * _sign((n, c, 1, 1), x, gen) + delta[window] / (1e-12 + norm_window)
    budget = (torch.clamp(eps ** 2 - norm_image ** 2, min=0) / c + norm_windows ** 2).sqrt()
    new = new / (1e-12 + new.pow(2).sum(dim=(-2, -1), keepdim=True).sqrt()) * budget
    delta = delta.clone()
    delta[:, :, vh2:vh2 + s, vw2:vw2 + s] = 0.0
    delta[window] = new
    return (x + delta / (_l2(delta) + 1e-12) * eps).clamp(0, 1)


def square_run(model, x, y, eps: float, norm: str, queries: int, p_init: float = 0.8,
               gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One run of the Square attack minimizing the margin z_y - max_{i != y} z_i with random squares
    (one position per query for the whole batch), an image leaving once its margin is <= 0."""
    x = x.detach()
    best = _square_start(x, eps, norm, gen)
    margin = _margin(model, best, y)
    for i in range(queries):
        idx = (margin > 0).nonzero().flatten()
        if len(idx) == 0:
            break
        proposal = _square_proposal(x[idx], best[idx], eps, norm, square_p(i, queries, p_init), gen)
        m = _margin(model, proposal, y[idx])
        take = m < margin[idx]   # a lower margin (fooled or not) replaces the best point
        margin[idx[take]] = m[take]
        best[idx[take]] = proposal[take]
    return margin > 0, best


def square(model, x, y, eps: float, norm: str = "linf", queries: int = 5000, restarts: int = 1,
           p_init: float = 0.8, generator: torch.Generator | None = None):
    _check_norm(norm)
    model.eval()
    run = lambda xs, ys: square_run(model, xs, ys, eps, norm, queries, p_init, generator)
    return _restarted(model, x, y, [run] * restarts)


# ---------------------------------------------------------------- the attack set

def run_attack(name: str, model, x, y, eps: float, norm: str, cfg: dict, gen: torch.Generator | None = None):
    """One attack of the set by name, its budget from cfg (apgd_steps, restarts, targets,
    square_queries)."""
    if eps == 0:
        with torch.no_grad():
            return model(x).argmax(1) == y, x.clone()
    if name == "apgd-ce":
        return apgd(model, x, y, eps, norm, cfg["apgd_steps"], cfg["restarts"], "ce", gen)
    if name == "apgd-t":
        return apgd_targeted(model, x, y, eps, norm, cfg["apgd_steps"], cfg["restarts"], cfg["targets"], gen)
    if name == "square":
        return square(model, x, y, eps, norm, cfg["square_queries"], cfg["restarts"], generator=gen)
    if name == "pgd":
        from_pgd = lambda xs, ys: _pgd_run(model, xs, ys, eps, norm, cfg, gen)
        return _restarted(model, x, y, [from_pgd] * cfg["restarts"])
    raise ValueError(f"attack must be one of {ATTACKS}, got {name!r}")


def _pgd_run(model, x, y, eps, norm, cfg, gen):
    """PGD of APGD's budget with Madry et al.'s step 2.5 eps / steps."""
    steps = cfg["apgd_steps"]
    adv = pgd(model, x, y, eps, 2.5 * eps / steps, steps, norm, True, gen)
    with torch.no_grad():
        return model(adv).argmax(1) == y, adv


def worst_case(model, x, y, eps: float, norm: str, attacks, cfg: dict, gen: torch.Generator | None = None,
               batch_size: int = 500) -> dict:
    """{attack: robust (images,) bool} for every attack in the set, and 'worst': robust under all of
    them (the per-point worst case, not the mean of the attacks' accuracies)."""
    out = {name: [] for name in attacks}
    for start in range(0, len(y), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        for name in attacks:
            out[name].append(run_attack(name, model, xb, yb, eps, norm, cfg, gen)[0])
    out = {name: torch.cat(parts) for name, parts in out.items()}
    out["worst"] = torch.stack(list(out.values())).all(0)
    return out
