"""Every random draw is keyed by content, never by worker, process or clock.

A key is a tuple of strings/ints (global seed, purpose, task, source id, index, ...); the same key gives the
same generator on every machine, Python version and worker count.
"""

from __future__ import annotations

import hashlib

import numpy as np


def key_to_int(*key: object) -> int:
    """128-bit integer from a key tuple (sha256 of its text form; separators make keys unambiguous)."""
    text = "\x1f".join(f"{type(k).__name__}:{k}" for k in key)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:16], "little")


def rng_for(*key: object) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(key_to_int(*key)))
