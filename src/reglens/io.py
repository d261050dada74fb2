"""Atomic file output and provenance records."""
from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import torch


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_csv(path, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def torch_save(obj, path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _json_default(value):
    if isinstance(value, (Path,)):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def git_commit(start: str | os.PathLike | None = None) -> str:
    here = Path(start or __file__).resolve()
    cwd = here if here.is_dir() else here.parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def provenance(device: torch.device | str | None = None, seed: int | None = None) -> dict:
    from reglens import __version__

    device = torch.device(device) if device is not None else None
    record = {
        "reglens_version": __version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "hostname": platform.node(),
        "torch_threads": torch.get_num_threads(),  # CPU sums depend on it
    }
    if device is not None:
        record["device"] = str(device)
        record["device_name"] = (torch.cuda.get_device_name(device) if device.type == "cuda"
                                 else platform.processor() or platform.machine())
    if seed is not None:
        record["seed"] = seed
    return record


@contextlib.contextmanager
def log_to(path: str | os.PathLike | None):
    """Send stdout and stderr of the block to a log file (appending; None: leave them alone)."""
    if path is None:
        yield
        return
    import sys

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as handle, contextlib.redirect_stdout(handle), \
            contextlib.redirect_stderr(handle):
        try:
            yield
        except BaseException:
            import traceback

            traceback.print_exc(file=handle)
            raise
        finally:
            sys.stdout.flush()
