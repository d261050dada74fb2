"""The training loop: data resident on the device, batched augmentation, epoch checkpoints, resume.

Randomness is re-seeded from (seed, epoch) at the start of every epoch, so a run resumed from an
epoch checkpoint draws exactly the batches, augmentations and dropout masks of an uninterrupted run.
Where checkpoints are kept is the caller's choice: any object with `load()` (the last state or None)
and `save(state)`.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
import torch.nn.functional as F

from reglens import models
from reglens.data import TensorData, to_float
from reglens.device import set_determinism, set_tf32, synchronize
from reglens.regularizers import RegularizerSet

TRAIN_DEFAULTS = {
    "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0,
    "schedule": "cosine", "milestones": [], "gamma": 0.1, "warmup_epochs": 0,
    "epochs": 10, "batch_size": 128, "eval_batch_size": 1024,
    "augment": {"crop_padding": 0, "hflip": False},
    "precision": "fp32", "deterministic": True,
    "tf32": True, "channels_last": "auto", "compile": False,
}
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")


class NonFiniteLoss(RuntimeError):
    pass


class Checkpoint(Protocol):
    def load(self) -> dict | None: ...

    def save(self, state: dict) -> None: ...


def merged_train_config(cfg: dict | None) -> dict:
    out = json.loads(json.dumps(TRAIN_DEFAULTS))
    for key, value in (cfg or {}).items():
        if key == "augment":
            out["augment"].update(value or {})
        else:
            out[key] = value
    return out


def augment(x: torch.Tensor, crop_padding: int, hflip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding and horizontal flip, on a uint8 batch, all in tensor ops."""
    n, _, h, w = x.shape
    if crop_padding > 0:
        p = crop_padding
        padded = F.pad(x, (p, p, p, p))
        oy = torch.randint(0, 2 * p + 1, (n, 1), device=x.device, generator=gen)
        ox = torch.randint(0, 2 * p + 1, (n, 1), device=x.device, generator=gen)
        rows = (oy + torch.arange(h, device=x.device))[:, :, None]       # n, h, 1
        cols = (ox + torch.arange(w, device=x.device))[:, None, :]       # n, 1, w
        idx = torch.arange(n, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[idx, rows, cols].permute(0, 3, 1, 2)
    if hflip:
        flip = torch.rand(n, device=x.device, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x.contiguous()


def lr_at(cfg: dict, epoch: int) -> float:
    """Learning rate for an epoch (0-based): linear warm-up, then constant, step or cosine decay."""
    base, warm, total = cfg["lr"], cfg["warmup_epochs"], cfg["epochs"]
    if epoch < warm:
        return base * (epoch + 1) / warm
    if cfg["schedule"] == "cosine":
        span = max(1, total - warm)
        return base * 0.5 * (1 + math.cos(math.pi * (epoch - warm) / span))
    if cfg["schedule"] == "step":
        return base * cfg["gamma"] ** sum(epoch >= m for m in cfg["milestones"])
    return base


def make_optimizer(cfg: dict, params):
    name = cfg["optimizer"]
    if name == "sgd":
        return torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], nesterov=cfg["nesterov"],
                               weight_decay=cfg["weight_decay"])
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    if name == "adamw":
        return torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    raise ValueError(f"train.optimizer: unknown {name!r}; valid: ['adam', 'adamw', 'sgd']")


@torch.no_grad()
def evaluate(model, x_uint8: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> dict:
    """Clean cross-entropy and accuracy of a model on uint8 images, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x_uint8.device)
    correct = torch.zeros((), device=x_uint8.device, dtype=torch.long)
    for start in range(0, len(y), batch_size):
        logits = model(to_float(x_uint8[start:start + batch_size])).float()
        target = y[start:start + batch_size]
        loss_sum += F.cross_entropy(logits, target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    model.train(was_training)
    n = max(1, len(y))
    return {"loss": loss_sum.item() / n, "acc": correct.item() / n}


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2 ** 63 - 1)


def fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def effective_precision(precision: str, regs: RegularizerSet) -> str:
    """The precision a cell trains in: fp32 when a member needs it (double-backward penalties, the
    concept-group kinds)."""
    return "fp32" if regs.needs_fp32 else precision


def loss_terms(model, forward, regs: RegularizerSet, x: torch.Tensor, y: torch.Tensor, precision: str,
               annotation: torch.Tensor | None = None):
    """One step's (logits, data loss, penalties): the forward under autocast at `precision`, the
    logits, the data loss and every penalty in fp32. `forward` is the model or its compiled version;
    `annotation`: the batch's annotation masks, for the penalties that read them."""
    dtype = AUTOCAST[precision]
    with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        logits = forward(x).float()
    data_loss = regs.data_loss(logits, y)
    return logits, data_loss, regs.penalties(model, x, y, logits, annotation)


def use_channels_last(setting, device: torch.device) -> bool:
    if setting == "auto":
        return device.type == "cuda"
    return bool(setting)


def compiled_forward(model, setting, regs: RegularizerSet):
    """(forward, backend or None): torch.compile'd when asked and the regularizers allow it (hooks on
    the model and double-backward penalties run eagerly)."""
    if not setting or regs.needs_input_grad or regs.hooks_model:
        return model, None
    backend = "inductor" if setting is True else setting
    if backend not in COMPILE_BACKENDS:
        raise ValueError(f"train.compile: {setting!r}; valid: false, true, {list(COMPILE_BACKENDS)}")
    return torch.compile(model, backend=backend), backend


@dataclass
class TrainResult:
    model: torch.nn.Module
    model_kwargs: dict
    history: list[dict]
    metrics: dict = field(default_factory=dict)
    records: list = field(default_factory=list)  # record(model) after each epoch, when asked


def train(data: TensorData, arch: str, regs: RegularizerSet, train_cfg: dict | None = None,
          model_cfg: dict | None = None, seed: int = 0, device: torch.device | str = "cpu",
          checkpoint: Checkpoint | None = None,
          on_epoch_end: Callable[[int, dict], None] | None = None,
          record: Callable[[torch.nn.Module], torch.Tensor] | None = None) -> TrainResult:
    """Train one cell. `record(model)`, if given, is called after every epoch (its results are kept
    in the checkpoint, so a resumed run returns every epoch's) and returned as `records`."""
    cfg = merged_train_config(train_cfg)
    device = torch.device(device)
    set_determinism(cfg["deterministic"])
    set_tf32(cfg["tf32"])
    precision = effective_precision(cfg["precision"], regs)
    channels_last = use_channels_last(cfg["channels_last"], device)
    data = TensorData(**{**data.__dict__, **{k: getattr(data, k).to(device)
                                             for k in ("x_train", "y_train", "x_test", "y_test")}})

    model_kwargs = {"in_channels": data.channels, "input_size": data.size, "num_classes": data.num_classes,
                    "mean": data.mean, "std": data.std, **(model_cfg or {}), **regs.model_kwargs()}
    torch.manual_seed(seed)
    model = models.build(arch, **model_kwargs)
    regs.init_model(model)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    optimizer = make_optimizer(cfg, model.parameters())
    run_id = fingerprint({"arch": arch, "regs": regs.describe(), "cfg": cfg, "model": model_cfg,
                          "seed": seed, "data": [data.name, len(data.y_train)]})

    history: list[dict] = []
    records: list = []
    start_epoch = 0
    state = checkpoint.load() if checkpoint is not None else None
    if state is not None and state.get("run_id") == run_id:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = [dict(zip(state["history_columns"], row)) for row in state["history_rows"]]
        records = list(state.get("records", []))
        start_epoch = state["epoch"] + 1

    forward, backend = compiled_forward(model, cfg["compile"], regs)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")  # fp16 gradients underflow unscaled
    if scaler.is_enabled() and start_epoch > 0 and "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    gen = torch.Generator(device=device)
    if regs.needs_annotation and data.mask_train is None:
        raise ValueError(f"regularizer {regs.name!r} penalizes gradients inside each image's annotated region, and "
                         f"{data.name} has none: use it in a study with a planted shortcut (`shortcut:`)")
    n, bs = len(data.y_train), cfg["batch_size"]
    aug = cfg["augment"]
    step = start_epoch * math.ceil(n / bs)
    model.train()
    for epoch in range(start_epoch, cfg["epochs"]):
        torch.manual_seed(_epoch_seed(seed, epoch))
        gen.manual_seed(_epoch_seed(seed, epoch) + 1)
        lr = lr_at(cfg, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        pen_sums = {name: torch.zeros((), device=device) for name in regs.penalty_names}
        synchronize(device)
        t0 = time.perf_counter()
        order = torch.randperm(n, device=device, generator=gen)
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            annotation = None
            if regs.needs_annotation:  # the mask rides along as one more channel, so it moves with the pixels
                both = augment(torch.cat([data.x_train[idx], data.mask_train[idx].unsqueeze(1).to(torch.uint8)], 1),
                               aug["crop_padding"], aug["hflip"], gen)
                x, annotation = to_float(both[:, :-1]), both[:, -1].bool()
            else:
                x = to_float(augment(data.x_train[idx], aug["crop_padding"], aug["hflip"], gen))
            y = data.y_train[idx]
            x = regs.transform_batch(model, x, y)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if regs.needs_input_grad:
                x.requires_grad_(True)
            with regs.perturb_weights(model):
                logits, data_loss, penalties = loss_terms(model, forward, regs, x, y, precision, annotation)
                loss = data_loss + sum(penalties.values()) if penalties else data_loss
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            regs.after_step(model, step)
            with torch.no_grad():
                loss_sum += data_loss.detach() * len(y)
                correct += (logits.detach().argmax(1) == y).sum()
                for name, value in penalties.items():
                    pen_sums[name] += value.detach() * len(y)
        synchronize(device)
        seconds = time.perf_counter() - t0
        train_loss = loss_sum.item() / n
        if not math.isfinite(train_loss):
            raise NonFiniteLoss(f"{arch}, {regs.name}, seed {seed}: the training loss became {train_loss} in "
                                f"epoch {epoch + 1}; no model was written. Lower train.lr or the "
                                "regularizer's strength.")
        test = evaluate(model, data.x_test, data.y_test, cfg["eval_batch_size"])
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_acc": correct.item() / n,
               **{f"penalty_{k}": v.item() / n for k, v in pen_sums.items()},
               "test_loss": test["loss"], "test_acc": test["acc"], "seconds": seconds,
               "images_per_s": n / seconds if seconds > 0 else float("nan")}
        history.append(row)
        if record is not None:
            records.append(record(model))
        if checkpoint is not None:
            columns = list(history[0])
            checkpoint.save({"run_id": run_id, "epoch": epoch, "model": model.state_dict(),
                             "optimizer": optimizer.state_dict(), "history_columns": columns,
                             "history_rows": [[r.get(c) for c in columns] for r in history],
                             **({"records": records} if record is not None else {}),
                             **({"scaler": scaler.state_dict()} if scaler.is_enabled() else {})})
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)

    regs.finish(model)
    final_train = evaluate(model, data.x_train, data.y_train, cfg["eval_batch_size"])
    final_test = evaluate(model, data.x_test, data.y_test, cfg["eval_batch_size"])
    for split, result in (("training", final_train), ("test", final_test)):
        if not math.isfinite(result["loss"]):
            raise NonFiniteLoss(f"{arch}, {regs.name}, seed {seed}: the final model's {split} loss is {result['loss']} "
                                "(the last steps diverged); no model was written. Lower train.lr or the "
                                "regularizer's strength.")
    run_rows = history[start_epoch:] or history
    total_seconds = sum(r["seconds"] for r in history)
    metrics = {
        "train_acc": final_train["acc"], "train_loss": final_train["loss"],
        "test_acc": final_test["acc"], "test_loss": final_test["loss"],
        "epochs": cfg["epochs"], "resumed_from_epoch": start_epoch,
        "train_seconds": total_seconds,
        "images_per_s": sum(n for _ in run_rows) / max(1e-9, sum(r["seconds"] for r in run_rows)),
        "device": str(device), "seed": seed,
        "precision": precision, "channels_last": channels_last, "compiled": backend or False,
        "tf32": bool(cfg["tf32"]) and device.type == "cuda",
    }
    return TrainResult(model=model, model_kwargs=model_kwargs, history=history, metrics=metrics, records=records)
