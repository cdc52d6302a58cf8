"""Agent memory. Long-term: a role's persistent semantic memory (``longterm``, ChromaDB)
over an offline MiniLM sentence encoder (``encoder``). Importing this package imports
neither chromadb nor numpy; both load on first use."""

from octopussy.memory.encoder import MiniLMEncoder, TextEncoder, find_model_dir
from octopussy.memory.longterm import DEFAULT_ROLE, LongTermMemory, Memory, collection_name

__all__ = [
    "DEFAULT_ROLE",
    "LongTermMemory",
    "Memory",
    "MiniLMEncoder",
    "TextEncoder",
    "collection_name",
    "find_model_dir",
]
