"""The project's files: atomic, byte-reproducible writes with an integrity record beside each file;
reads that fail naming the file and the fix; provenance records; job logs.

Every file written here gets a hidden sidecar `.<name>.integrity` (sha256, size, mtime). A file that
no longer matches its record was damaged after it was written; `check_intact` says so before any job
runs, so a damaged intermediate file never makes the workflow delete the results built from it.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import tempfile
import traceback
import zipfile
from pathlib import Path

import pandas as pd
import torch

from reglens import __version__

_UMASK = os.umask(0)
os.umask(_UMASK)
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class DamagedFile(RuntimeError):
    """A project file that cannot be read, or no longer matches what was written."""


class DiskFull(OSError):
    """Writing a file failed because its file system (or a file-size limit) has no room."""


def fix_hint(path) -> str:
    return (f"It is a file the workflow writes: delete it and rebuild just that file first "
            f"(rm {path} && snakemake {path}, with your usual options; the same seed gives the same bytes), "
            "then rerun your command. Nothing else was changed.")


def sidecar(path) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.integrity")


def sha256sum(path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _disk_cause(exc: BaseException) -> OSError | None:
    """The out-of-space OSError behind an exception (torch wraps it in a RuntimeError), if any."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _DISK_ERRORS:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _record(path: Path) -> None:
    stat = path.stat()
    record = {"sha256": sha256sum(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    fd, tmp = tempfile.mkstemp(prefix=".integrity.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(record, handle)
    os.replace(tmp, sidecar(path))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, record: bool = True):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds, then
    record the file's integrity (`record`: outputs of jobs, not tracked sources such as README.md,
    whose integrity git keeps). A full disk fails naming the file, the free space and the fix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        try:
            yield Path(tmp)
        except Exception as exc:
            cause = _disk_cause(exc)
            if cause is None:
                raise
            free = shutil.disk_usage(path.parent).free
            raise DiskFull(cause.errno, f"writing {path} failed: {os.strerror(cause.errno)} ({free / 1e9:.2f} GB "
                                        f"free on its file system). Free space there (or move results/ and "
                                        f"data.root to a larger disk) and rerun; nothing half-written was kept."
                           ) from exc
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        sidecar(path).unlink(missing_ok=True)  # a crash from here on leaves a file without a record
        os.replace(tmp, path)
        if record:
            _record(path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def check_intact(path) -> None:
    """Raise DamagedFile if `path` no longer matches the integrity record written with it (a file
    without a record, e.g. a download, is not checked here). Cheap unless its time changed."""
    path, record_path = Path(path), sidecar(path)
    if not path.is_file() or not record_path.exists():
        return
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return  # an unreadable record proves nothing about the file
    stat = path.stat()
    if stat.st_size != record["size"]:
        raise DamagedFile(f"{path} is damaged: {stat.st_size} bytes where {record['size']} were written. "
                          + fix_hint(path))
    if stat.st_mtime_ns != record["mtime_ns"] and sha256sum(path) != record["sha256"]:
        raise DamagedFile(f"{path} is damaged: its content changed after it was written. " + fix_hint(path))


def finished(path) -> bool:
    """Whether `path` is a file exactly as its writer finished it: its integrity record (written after
    the file itself was renamed into place) matches its size and sha256."""
    path, record_path = Path(path), sidecar(path)
    try:
        record = json.loads(record_path.read_text())
        return path.stat().st_size == record["size"] and sha256sum(path) == record["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def write_json(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_csv(path, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def torch_save(obj, path) -> None:
    """torch.save through a file object, so the archive's internal name is fixed ('archive') rather
    than the temporary file's: the same object gives the same bytes."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)


_UNREADABLE = (RuntimeError, EOFError, ValueError, KeyError, pickle.UnpicklingError, zipfile.BadZipFile,
               UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError)


@contextlib.contextmanager
def _reading(path):
    try:
        yield
    except FileNotFoundError:
        raise
    except _UNREADABLE as exc:
        raise DamagedFile(f"{path} cannot be read ({type(exc).__name__}: {str(exc)[:200]}). "
                          + fix_hint(path)) from exc


def load_torch(path, mmap: bool = False):
    """torch.load(weights_only=True) onto the CPU; a damaged or foreign file fails naming it and the fix.
    `mmap`: tensors are read from disk only when touched (one layer of a large checkpoint)."""
    with _reading(path):
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def read_json(path):
    with _reading(path):
        return json.loads(Path(path).read_text())


def read_csv(path) -> pd.DataFrame:
    with _reading(path):
        return pd.read_csv(path)


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
    device = torch.device(device) if device is not None else None
    record = {
        "reglens_version": __version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "hostname": platform.node(),
        "torch_threads": torch.get_num_threads(),  # CPU sums depend on it
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),  # None outside SLURM
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
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as handle, contextlib.redirect_stdout(handle), \
            contextlib.redirect_stderr(handle):
        try:
            yield
        except BaseException:
            traceback.print_exc(file=handle)
            raise
        finally:
            sys.stdout.flush()
