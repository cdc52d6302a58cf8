"""One error root, split by who is at fault.

    OctopussyError
    ├── ConfigError          the user's config (file, key path, what was expected)
    ├── ModelBehaviorError   the LLM produced something we cannot use
    ├── ToolError            a tool failed or was misused
    ├── LimitExceeded        a guard limit stopped the work
    ├── BackendUnavailable   a server we need (model endpoint, IMAP, Redis ...) is down
    └── DeliveryError        the bus could not deliver a message (unknown recipient, full)

Errors carry data and do no I/O. ``str(error)`` is the one line a user sees; ``hint``
(when set) says what to do about it and is appended to that line.
"""

from __future__ import annotations


class OctopussyError(Exception):
    """Root of every error this project raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigError(OctopussyError):
    """The configuration is invalid. ``source`` names the file, ``path`` the key path."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        path: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.source = source
        self.path = path

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.source, self.path) if part)
        line = f"{where}: {self.message}" if where else self.message
        return f"{line} ({self.hint})" if self.hint else line


class ModelBehaviorError(OctopussyError):
    """The model answered, but with something unusable (empty, not JSON, wrong schema)."""

    def __init__(self, message: str, *, raw: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.raw = raw


class ToolError(OctopussyError):
    """A tool call failed in a way the caller should know about."""


class LimitExceeded(OctopussyError):
    """A configured limit (steps, agents, depth, budget) stopped the work."""


class BackendUnavailable(OctopussyError):
    """A server we depend on cannot be reached or refused us."""

    def __init__(self, message: str, *, url: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.url = url


class DeliveryError(OctopussyError):
    """A bus message could not be delivered."""


class UnknownRecipient(DeliveryError):
    """The message names a recipient that is not registered on the bus."""

    def __init__(self, recipient: str, *, sender: str, kind: str) -> None:
        super().__init__(
            f"no agent named {recipient!r} is registered (message {kind} from {sender!r})",
            hint="check the recipient name; `/agents` lists who is running",
        )
        self.recipient = recipient
        self.sender = sender
        self.kind = kind
