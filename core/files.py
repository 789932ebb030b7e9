"""Writing files so that nothing half-written is left under the real name; where the kit caches what it rebuilds."""

from __future__ import annotations

import contextlib
import json
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


def rounded(value, digits: int = 6):
    """`value` with every float rounded to `digits` significant digits (0.9724999999999999 -> 0.9725), for JSON."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {key: rounded(item, digits) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(item, digits) for item in value]
    return value


def write_json(path: str | Path, content) -> Path:
    """Writes `content` as indented JSON atomically, floats rounded (`rounded`)."""
    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(rounded(content), indent=2) + "\n")
    return path


def cache_directory() -> Path:
    """Where the kit keeps what it can rebuild (decoded images, converted weights).

    `$CAPTCHA_KIT_CACHE`, else `~/.cache/captcha-kit`; never inside a data
    folder or the repository, and safe to delete.
    """
    return Path(os.environ.get("CAPTCHA_KIT_CACHE") or Path.home() / ".cache" / "captcha-kit")
