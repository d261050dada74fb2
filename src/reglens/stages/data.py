"""Data stage: fetch (or stage) the releases, verify them, convert each once into a tensor file;
fetch or generate Broden."""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from reglens import data
from reglens.data import broden
from reglens.data.download import fetch, md5sum
from reglens.data.synthetic_broden import write_broden
from reglens.io import torch_save, write_json


def fetch_raw(name: str, downloads_dir: str | Path, offline_dir: str | Path | None = None) -> dict[str, Path]:
    """Download (or stage) and verify every raw file of a dataset."""
    return {key: fetch(remote, downloads_dir, offline_dir) for key, remote in data.spec(name).remote.items()}


def download(name: str, downloads_dir: str | Path, offline_dir: str | Path | None, flag: str | Path) -> None:
    """Fetch a dataset's release files and record them (path and md5) in `flag`."""
    raw = fetch_raw(name, downloads_dir, offline_dir)
    write_json(flag, {k: {"path": str(p), "md5": md5sum(p)} for k, p in raw.items()})


def prepare(name: str, out_path: str | Path, downloads_dir: str | Path,
            offline_dir: str | Path | None = None, options: dict | None = None) -> Path:
    """Convert a dataset's release files (or generate a toy dataset from `options`) into its tensor file."""
    raw = fetch_raw(name, downloads_dir, offline_dir)
    torch_save(data.convert(name, raw, options), out_path)
    return Path(out_path)


def fetch_broden(version: str, downloads_dir: str | Path, out_dir: str | Path,
                 offline_dir: str | Path | None = None, md5: str | None = None) -> Path:
    """Download (or stage from `offline_dir`) the checksummed zip and unpack it once into `out_dir`.

    Unpacks into a temporary folder and renames it, so an interrupted unzip leaves nothing behind.
    Returns the folder that holds index.csv."""
    out_dir = Path(out_dir)
    if not (out_dir / "index.csv").exists():
        archive = fetch(broden.remote(version, md5), downloads_dir, offline_dir)
        tmp = out_dir.with_name(out_dir.name + ".unpacking")
        shutil.rmtree(tmp, ignore_errors=True)
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(tmp)
        found = sorted(tmp.rglob("index.csv"), key=lambda p: len(p.parts))
        if not found:
            shutil.rmtree(tmp)
            raise broden.BrodenFormatError(f"{archive}: no index.csv inside; not a Broden archive")
        shutil.rmtree(out_dir, ignore_errors=True)
        found[0].parent.rename(out_dir)
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def broden_folder(settings: dict, out_dir: str | Path, downloads_dir: str | Path,
                  offline_dir: str | Path | None) -> Path:
    """Broden as `dissect.broden` configures it: the released zip, or the synthetic stand-in."""
    if settings["source"] == "synthetic":
        s = settings["synthetic"]
        write_broden(out_dir, n_images=s["images"], seg_size=s["seg_size"], scale=s["scale"], seed=s["seed"])
        return Path(out_dir)
    return fetch_broden(settings["version"], downloads_dir, out_dir, offline_dir=offline_dir, md5=settings["md5"])
