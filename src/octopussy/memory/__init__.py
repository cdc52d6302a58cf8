"""Agent memory. Short-term: one task's conversation under a token budget (``shortterm``).
Long-term: a role's persistent semantic memory (``longterm``, ChromaDB) over an offline
MiniLM sentence encoder (``encoder``), and how workers use it (``notes``). Importing this
package imports neither chromadb nor numpy; both load on first use."""

from octopussy.memory.encoder import MiniLMEncoder, TextEncoder, find_model_dir
from octopussy.memory.longterm import DEFAULT_ROLE, LongTermMemory, Memory, collection_name
from octopussy.memory.notes import MemoryBank, TaskNotes

__all__ = [
    "DEFAULT_ROLE",
    "LongTermMemory",
    "Memory",
    "MemoryBank",
    "MiniLMEncoder",
    "TaskNotes",
    "TextEncoder",
    "collection_name",
    "find_model_dir",
]
