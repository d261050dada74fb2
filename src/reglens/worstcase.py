"""Worst-case robust accuracy per eps over an attack set (reglens.autoattack), PGD accuracy against
its iterations and restarts, and the gradient-masking checks of Carlini et al. (2019): accuracy
non-increasing in eps, steps and restarts, near zero at an unbounded eps, and black-box attacks and
FGSM never clearly stronger than the white-box iterative ones."""
from __future__ import annotations

import torch

from reglens import autoattack
from reglens.attacks import pgd

WORST_CASE_DEFAULTS = {
    "attacks": ["apgd-ce", "apgd-t", "square"],
    "linf_eps": [0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255], "l2_eps": [0.0, 0.25, 0.5],
    "apgd_steps": 100, "restarts": 1, "targets": 9, "square_queries": 5000,
}
ITERATIONS_DEFAULTS = {"steps": [1, 2, 5, 10, 20, 50], "restarts": [1, 2, 4], "restart_steps": 10, "alpha": 0.25}
MASKING_DEFAULTS = {"tolerance": 0.02, "large_eps": 1.0, "large_eps_max_acc": 0.05}
WHITE_BOX = ("apgd-ce", "apgd-t", "pgd")
BLACK_BOX = ("square",)


def usable(name: str, norm: str, x: torch.Tensor, classes: int) -> str | None:
    """Why `name` cannot attack these inputs under `norm` (None when it can)."""
    if name == "square" and norm == "l2" and min(x.shape[-2:]) < 5:
        return "Square L2 needs images of at least 5 x 5 pixels"
    if name == "apgd-t" and classes < 4:
        return "APGD-T's targeted DLR needs at least 4 classes"
    return None


def worst_case_curves(model, x, y, cfg: dict, batch_size: int = 500, seed: int = 0) -> list[dict]:
    """Per norm and eps: each attack's robust accuracy and the per-point worst case over the set
    (`attack` 'worst'), with the set, budget and the attacks that could not run recorded per row."""
    model.eval()
    with torch.no_grad():
        classes = model(x[:1]).shape[1]
    rows = []
    for norm in autoattack.NORMS:
        attacks = [a for a in cfg["attacks"] if not usable(a, norm, x, classes)]
        skipped = "; ".join(f"{a}: {usable(a, norm, x, classes)}" for a in cfg["attacks"] if a not in attacks)
        for eps in cfg[f"{norm}_eps"]:
            gen = torch.Generator(device=x.device).manual_seed(seed)
            robust = autoattack.worst_case(model, x, y, float(eps), norm, attacks, cfg, gen, batch_size)
            for name, flags in robust.items():
                rows.append({"attack": name, "norm": norm, "eps": float(eps), "accuracy": float(flags.float().mean()),
                             "n_images": len(y), "attack_set": "+".join(attacks), "skipped": skipped,
                             "apgd_steps": cfg["apgd_steps"], "restarts": cfg["restarts"], "targets": cfg["targets"],
                             "square_queries": cfg["square_queries"]})
    return rows


@torch.no_grad()
def _correct(model, x, y) -> torch.Tensor:
    return model(x).argmax(1) == y


def iteration_curves(model, x, y, eps: float, norm: str, cfg: dict, batch_size: int = 500, seed: int = 0) -> list[dict]:
    """PGD accuracy at fixed eps and step size alpha * eps: against the steps from one seeded start
    (the same start for every count), and against restarts (the per-point worst case over the first
    r starts, at `restart_steps`)."""
    model.eval()
    alpha = cfg["alpha"] * eps
    rows = []
    for steps in cfg["steps"]:
        correct = []
        gen = torch.Generator(device=x.device).manual_seed(seed)
        for start in range(0, len(y), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            correct.append(_correct(model, pgd(model, xb, yb, eps, alpha, steps, norm, True, gen), yb))
        rows.append({"curve": "steps", "norm": norm, "eps": eps, "alpha": alpha, "steps": steps, "restarts": 1,
                     "accuracy": float(torch.cat(correct).float().mean()), "n_images": len(y)})
    gen = torch.Generator(device=x.device).manual_seed(seed)
    robust = _correct(model, x, y)
    for r in range(1, max(cfg["restarts"]) + 1):
        for start in range(0, len(y), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            adv = pgd(model, xb, yb, eps, alpha, cfg["restart_steps"], norm, True, gen)
            robust[start:start + batch_size] &= _correct(model, adv, yb)
        if r in cfg["restarts"]:
            rows.append({"curve": "restarts", "norm": norm, "eps": eps, "alpha": alpha, "steps": cfg["restart_steps"],
                         "restarts": r, "accuracy": float(robust.float().mean()), "n_images": len(y)})
    return rows


def large_eps_accuracy(model, x, y, eps: float, cfg: dict, batch_size: int = 500, seed: int = 0) -> float:
    """APGD-CE's robust accuracy at an L-inf eps that covers the pixel range (1.0: any image)."""
    gen = torch.Generator(device=x.device).manual_seed(seed)
    return float(autoattack.worst_case(model, x, y, eps, "linf", ["apgd-ce"], cfg, gen, batch_size)["worst"]
                 .float().mean())


def _rises(values, labels, tol: float) -> list[str]:
    """Where a curve that must not rise rises by more than tol: 'a at p -> b at q'."""
    return [f"{a:.3f} at {p:g} -> {b:.3f} at {q:g}"
            for (p, a), (q, b) in zip(zip(labels, values), zip(labels[1:], values[1:])) if b > a + tol]


def masking_checks(attack_rows: list[dict], worst_rows: list[dict], iteration_rows: list[dict],
                   large_eps_acc: float | None, cfg: dict) -> list[dict]:
    """The checklist on one cell's curves, a row per check: {check, passed, value, detail} (value: the
    problems found; for the unbounded eps, APGD-CE's accuracy there). attack_rows:
    reglens.robustness.attack_curves; worst_rows: worst_case_curves; iteration_rows: iteration_curves."""
    tol, out = cfg["tolerance"], []

    def check(name: str, problems: list[str], value: float | None = None) -> None:
        out.append({"check": name, "passed": not problems, "value": float(len(problems) if value is None else value),
                    "detail": "; ".join(problems)})

    curves = {}
    for r in worst_rows:
        curves.setdefault((r["attack"], r["norm"]), []).append((r["eps"], r["accuracy"]))
    for r in attack_rows:
        curves.setdefault((f"{r['attack']}{r['steps'] if r['attack'] == 'pgd' else ''}", r["norm"]), []).append(
            (r["eps"], r["accuracy"]))
    problems = []
    for (name, norm), points in sorted(curves.items()):
        points = sorted(points)
        problems += [f"{name} {norm} {p}" for p in _rises([a for _, a in points], [e for e, _ in points], tol)]
    check("eps", problems)
    # the restarts curve is nested (a per-point AND over more starts), so only the steps curve can rise
    points = sorted((r["steps"], r["accuracy"]) for r in iteration_rows if r["curve"] == "steps")
    check("iterations", [f"PGD steps {p}" for p in _rises([a for _, a in points], [k for k, _ in points], tol)])
    if large_eps_acc is not None:
        check("unbounded", [f"APGD-CE {large_eps_acc:.3f} at L-inf eps {cfg['large_eps']:g} (> {cfg['large_eps_max_acc']:g})"]
              if large_eps_acc > cfg["large_eps_max_acc"] else [], large_eps_acc)
    by_point = {}
    for r in worst_rows + [{**r, "attack": r["attack"] if r["attack"] == "fgsm" else "pgd"} for r in attack_rows]:
        by_point.setdefault((r["norm"], r["eps"]), {}).setdefault(r["attack"], []).append(r["accuracy"])
    problems = []
    for (norm, eps), accs in sorted(by_point.items()):
        white = min((min(v) for k, v in accs.items() if k in WHITE_BOX), default=None)
        for weaker in BLACK_BOX + ("fgsm",):
            if white is not None and weaker in accs and min(accs[weaker]) < white - tol:
                problems.append(f"{weaker} {min(accs[weaker]):.3f} < white-box {white:.3f} at {norm} eps {eps:g}")
    check("weaker_attack_wins", problems)
    return out


# what each check of masking_checks means (the report's legend)
CHECKS = {"eps": "accuracy rises with eps", "iterations": "PGD accuracy rises with its steps",
          "unbounded": "accuracy not near 0 at an eps covering the pixel range",
          "weaker_attack_wins": "a black-box or one-step attack beats the iterative white-box ones"}


def suspected(rows) -> bool:
    """Whether any check of masking_checks failed (gradient masking suspected)."""
    return not all(bool(r["passed"]) for r in rows)
