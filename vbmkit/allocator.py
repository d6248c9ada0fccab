"""CPU memory allocator settings for the large temporaries of the pipeline (glibc's malloc).

glibc's malloc serves every request above 32 MiB (and, with its default dynamic threshold, most
above 128 KiB) with a fresh ``mmap`` and returns it to the system on ``free``. A 1.5 mm template
field is 21 MB in float32 and 42 MB in float64, and the pipeline makes and drops thousands of
them, so each new tensor is paid for again in page faults: in the virtual machines this was
measured on, more than the arithmetic (``benchmarks/allocator_speed.py``). :func:`tune_cpu_allocator`
makes malloc keep freed memory for reuse instead: no ``mmap`` per allocation (``M_MMAP_MAX = 0``),
free memory at the top of the heap is given back only above 1 GiB (``M_TRIM_THRESHOLD``), and the
heap grows in steps of 64 MiB (``M_TOP_PAD``). Results do not change (no arithmetic does); the
process keeps up to its peak use plus 1 GiB (peak RAM: ``benchmarks/preprocess_speed.py``).

Set the environment variable ``VBMKIT_MALLOC=default`` to leave malloc as it is.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

#: mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
SETTINGS = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20))


@functools.cache
def tune_cpu_allocator() -> bool:
    """Apply :data:`SETTINGS` to glibc's malloc in this process, once.

    Returns
    -------
    bool
        True when the settings are in force; False on other C libraries (macOS, musl, Windows)
        and with ``VBMKIT_MALLOC=default``, where malloc is left as it is.
    """
    if os.environ.get("VBMKIT_MALLOC", "").strip().lower() == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return all(int(libc.mallopt(param, value)) == 1 for param, value in SETTINGS)
    except (OSError, AttributeError):  # not glibc
        return False
