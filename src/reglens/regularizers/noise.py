"""Noise on the inputs or on the weights during training; adversarial examples as a regularizer."""
from __future__ import annotations

import contextlib

import torch

from reglens.attacks import pgd
from reglens.regularizers.base import Regularizer, penalized_weights


class InputNoise(Regularizer):
    kind = "input_noise"
    params = {"sigma": 0.1, "clip": True}
    summary = "x + sigma * N(0, I) on every training batch (clipped to [0, 1] if clip)"
    nonnegative = ("sigma",)

    def transform_batch(self, model, x, y):
        noisy = x + self.sigma * torch.randn_like(x)
        return noisy.clamp(0, 1) if self.clip else noisy


class WeightNoise(Regularizer):
    kind = "weight_noise"
    params = {"sigma": 0.01}
    summary = "forward and backward with W + sigma * N(0, I) (conv and linear weights); the update is applied to W"
    nonnegative = ("sigma",)

    @contextlib.contextmanager
    def perturb_weights(self, model):
        if not model.training or self.sigma == 0:
            yield
            return
        weights = penalized_weights(model)
        clean = [w.detach().clone() for w in weights]
        with torch.no_grad():
            for w in weights:
                w.add_(torch.randn_like(w), alpha=self.sigma)
        try:
            yield
        finally:
            with torch.no_grad():
                for w, c in zip(weights, clean):
                    w.copy_(c)


class Adversarial(Regularizer):
    kind = "adversarial"
    params = {"eps": 8 / 255, "alpha": 2 / 255, "steps": 7, "norm": "linf", "random_start": True}
    summary = "train on PGD-k adversarial examples of each batch (Madry et al. 2018); attack run in eval mode"
    nonnegative = ("eps", "alpha")

    def validate(self):
        if self.norm not in ("linf", "l2"):
            raise ValueError(f"regularizer 'adversarial': norm must be 'linf' or 'l2', got {self.norm!r}")

    def step_cost(self) -> float:
        return 1.0 + 0.764 * self.steps  # 6.35x measured for PGD-7: each attack step is a forward and a backward

    def transform_batch(self, model, x, y):
        was_training = model.training
        model.eval()
        try:
            adv = pgd(model, x, y, self.eps, self.alpha, self.steps, self.norm, self.random_start)
        finally:
            model.train(was_training)
        return adv
