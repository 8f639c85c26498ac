"""Exceptions with one-line, user-facing reasons; ``exit_code`` is what the ``ssrl`` command returns for them.

Exit codes: 0 success; 1 the command ran but its result is not what was asked (nothing usable to build from, a
validation split short of ``--val-fraction``, verify mismatches, an audit failure); 2 a bad command line, config
or input path; 3 the system refused a read or write (permission, disk full), with what was written removed or
left resumable; 130 interrupted.
"""


class SSRLError(Exception):
    """Base class: every error this package raises on bad input or config."""

    exit_code = 2


class NothingUsable(SSRLError):
    """The inputs exist but no sample can be made from them (every file bad, every candidate rejected)."""

    exit_code = 1


class OutputError(SSRLError):
    """Writing the output failed (permission, full disk, read-only folder); the message says what was kept."""

    exit_code = 3


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


class BadFrame(Reject, SourceError):
    """One frame of a sequence cannot be decoded: that draw is rejected (the task draws other frames), the rest of
    the sequence stays usable. ``path`` is the bad file (``VIDEO#INDEX`` for a frame of a video, which has no
    file of its own); ``detail`` the one-line message naming it. The builder lists each such frame once.

    Also a SourceError (a bad input file), so code that reads frames outside a build keeps catching it as one;
    the builder sees it as a Reject first (``dataset.generate`` catches Reject)."""

    REASON = "bad_frame"

    def __init__(self, path: str, message: str, index: int = -1):
        super().__init__(self.REASON, message)
        self.args = (message,)  # its text is the SourceError's: the file first, as every SourceError
        self.path = path
        self.index = index

    def __reduce__(self):  # args hold the message alone: rebuild from what __init__ takes
        return type(self), (self.path, self.detail, self.index)
