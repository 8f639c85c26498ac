"""Keep numpy's temporaries on reused heap pages during a build (glibc only; a no-op elsewhere).

glibc's malloc serves blocks above its mmap threshold (128 KiB at start, raised only as large blocks are freed)
with fresh ``mmap`` pages and gives heap tops above the trim threshold back to the system. A build allocates and
frees such blocks all the time (a 120x120 RGB float32 option is 169 KiB, a MegaDepth depth map 6.5 MiB), so every
temporary paid page faults and zero-filling: ~600 faults per crop sample, a tenth of its CPU time on this project's
benchmark. Raising both thresholds lets freed blocks be reused; the price is that up to ``TRIM_THRESHOLD`` of freed
memory stays mapped per process, which ``bench/bench_scale.py`` measures in the peak-memory check.

Only a build's own processes call :func:`tune_for_build` (the main process and each worker): importing the package
changes nothing, and a trainer that imports our reward functions keeps its allocator as it was.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's upper limit on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD = 128 * 1024 * 1024

_tuned: bool | None = None


def tune_for_build() -> bool:
    """Raise glibc's mmap and trim thresholds for this process, once. Returns whether they are set (False on other
    C libraries, or where ``mallopt`` refuses)."""
    global _tuned
    if _tuned is None:
        _tuned = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                mallopt = libc.mallopt
            except (OSError, AttributeError):  # musl and other C libraries: nothing to tune
                return False
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            # mallopt returns 1 on success; the mmap threshold first: setting it fixes the trim threshold's default
            _tuned = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _tuned
