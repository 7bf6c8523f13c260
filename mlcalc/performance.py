"""Opt-in process-wide tuning for speed.

Each evaluation allocates and frees per-edge buffers of tens to hundreds of MB. glibc serves
blocks that large with ``mmap`` and returns them to the operating system when freed, so every
step page-faults its working memory in again. :func:`tune_memory_allocator` makes glibc keep
such blocks in the heap instead. Measured here (NEMP small, 1,536 atoms of water, float32,
six steps): half the minor page faults and system time, about 15–20 % faster steps
(``docs/benchmarks.md``), at the cost of the process keeping its peak memory until it exits.

This changes the allocator of the whole process, so mlcalc never does it on import or when a
calculator is built: call it yourself at the start of a script (the ``mlcalc`` command line
does, for its own process). The same effect from the shell:
``MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 python script.py``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_memory_allocator(threshold_bytes: int = 1 << 30) -> bool:
    """Serve and keep blocks below ``threshold_bytes`` in the heap (glibc ``mallopt``).

    Returns ``True`` when the allocator was tuned, ``False`` where this does not apply
    (not Linux, or a C library without ``mallopt``).
    """
    if threshold_bytes <= 0:
        raise ValueError(f"threshold_bytes must be positive, got {threshold_bytes}")
    if platform.system() != "Linux":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    threshold = min(threshold_bytes, 2**31 - 1)
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, threshold)
    )
