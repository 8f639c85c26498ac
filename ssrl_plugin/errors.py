"""Exceptions with one-line, user-facing reasons."""


class SSRLError(Exception):
    """Base class: every error this package raises on bad input or config."""


class ConfigError(SSRLError, ValueError):
    """A config key has an absurd or unknown value. The message names the key."""


class SourceError(SSRLError):
    """An input file cannot be used (corrupt, too small, NaN depth, size mismatch...).

    The message is one line and names the file; the build skips that source and goes on.
    """


class Reject(SSRLError):
    """A generated sample is ambiguous or impossible on this source; ``reason`` is a short stable key
    (e.g. ``"shuffle/near_duplicate_patches"``) that the builder counts in the manifest."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
