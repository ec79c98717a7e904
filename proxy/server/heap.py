"""The C allocator's settings for a server that handles bodies of megabytes.

glibc serves an allocation above its mmap threshold (128 KiB at first, raised as big blocks are
freed) with fresh pages from the kernel, and gives the top of its heap back once more than the trim
threshold is free there. Either way a coding agent's 4 MiB body, which the proxy holds a few times
over (aiohttp's read buffer, the joined body, UTF-8 checks in blocks), lands in new pages on every
request, and each 4 KiB page costs a fault: on the VMs measured (bench/, Firecracker) about 1 µs,
3 to 5 ms per 4 MiB, about a quarter of the proxy's CPU on such a request.

`keep_freed_memory` raises both thresholds once, at startup, so big blocks come from the heap and
freed ones are reused. The price is RSS: up to TRIM_THRESHOLD of freed memory may stay mapped after
a burst of big bodies (the kernel reclaims none of it until the process frees more). A user who set
glibc's own MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ keeps their settings; on a libc other
than glibc (musl) nothing is changed.
"""
from __future__ import annotations

import ctypes
import logging
import os
from typing import Callable

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# The largest mmap threshold glibc accepts on 64-bit (HEAP_MAX_SIZE / 2): bodies up to it come from the heap.
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 64 * 1024 * 1024
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds; True when they were set."""
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return False
    # Both: setting either one turns off glibc's own adjustment of the other.
    done = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    if not done:
        log.debug("mallopt refused the thresholds; the allocator keeps its defaults")
    return done


def _glibc_mallopt() -> Callable[[int, int], int] | None:
    try:
        libc = ctypes.CDLL(None)  # the symbols the process already has, libc's among them: no library search
        libc.gnu_get_libc_version  # glibc only: musl's mallopt does nothing
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt
