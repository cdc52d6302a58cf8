"""Octopussy Light: a local-first multi-agent AI assistant.

Importing this package does nothing but define names: no client, file, socket or
environment read happens at import time (STYLE.md §1).
"""

__version__ = "0.1.0"
