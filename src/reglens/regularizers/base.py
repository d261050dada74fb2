"""The regularizer interface: one object with optional hooks, and their composition."""
from __future__ import annotations

import contextlib
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn


class Regularizer:
    """Subclasses set `kind`, `params` (name -> default) and override the hooks they need.

    Hooks, in the order the training step calls them:
      model_kwargs()                      build-time model options (dropout rate)
      init_model(model)                   after the model is built (orthogonal init)
      transform_batch(model, x, y) -> x   perturb the inputs (noise, adversarial examples)
      perturb_weights(model)              context manager around forward+backward (weight noise)
      data_loss(logits, y) -> loss        replaces cross-entropy (at most one per combination)
      penalty(model, x, y, logits)        a scalar added to the loss, or None; members with
                                          `needs_annotation` get the batch's annotation mask too
                                          (N, H, W bool: the planted mark), as `annotation`
      after_step(model, step)             after each optimizer step (hard SVB projection)
      finish(model)                       once after the last step (hard SVB's final projection)
    `needs_input_grad` makes the step create the graph from the inputs (Jacobian penalties); such
    double-backward penalties, and members with `needs_fp32`, keep the forward in fp32 under autocast.
    """

    kind: ClassVar[str] = ""
    params: ClassVar[dict[str, Any]] = {}
    needs_input_grad: ClassVar[bool] = False
    needs_annotation: ClassVar[bool] = False  # the penalty reads each training image's annotation mask
    needs_fp32: ClassVar[bool] = False   # the cell's forward stays fp32 under bf16/fp16 autocast
    hooks_model: ClassVar[bool] = False  # registers hooks on the model (torch.compile is not used)
    nonnegative: ClassVar[tuple[str, ...]] = ()  # params that must be numbers >= 0
    summary: ClassVar[str] = ""

    def __init__(self, **values):
        unknown = set(values) - set(self.params)
        if unknown:
            raise ValueError(f"regularizer {self.kind!r}: unknown key(s) {sorted(unknown)}; "
                             f"valid: {sorted(self.params)}")
        for key, default in self.params.items():
            setattr(self, key, values.get(key, default))
        _check_nonnegative(self, *self.nonnegative)
        self.validate()

    def validate(self) -> None:
        """Checks beyond `nonnegative`; raise ValueError naming the key."""

    @property
    def has_penalty(self) -> bool:
        return type(self).penalty is not Regularizer.penalty

    def describe(self) -> dict:
        return {"kind": self.kind, **{k: getattr(self, k) for k in self.params}}

    def step_cost(self) -> float:
        """Time of a training step relative to an unregularized one, as measured by
        benchmarks/train_throughput.py --regularizers (penalties within 12% of a plain step count 1)."""
        return 1.0

    def check_task(self, input_dim: int, output_dim: int, square_dim: int | None = None) -> None:
        """Raise ValueError if the regularizer cannot apply to a model of these dimensions
        (`square_dim`: the dimension of the architecture's square map, if it has one)."""

    def model_kwargs(self) -> dict:
        return {}

    def init_model(self, model: nn.Module) -> None:
        pass

    def transform_batch(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x

    def perturb_weights(self, model: nn.Module):
        return contextlib.nullcontext()

    data_loss = None  # a method (logits, y) -> loss in the subclasses that replace cross-entropy

    def penalty(self, model, x, y, logits) -> torch.Tensor | None:
        return None

    def after_step(self, model: nn.Module, step: int) -> None:
        pass

    def finish(self, model: nn.Module) -> None:
        pass


def _check_nonnegative(reg: Regularizer, *keys: str) -> None:
    for key in keys:
        value = getattr(reg, key)
        if not isinstance(value, (int, float)) or value < 0:
            hint = ""
            if isinstance(value, str) and _reads_as_float(value):
                hint = f" (YAML reads an exponent without a sign as text: write {value.replace('e', 'e+')})"
            raise ValueError(f"regularizer {reg.kind!r}: {key} must be a number >= 0, got {value!r}{hint}")


def _reads_as_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def penalized_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weights the weight penalties act on: conv and linear weights. Biases, batch-norm scales
    and shifts and the normalization buffers are excluded."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


class RegularizerSet:
    """A named combination of regularizers; what the training loop talks to."""

    def __init__(self, name: str, members: list[Regularizer]):
        self.name = name
        self.members = members
        losses = [m for m in members if m.data_loss is not None]
        if len(losses) > 1:
            raise ValueError(f"regularizer {name!r}: {[m.kind for m in losses]} both replace the data "
                             "loss; combine at most one of them")
        self._data_loss = losses[0].data_loss if losses else None
        self.needs_input_grad = any(m.needs_input_grad for m in members)
        self.needs_annotation = any(m.needs_annotation for m in members)
        self.needs_fp32 = any(m.needs_fp32 or m.needs_input_grad for m in members)
        self.hooks_model = any(m.hooks_model for m in members)
        self._penalized = [(f"{i}_{m.kind}" if _count(members, m.kind) > 1 else m.kind, m)
                           for i, m in enumerate(members) if m.has_penalty]
        self.penalty_names = [name for name, _ in self._penalized]

    def describe(self) -> list[dict]:
        return [m.describe() for m in self.members]

    def step_cost(self) -> float:
        """Relative time of a training step: each member's extra cost added to a plain step."""
        return 1.0 + sum(m.step_cost() - 1.0 for m in self.members)

    def check_task(self, input_dim: int, output_dim: int, square_dim: int | None = None) -> None:
        for m in self.members:
            m.check_task(input_dim, output_dim, square_dim)

    def model_kwargs(self) -> dict:
        merged: dict = {}
        for m in self.members:
            for key, value in m.model_kwargs().items():
                if key in merged and merged[key] != value:
                    raise ValueError(f"regularizer {self.name!r}: conflicting {key} {merged[key]} vs {value}")
                merged[key] = value
        return merged

    def init_model(self, model):
        for m in self.members:
            m.init_model(model)

    def transform_batch(self, model, x, y):
        for m in self.members:
            x = m.transform_batch(model, x, y)
        return x

    @contextlib.contextmanager
    def perturb_weights(self, model):
        with contextlib.ExitStack() as stack:
            for m in self.members:
                stack.enter_context(m.perturb_weights(model))
            yield

    def data_loss(self, logits, y):
        if self._data_loss is None:
            return F.cross_entropy(logits, y)
        return self._data_loss(logits, y)

    def penalties(self, model, x, y, logits, annotation=None) -> dict[str, torch.Tensor]:
        out = {}
        for name, m in self._penalized:
            value = (m.penalty(model, x, y, logits, annotation=annotation) if m.needs_annotation
                     else m.penalty(model, x, y, logits))
            if value is not None:
                out[name] = value
        return out

    def after_step(self, model, step):
        for m in self.members:
            m.after_step(model, step)

    def finish(self, model):
        for m in self.members:
            m.finish(model)


def _count(members, kind):
    return sum(1 for m in members if m.kind == kind)
