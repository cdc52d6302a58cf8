"""Real Dovecot fixtures for the mail tests (defined in tests/dovecot.py)."""

from dovecot import dovecot, dovecot_noidle

__all__ = ["dovecot", "dovecot_noidle"]
