"""Files the package keeps: the cache directory and atomic writes.

One cache directory serves every cached artefact (trained bundled models, variational radius tables):
``$ART_SMOOTHING_CACHE`` or ``~/.cache/art_smoothing``. Every file the package writes for later reading
goes through :func:`atomic_write` (a temporary file in the same folder, then ``os.replace``), so a crash
or a full disk never leaves a half-written file under the final name.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

__all__ = ["CACHE_ENV_VAR", "atomic_write", "atomic_write_text", "cache_dir"]

#: environment variable naming the cache directory
CACHE_ENV_VAR = "ART_SMOOTHING_CACHE"


def cache_dir(*parts: str) -> str:
    """``$ART_SMOOTHING_CACHE`` (or ``~/.cache/art_smoothing``), joined with ``parts`` (not created)."""
    root = os.environ.get(CACHE_ENV_VAR) or os.path.join(os.path.expanduser("~"), ".cache", "art_smoothing")
    return os.path.join(root, *parts)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Write ``path`` through ``write(tmp_path)`` into a temporary file of the same folder, then rename it
    into place; on any error the temporary file is removed and ``path`` is untouched."""
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write` of a UTF-8 text."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    atomic_write(path, write)
