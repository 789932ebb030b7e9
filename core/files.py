"""Writing files so that nothing half-written is ever left under the real name."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yields a temporary path beside `path`; renames it to `path` only if the block succeeds.

    The temporary name keeps the suffix (`.x.tmp123.keras`), for writers that
    check it. On an exception, or Ctrl-C, the temporary file is removed and
    whatever was at `path` before is untouched.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
