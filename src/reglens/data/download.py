"""Checksummed downloads, with staging from a local folder for offline clusters."""
from __future__ import annotations

import hashlib
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from reglens.io import atomic_path


class ChecksumError(RuntimeError):
    pass


class MissingOfflineFile(FileNotFoundError):
    pass


@dataclass(frozen=True)
class RemoteFile:
    filename: str
    urls: tuple[str, ...]
    md5: str


def md5sum(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, expected_md5: str, fix: str = "") -> None:
    got = md5sum(path)
    if got != expected_md5:
        raise ChecksumError(f"{path}: md5 {got} does not match the expected {expected_md5}; "
                            "the file is corrupt or not the official release." + (f" {fix}" if fix else ""))


def fetch(remote: RemoteFile, dest_dir: str | Path, offline_dir: str | Path | None = None,
          timeout: float = 60.0) -> Path:
    """Return a verified local copy of `remote` in `dest_dir`.

    With `offline_dir`, the file is copied from there instead of downloaded.
    """
    dest = Path(dest_dir) / remote.filename
    if dest.exists():
        verify(dest, remote.md5, f"Delete it (rm {dest}) and rerun to fetch it again"
                                 + (f" from {Path(offline_dir) / remote.filename}." if offline_dir else
                                    f" from {remote.urls[0]}."))
        return dest
    if offline_dir is not None:
        source = Path(offline_dir) / remote.filename
        if not source.exists():
            raise MissingOfflineFile(
                f"offline staging: {source} is missing. Download {remote.filename} "
                f"(md5 {remote.md5}) from {remote.urls[0]} on a machine with internet and "
                f"place it in {Path(offline_dir).resolve()}")
        verify(source, remote.md5, f"Replace it with the official {remote.filename} from {remote.urls[0]}.")
        with atomic_path(dest) as tmp:
            shutil.copyfile(source, tmp)
        return dest
    errors = []
    for url in remote.urls:
        try:
            with atomic_path(dest) as tmp:
                with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                    shutil.copyfileobj(response, out, 1 << 20)
                verify(tmp, remote.md5)
            return dest
        except ChecksumError:
            raise
        except OSError as exc:  # URLError is an OSError
            errors.append(f"{url}: {exc}")
    raise ConnectionError(f"could not download {remote.filename}: " + "; ".join(errors)
                          + ". On a cluster without internet set data.offline_dir in the config.")
