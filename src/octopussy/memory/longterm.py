"""``LongTermMemory``: what worker agents learned, kept across worker shutdowns (ChromaDB).

    add(text, task_id) ──encoder──► vector ──► Chroma collection "memory-<role>" (on disk)
    recall(query)      ──encoder──► nearest k ──► keep similarity ≥ threshold ──► [Memory]
    prune(now)         ──► drop entries older than max_age_days, then the oldest beyond
                           max_entries

One persistent Chroma database lives under the data dir; each worker *role* has its own
collection (default: one shared ``worker`` memory), so a new worker of a role finds what an
earlier one stored, and roles never see each other's entries. Every entry carries its task
id, kind and creation time (epoch seconds from an injectable clock).

Scores are **cosine similarities** in [-1, 1] (1 = same direction; the collection uses the
cosine space and ``score = 1 - distance``). ``threshold`` is the minimum similarity a hit
needs; 0.55 keeps paraphrases and tasks on the same file or topic (0.6–0.9 measured) and
drops merely similar requests ("which .txt files…" vs "which file mentions…": 0.51).

Vectors come from our own ``MiniLMEncoder`` wrapped as a Chroma embedding function; Chroma's
default embedding function would download a model at run time and is never used. Telemetry
is off. chromadb is imported lazily, on first use. Chroma calls block, so every method runs
in a thread (``asyncio.to_thread``) and one memory's calls are serialised by a lock.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, cast

from octopussy.errors import BackendUnavailable
from octopussy.memory.encoder import MODEL_NAME, MiniLMEncoder, TextEncoder

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection
    from chromadb.api.types import EmbeddingFunction, Where

DEFAULT_ROLE: Final = "worker"
EMBEDDING_FUNCTION_NAME: Final = "octopussy_minilm_l6_v2"
_RESERVED: Final = frozenset({"task_id", "kind", "created_at", "role"})
_DAY: Final = 86400.0
MetadataValue = str | int | float | bool


@dataclass(frozen=True, slots=True)
class Memory:
    """One recalled entry. ``score`` is the cosine similarity to the query (higher = closer)."""

    text: str
    task_id: str
    created_at: float
    score: float
    kind: str
    id: str = ""
    metadata: dict[str, MetadataValue] = field(default_factory=dict)


def collection_name(role: str) -> str:
    """Chroma collection name for a role: ``memory-<slug>``, valid for any role string.

    Chroma allows 3-512 characters of ``[a-zA-Z0-9._-]`` starting and ending alphanumeric.
    When the slug is not the role itself, a short hash of the role keeps distinct roles
    (``"Mail Agent"`` / ``"mail-agent"``) in distinct collections.
    """
    if not role:
        raise ValueError("role must not be empty")
    slug = re.sub(r"[^a-z0-9_-]+", "-", role.lower()).strip("-_")[:60].strip("-_")
    if slug == role:
        return f"memory-{slug}"
    digest = hashlib.sha256(role.encode("utf-8")).hexdigest()[:10]
    return f"memory-{slug}-{digest}" if slug else f"memory-{digest}"


@functools.cache
def _embedding_function_class() -> type[EmbeddingFunction[Any]]:
    """The Chroma embedding-function class around our encoder, defined on first use.

    Defined lazily so importing this module does not import chromadb; registered (once per
    process) because Chroma rebuilds a persisted collection's function by name on reopen.
    """
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
    from chromadb.utils.embedding_functions import register_embedding_function

    class EncoderEmbeddingFunction(EmbeddingFunction[Documents]):
        def __init__(self, encoder: TextEncoder) -> None:
            self.encoder = encoder

        def __call__(self, input: Documents) -> Embeddings:
            return list(self.encoder.encode(list(input)))

        @staticmethod
        def name() -> str:
            return EMBEDDING_FUNCTION_NAME

        def default_space(self) -> Space:
            return "cosine"

        def supported_spaces(self) -> list[Space]:
            return ["cosine"]

        @staticmethod
        def build_from_config(config: dict[str, Any]) -> EncoderEmbeddingFunction:
            model_dir = config.get("model_dir")
            return EncoderEmbeddingFunction(MiniLMEncoder(Path(model_dir) if model_dir else None))

        def get_config(self) -> dict[str, Any]:
            # Chroma persists this; never resolve the model dir here (that may fail offline
            # with a fake encoder), only name the model.
            return {"model": MODEL_NAME}

    register_embedding_function(EncoderEmbeddingFunction)  # type: ignore[no-untyped-call]
    return EncoderEmbeddingFunction


def make_embedding_function(encoder: TextEncoder) -> EmbeddingFunction[Any]:
    """A Chroma embedding function that embeds with ``encoder`` (imports chromadb)."""
    return _embedding_function_class()(encoder)


class LongTermMemory:
    """A role's persistent semantic memory in a Chroma database at ``path``.

    ``threshold`` is the minimum cosine similarity for ``recall``; ``max_entries`` and
    ``max_age_days`` (None: no age limit) bound what ``prune`` keeps. ``clock`` gives the
    creation time of new entries and the default ``now`` for ``prune``. Pass one shared
    ``encoder`` to every memory in a process (the model is ~90 MB).
    """

    def __init__(
        self,
        path: Path,
        *,
        role: str = DEFAULT_ROLE,
        encoder: TextEncoder | None = None,
        threshold: float = 0.55,
        max_entries: int = 5000,
        max_age_days: float | None = 180,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not -1.0 <= threshold <= 1.0:
            raise ValueError("threshold is a cosine similarity in [-1, 1]")
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        if max_age_days is not None and max_age_days <= 0:
            raise ValueError("max_age_days must be > 0 or None")
        self.path = Path(path)
        self.role = role
        self.collection_name = collection_name(role)
        self.encoder: TextEncoder = encoder if encoder is not None else MiniLMEncoder()
        self.threshold = threshold
        self.max_entries = max_entries
        self.max_age_days = max_age_days
        self._clock = clock
        self._lock = threading.Lock()
        self._client: ClientAPI | None = None
        self._collection: Collection | None = None
        self._closed = False

    # -- async API ---------------------------------------------------------------------

    async def add(
        self,
        text: str,
        *,
        task_id: str,
        kind: str = "result",
        metadata: Mapping[str, MetadataValue] | None = None,
    ) -> str:
        """Store ``text``; returns the new entry's id."""
        if not text.strip():
            raise ValueError("cannot remember empty text")
        extra = dict(metadata or {})
        clash = _RESERVED & extra.keys()
        if clash:
            raise ValueError(f"metadata keys {sorted(clash)} are reserved")
        for key, value in extra.items():
            if not isinstance(value, (str, int, float, bool)):
                raise TypeError(f"metadata {key!r} must be str, int, float or bool")
        return await asyncio.to_thread(self._add, text, task_id, kind, extra)

    async def recall(self, query: str, *, k: int = 5, kind: str | None = None) -> list[Memory]:
        """Up to ``k`` entries most similar to ``query`` with similarity ≥ ``threshold``,
        best first; ``kind`` restricts to entries of that kind."""
        if k < 1 or not query.strip():
            return []
        return await asyncio.to_thread(self._recall, query, k, kind)

    async def prune(self, now: float | None = None) -> int:
        """Delete entries older than ``max_age_days``, then the oldest beyond
        ``max_entries``; returns how many were deleted."""
        return await asyncio.to_thread(self._prune, self._clock() if now is None else now)

    async def count(self) -> int:
        return await asyncio.to_thread(self._count)

    async def close(self) -> None:
        """Release the Chroma client (idempotent); the data stays on disk."""
        await asyncio.to_thread(self._close)

    async def __aenter__(self) -> LongTermMemory:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- blocking side (worker threads) ------------------------------------------------

    def _open(self) -> Collection:
        if self._closed:
            raise RuntimeError("this LongTermMemory is closed")
        if self._collection is not None:
            return self._collection
        import chromadb
        from chromadb.config import Settings

        try:
            self.path.mkdir(parents=True, exist_ok=True)
            client = chromadb.PersistentClient(
                path=self.path,
                # No telemetry, no network: the memory is local and works offline.
                settings=Settings(anonymized_telemetry=False, allow_reset=False),
            )
            collection = client.get_or_create_collection(
                self.collection_name,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"role": self.role},
                embedding_function=make_embedding_function(self.encoder),
            )
        except Exception as exc:  # chromadb raises many types; one clear line for the user
            raise BackendUnavailable(
                f"cannot open long-term memory at {self.path}: {exc}",
                hint="check that the data dir is writable and not used by another version",
            ) from exc
        self._client, self._collection = client, collection
        return collection

    def _add(self, text: str, task_id: str, kind: str, extra: dict[str, MetadataValue]) -> str:
        entry_id = uuid.uuid4().hex
        meta: dict[str, MetadataValue] = {
            **extra,
            "task_id": task_id,
            "kind": kind,
            "created_at": float(self._clock()),
            "role": self.role,
        }
        with self._lock:
            self._open().add(ids=[entry_id], documents=[text], metadatas=[meta])
        return entry_id

    def _recall(self, query: str, k: int, kind: str | None) -> list[Memory]:
        with self._lock:
            collection = self._open()
            total = collection.count()
            if total == 0:
                return []
            result = collection.query(
                query_texts=[query],
                n_results=min(k, total),
                where={"kind": kind} if kind is not None else None,
                include=["documents", "metadatas", "distances"],
            )
        ids = result["ids"][0]
        documents = (result["documents"] or [[]])[0]
        metadatas = (result["metadatas"] or [[]])[0]
        distances = (result["distances"] or [[]])[0]
        memories = []
        for entry_id, text, meta, distance in zip(
            ids, documents, metadatas, distances, strict=True
        ):
            score = 1.0 - float(distance)
            if score < self.threshold:
                continue
            metadata = dict(meta or {})
            memories.append(
                Memory(
                    text=text or "",
                    task_id=str(metadata.pop("task_id", "")),
                    created_at=float(metadata.pop("created_at", 0.0)),  # type: ignore[arg-type]
                    score=score,
                    kind=str(metadata.pop("kind", "")),
                    id=entry_id,
                    metadata={
                        key: value
                        for key, value in metadata.items()
                        if key != "role" and isinstance(value, (str, int, float, bool))
                    },
                )
            )
        return memories

    def _prune(self, now: float) -> int:
        with self._lock:
            collection = self._open()
            deleted = 0
            if self.max_age_days is not None:
                cutoff = now - self.max_age_days * _DAY
                where = cast("Where", {"created_at": {"$lt": cutoff}})
                old = collection.get(where=where, include=[])["ids"]
                deleted += self._delete(collection, old)
            excess = collection.count() - self.max_entries
            if excess > 0:
                rows = collection.get(include=["metadatas"])
                metas = rows["metadatas"] or [{} for _ in rows["ids"]]
                by_age = sorted(
                    zip(rows["ids"], metas, strict=True),
                    key=lambda row: (_created_at(row[1]), row[0]),
                )
                deleted += self._delete(collection, [entry_id for entry_id, _ in by_age[:excess]])
            return deleted

    def _delete(self, collection: Collection, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        assert self._client is not None
        step = max(1, self._client.get_max_batch_size())
        for start in range(0, len(ids), step):
            collection.delete(ids=list(ids[start : start + step]))
        return len(ids)

    def _count(self) -> int:
        with self._lock:
            return self._open().count()

    def _close(self) -> None:
        with self._lock:
            client, self._client, self._collection = self._client, None, None
            self._closed = True
            if client is not None:
                close = getattr(client, "close", None)
                if callable(close):
                    close()


def _created_at(meta: Mapping[str, Any] | None) -> float:
    value = (meta or {}).get("created_at", 0.0)
    return float(value) if isinstance(value, (int, float)) else 0.0
