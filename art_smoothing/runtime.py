"""Process-level speed settings for smoothing on the CPU: glibc's allocator.

Why. CERTIFY shows the model thousands of noisy batches, and every forward pass allocates its
activations afresh (PyTorch has no caching allocator on the CPU). glibc's ``malloc`` serves a request
above its mmap threshold (dynamic, at most 32 MiB) with fresh pages from ``mmap`` and unmaps them on
``free``, and it hands the top of the heap back to the kernel once more than twice that threshold is
free there. A small CNN on a batch of 500 CIFAR-shaped inputs allocates activations of about 32 MB,
so every pass page-faults some 85 MB of new, kernel-zeroed pages: measured on this project's 2-core
VM, 2.1 s of system time in a 3.5 s certification, the same in the raw forward passes, and the part
of the run most sensitive to other load on the machine.

What. :func:`tune_cpu_allocator` raises the mmap threshold to 256 MiB and the trim threshold to
1 GiB (``mallopt``), so those buffers come from the heap and are reused from pass to pass. Memory
freed after a peak then stays with the process (up to 1 GiB more at the heap top than glibc would
keep) instead of going back to the kernel; single allocations above 256 MiB are still mapped and
unmapped as before.

When. A :class:`~art_smoothing.SmoothedClassifier` (or ``NumpySmoothedClassifier``) on the CPU calls
it once when it is built; it applies to the whole process (the floor of
``benchmarks/certify_throughput.py`` and any other model in it benefit alike). Set the environment
variable ``ART_SMOOTHING_MALLOC=default`` to keep glibc's own behaviour. On other C libraries (musl,
macOS, Windows) it does nothing and returns False.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

logger = logging.getLogger(__name__)

__all__ = ["ENV_VAR", "MMAP_THRESHOLD", "TRIM_THRESHOLD", "allocator_tuned", "tune_cpu_allocator"]

#: environment variable: ``default`` (or ``off``/``0``/``false``/``no``) keeps glibc's behaviour
ENV_VAR = "ART_SMOOTHING_MALLOC"
#: requests at or above this many bytes are still served by mmap
MMAP_THRESHOLD = 256 << 20
#: free memory at the heap top beyond this many bytes is returned to the kernel
TRIM_THRESHOLD = 1 << 30

# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_tuned: bool | None = None  # None: not tried yet


def _disabled_by_env() -> bool:
    return os.environ.get(ENV_VAR, "").strip().lower() in ("default", "off", "0", "false", "no")


def tune_cpu_allocator() -> bool:
    """Keep large freed buffers in glibc's heap for reuse (see the module docstring).

    Idempotent: the first call decides, later calls return the same answer.

    :return: True when the settings are in force, False when they were not applied (not glibc, or
        ``ART_SMOOTHING_MALLOC=default``).
    """
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if _disabled_by_env():
        logger.debug("%s=%s: glibc's allocator settings left as they are.", ENV_VAR, os.environ[ENV_VAR])
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - glibc always has mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success and changes nothing on failure. The mmap threshold goes first: setting
    # either parameter switches glibc's dynamic threshold off, so the trim threshold is only set once
    # the mmap one is in force. Old glibc versions refuse mmap thresholds above 32 MiB: fall back to that.
    threshold = next((t for t in (MMAP_THRESHOLD, 32 << 20) if mallopt(_M_MMAP_THRESHOLD, t) == 1), None)
    if threshold is None:
        return False
    mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    _tuned = True
    logger.info("glibc allocator: buffers up to %d MiB are reused from the heap (%s=default to keep glibc's "
                "settings).", threshold >> 20, ENV_VAR)
    return True


def allocator_tuned() -> bool:
    """Whether :func:`tune_cpu_allocator` has put its settings in force in this process."""
    return bool(_tuned)
