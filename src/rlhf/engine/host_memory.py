"""Host memory that a CPU run frees is kept for its next step instead of handed back at once.

glibc serves every allocation above its mmap threshold (at most 32 MiB) with fresh pages from
the kernel and unmaps them on free, so each new large tensor pays a page fault and a zero
fill per 4 KiB page. A training step allocates the same large tensors again and again: the
gradients, the embedding's dense gradient, and under bf16 the half-precision copy of every
weight autocast makes. Measured on a GPT-2-small PPO epoch (AMX Xeon, 2 threads): 2.97 s in
bf16 with glibc's defaults and 1.95 s with freed memory kept; 5.2 s and 4.1 s in float32
(BENCHMARKS.md, "bf16 that is fast"). Intel's PyTorch CPU tuning guides reach the same end
by preloading jemalloc or tcmalloc; this needs no extra library.

The price: memory freed after the run's peak stays with the process until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
"""glibc's mallopt parameters (malloc.h)."""

_KEPT = [False]


def keep_freed_host_memory() -> bool:
    """Serve large allocations from the heap and never trim it (glibc on Linux; elsewhere, or
    where the C library is not glibc, nothing changes). Process-wide and idempotent; True
    when the setting is in force."""
    if _KEPT[0]:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _KEPT[0] = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    return _KEPT[0]
