"""Dissection stage: Network Dissection of one trained cell on Broden."""
from __future__ import annotations

from pathlib import Path

from reglens import dissect
from reglens.data.broden import decode
from reglens.device import resolve_device
from reglens.io import provenance, torch_save, write_csv, write_json
from reglens.stages.common import load_model


def run_dissect(model_path, broden_root, out: dict, cfg: dict | None = None, device: str = "auto",
                decoded=None) -> dict:
    """Dissect one trained cell into `out`'s units (table), summary and top (figure data), reading
    images and masks from the decoded copy `decoded` when given."""
    cfg = dissect.settings(cfg)
    dev = resolve_device(device)
    model = load_model(model_path, dev)
    broden = dissect.open_broden(broden_root, cfg, decoded)
    result = dissect.dissect(model, broden, cfg, dev)
    units = dissect.unit_table(result)
    summary = dissect.summarize(units, broden.categories, cfg)
    summary["broden"] = {"root": str(broden_root), "decoded": str(decoded) if decoded else None,
                         "images": len(broden), "labels": broden.num_labels - 1,
                         "conventions": dissect.CONVENTIONS[cfg["conventions"]],
                         "seg_shape": list(broden.seg_shape), "tally_engine": result["engine"]}
    summary["provenance"] = provenance(dev)
    torch_save(dissect.figure_data(model, broden, result, units, dev), out["top"])
    write_csv(out["units"], units)
    write_json(out["summary"], summary)
    return summary


def decode_broden(broden_root, out_dir, view_cfg: dict | None, sizes, workers: int = 0) -> Path:
    """Broden as the dissection reads it (categories, conventions of `view_cfg`) decoded once into
    memory-mappable arrays at each (input size, channels) of `sizes`."""
    broden = dissect.open_broden(broden_root, dissect.settings(view_cfg))
    out = decode(broden, out_dir, sizes, workers)
    print(f"decoded {len(broden)} images at {sizes} and their masks into {out}")
    return out
