"""APGD-CE, APGD-DLR, APGD-T and Square against torchattacks 3.5.1 on the same digits model and images;
the worst case as the per-point AND; the gradient-masking checks on a planted masking model (its
input quantized, so every input gradient is zero) and on the normal model it wraps."""
import pytest
import torch

from reglens import autoattack, regularizers, robustness, worstcase
from reglens.attacks import pgd
from reglens.train import train

torchattacks = pytest.importorskip("torchattacks")
EPS = {"linf": 0.05, "l2": 0.6}
NAMES = {"linf": "Linf", "l2": "L2"}


@pytest.fixture(scope="module")
def trained(digits):
    regs = regularizers.build("none", {"none": []})
    result = train(digits, "simplecnn", regs, {"epochs": 8, "lr": 0.05, "batch_size": 64}, {"width": 0.5},
                   seed=0, device="cpu")
    return result.model.eval(), digits.x_test[:300].float() / 255, digits.y_test[:300]


def _acc(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_apgd_matches_torchattacks(trained, norm):
    model, x, y = trained
    eps = EPS[norm]
    for loss in ("ce", "dlr"):
        robust, adv = autoattack.apgd(model, x, y, eps, norm, 50, 1, loss, _gen())
        theirs = torchattacks.APGD(model, norm=NAMES[norm], eps=eps, steps=50, n_restarts=1, loss=loss, seed=0)(x, y)
        assert robust.float().mean().item() == pytest.approx(_acc(model, adv, y))  # the flags are the images'
        assert abs(robust.float().mean().item() - _acc(model, theirs, y)) <= 0.01 + 1e-6, loss
    robust, _ = autoattack.apgd_targeted(model, x, y, eps, norm, 50, 1, 9, _gen())
    theirs = torchattacks.APGDT(model, norm=NAMES[norm], eps=eps, steps=50, n_restarts=1, n_classes=10, seed=0)(x, y)
    assert abs(robust.float().mean().item() - _acc(model, theirs, y)) <= 0.01 + 1e-6


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_square_matches_torchattacks_over_seeds(trained, norm):
    """Square is random search: its accuracy, averaged over three seeds, within 0.01 of the reference's."""
    model, x, y = trained
    ours, theirs = [], []
    for seed in range(3):
        robust, adv = autoattack.square(model, x, y, EPS[norm], norm, 1000, 1, generator=_gen(seed))
        assert robust.float().mean().item() == pytest.approx(_acc(model, adv, y))
        ours.append(robust.float().mean().item())
        ref = torchattacks.Square(model, norm=NAMES[norm], eps=EPS[norm], n_queries=1000, n_restarts=1, seed=seed)
        theirs.append(_acc(model, ref(x, y), y))
    assert abs(sum(ours) / 3 - sum(theirs) / 3) <= 0.01 + 1e-6, (ours, theirs)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_adversarials_stay_in_the_ball_and_apgd_is_never_weaker_than_pgd(trained, norm):
    model, x, y = trained
    for eps in (EPS[norm] / 2, EPS[norm], 2 * EPS[norm]):
        found = {"apgd-ce": autoattack.apgd(model, x, y, eps, norm, 20, 1, "ce", _gen())[1],
                 "apgd-t": autoattack.apgd_targeted(model, x, y, eps, norm, 20, 1, 3, _gen())[1],
                 "square": autoattack.square(model, x, y, eps, norm, 100, 1, generator=_gen())[1]}
        for name, adv in found.items():
            delta = (adv - x).flatten(1)
            size = delta.abs().max(1).values if norm == "linf" else delta.norm(dim=1)
            assert size.max() <= eps + 1e-5 and adv.min() >= 0 and adv.max() <= 1, name
        same_budget = pgd(model, x, y, eps, 2.5 * eps / 20, 20, norm, True, _gen())
        assert _acc(model, found["apgd-ce"], y) <= _acc(model, same_budget, y), eps


def test_dlr_by_hand():
    z = torch.tensor([[3.0, 1.0, 0.5, 0.0, -1.0], [0.0, 2.0, 1.0, 4.0, -1.0]])
    y = torch.tensor([0, 1])
    # image 0 is right: -(3 - 1) / (3 - 0.5); image 1 is wrong: -(2 - 4) / (4 - 1)
    torch.testing.assert_close(autoattack.dlr(z, y), torch.tensor([-2 / 2.5, 2 / 3]))
    # targeted towards 2 and 0: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
    torch.testing.assert_close(autoattack.dlr_targeted(z, y, torch.tensor([2, 0])),
                               torch.tensor([-2.5 / (3 - 0.25), -2.0 / (4 - 0.5)]))


def test_worst_case_is_the_per_point_and(trained):
    model, x, y = trained
    cfg = {**worstcase.WORST_CASE_DEFAULTS, "apgd_steps": 10, "targets": 2, "square_queries": 50}
    out = autoattack.worst_case(model, x, y, 0.1, "linf", ["apgd-ce", "apgd-t", "square", "pgd"], cfg, _gen(),
                                batch_size=128)
    assert torch.equal(out["worst"], out["apgd-ce"] & out["apgd-t"] & out["square"] & out["pgd"])
    accs = {k: v.float().mean().item() for k, v in out.items()}
    assert accs["worst"] <= min(v for k, v in accs.items() if k != "worst")
    # not the mean of the attacks' accuracies, when they fool different images
    assert accs["worst"] < sum(v for k, v in accs.items() if k != "worst") / 4


class Quantized(torch.nn.Module):
    """A planted masking model: the input rounded to 4 levels before a normal model, so its input
    gradient is zero everywhere and gradient attacks stall while the model is no more robust."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x * 3) / 3)


def _checks(model, x, y):
    cfg = robustness.merged_config({"worst_case": {"linf_eps": [0.0, 0.1, 0.2], "l2_eps": [], "apgd_steps": 20,
                                                   "targets": 3, "square_queries": 300},
                                    "iterations": {"steps": [1, 5, 20], "restarts": [1, 2], "restart_steps": 5}})
    rows = robustness.attack_curves(model, x, y, [0.0, 0.1, 0.2], [0.0, 0.1, 0.2], [10])
    worst = worstcase.worst_case_curves(model, x, y, cfg["worst_case"])
    iterations = worstcase.iteration_curves(model, x, y, 0.1, "linf", cfg["iterations"])
    large = worstcase.large_eps_accuracy(model, x, y, 1.0, cfg["worst_case"])
    return {r["check"]: r for r in worstcase.masking_checks(rows, worst, iterations, large, cfg["masking"])}


def test_a_planted_masking_model_is_flagged_and_the_normal_one_is_not(trained):
    model, x, y = trained
    x, y = x[:200], y[:200]
    normal = _checks(model, x, y)
    assert not worstcase.suspected(normal.values()), normal
    masked = _checks(Quantized(model).eval(), x, y)
    assert worstcase.suspected(masked.values())
    assert not masked["weaker_attack_wins"]["passed"] and "square" in masked["weaker_attack_wins"]["detail"]
    assert not masked["unbounded"]["passed"] and masked["unbounded"]["value"] > 0.05


def _row(attack, eps, acc, norm="linf"):
    return {"attack": attack, "norm": norm, "eps": eps, "accuracy": acc, "steps": 10}


def test_masking_checks_by_hand():
    cfg = worstcase.MASKING_DEFAULTS
    worst = [_row("worst", 0.0, 0.9), _row("worst", 0.1, 0.5), _row("worst", 0.2, 0.51),  # a rise within 0.02
             _row("apgd-ce", 0.1, 0.5), _row("square", 0.1, 0.6)]
    iterations = [{"curve": "steps", "steps": s, "restarts": 1, "accuracy": a} for s, a in ((1, 0.8), (10, 0.6), (20, 0.65))]
    checks = {r["check"]: r for r in worstcase.masking_checks([], worst, iterations, 0.0, cfg)}
    assert checks["eps"]["passed"] and checks["unbounded"]["passed"] and checks["weaker_attack_wins"]["passed"]
    assert not checks["iterations"]["passed"] and checks["iterations"]["detail"] == "PGD steps 0.600 at 10 -> 0.650 at 20"
    worst[2]["accuracy"], worst[4]["accuracy"] = 0.55, 0.45
    checks = {r["check"]: r for r in worstcase.masking_checks([_row("fgsm", 0.1, 0.4)], worst, [], 0.2, cfg)}
    assert checks["eps"]["detail"] == "worst linf 0.500 at 0.1 -> 0.550 at 0.2"
    assert checks["unbounded"]["value"] == 0.2 and not checks["unbounded"]["passed"]
    assert checks["weaker_attack_wins"]["value"] == 2  # Square and FGSM both beat APGD-CE at 0.1
