"""Dissection stage: Network Dissection of one trained cell on Broden."""
from __future__ import annotations

from pathlib import Path

from reglens import dissect
from reglens.device import resolve_device
from reglens.io import provenance, torch_save, write_csv, write_json
from reglens.stages.common import load_model


def run_dissect(model_path, broden_root, out_dir, cfg: dict | None = None, device: str = "auto") -> dict:
    """Dissect one trained cell: dissect/units.csv, dissect/summary.json and dissect/top.pt."""
    cfg = dissect.settings(cfg)
    dev = resolve_device(device)
    out_dir = Path(out_dir)
    model = load_model(model_path, dev)
    broden = dissect.open_broden(broden_root, cfg)
    result = dissect.dissect(model, broden, cfg, dev)
    units = dissect.unit_table(result)
    summary = dissect.summarize(units, broden.categories, cfg)
    summary["broden"] = {"root": str(broden_root), "images": len(broden), "labels": broden.num_labels - 1,
                         "conventions": dissect.CONVENTIONS[cfg["conventions"]],
                         "seg_shape": list(broden.seg_shape)}
    summary["provenance"] = provenance(dev)
    torch_save(dissect.figure_data(model, broden, result, units, dev), out_dir / "top.pt")
    write_csv(out_dir / "units.csv", units)
    write_json(out_dir / "summary.json", summary)
    return summary
