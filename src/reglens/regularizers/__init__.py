"""Regularizer registry. A config names variants (`l2`, `l2_strong`, `dropout+l2`), each a list of
{kind: ..., <params>} specs; `build(name, variants)` turns one into a RegularizerSet."""
from __future__ import annotations

from reglens.regularizers.base import Regularizer, RegularizerSet, penalized_weights
from reglens.regularizers.concept_groups import GroupActivation, GroupSpatial
from reglens.regularizers.dropout import Dropout
from reglens.regularizers.group_norm import GroupNorm
from reglens.regularizers.losses import ConfidencePenalty, LabelSmoothing
from reglens.regularizers.noise import Adversarial, InputNoise, WeightNoise
from reglens.regularizers.smoothness import InputGradient, Jacobian, JacobianDeterminant, RightReasons
from reglens.regularizers.spectral import HardSVB, SoftSVB
from reglens.regularizers.weight_penalties import L1, L2, ElasticNet

KINDS: dict[str, type[Regularizer]] = {cls.kind: cls for cls in (
    L1, L2, ElasticNet, Dropout, SoftSVB, HardSVB, Jacobian, InputGradient, JacobianDeterminant, RightReasons,
    ConfidencePenalty, LabelSmoothing, InputNoise, WeightNoise, GroupNorm, GroupActivation, GroupSpatial,
    Adversarial)}


def resolve(name: str, variants: dict[str, list]) -> list[dict]:
    """The flat list of specs a variant name stands for. An undefined name joined with '+'
    (`dropout+l2`) is the concatenation of its parts."""
    if name in variants:
        specs = variants[name] or []
    elif "+" in name:
        specs = [spec for part in name.split("+") for spec in resolve(part, variants)]
    else:
        raise KeyError(f"unknown regularizer {name!r}; defined variants: {sorted(variants)} "
                       "(or join defined names with '+')")
    for spec in specs:
        if not isinstance(spec, dict) or "kind" not in spec:
            raise ValueError(f"regularizer {name!r}: each entry needs a 'kind' key; got {spec!r}")
        if spec["kind"] not in KINDS:
            raise KeyError(f"regularizer {name!r}: unknown kind {spec['kind']!r}; valid: {sorted(KINDS)}")
    return [dict(spec) for spec in specs]


def build_member(spec: dict) -> Regularizer:
    params = {k: v for k, v in spec.items() if k != "kind"}
    return KINDS[spec["kind"]](**params)


def build(name: str, variants: dict[str, list]) -> RegularizerSet:
    return from_specs(name, resolve(name, variants))


def from_specs(name: str, specs: list[dict]) -> RegularizerSet:
    """The RegularizerSet of an already resolved list of specs (what a cell's params hold)."""
    return RegularizerSet(name, [build_member(spec) for spec in specs])


__all__ = ["KINDS", "Regularizer", "RegularizerSet", "build", "from_specs", "penalized_weights", "resolve"]
