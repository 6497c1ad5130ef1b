"""Keep the coordinator's native memory flat under long load.

glibc gives each thread that allocates its own malloc arena (up to eight per core) and rarely hands freed
arena memory back. The coordinator's database work runs in threads (SQLite's writer thread and a few reader
threads; PostgreSQL's units of work), so a busy server's RSS creeps up by arena fragments long after the load
has gone. Two arenas are plenty for an event loop and a few database threads; the soak run (`bench/soak.py`)
measures the effect.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt's parameter number for the arena cap (glibc's malloc.h: M_ARENA_MAX).
_M_ARENA_MAX = -8
COORDINATOR_ARENAS = 2


def limit_malloc_arenas(arenas: int = COORDINATOR_ARENAS) -> bool:
    """Cap glibc's malloc arenas for threads started from now on; True if the cap was set.

    An operator's own `MALLOC_ARENA_MAX` wins; on a C library other than glibc this does nothing.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        library = ctypes.CDLL(name)
        mallopt = library.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))
