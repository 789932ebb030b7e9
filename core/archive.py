"""Size checks on a zip archive such as a `.keras` model file, before anything parses it.

A zip member's declared size can lie, and a small file can inflate to
gigabytes (a 1.4 MB file whose config.json inflates to 1 GiB). So every
member is inflated in bounded blocks and counted, never read whole, and
nothing else of the file is touched until `check_archive` has passed.
`read_member` is the one way the kit reads a member itself.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

MIB = 1024**2
BLOCK = 1 * MIB


class OversizedModelError(ValueError):
    """A member of the model file is larger than the limits allow; the file was not parsed."""


@dataclass(frozen=True)
class ArchiveLimits:
    """Largest sizes accepted, uncompressed.

    Attributes:
        config_bytes: config.json (the architecture; a few hundred kB for real models).
        member_bytes: Any other member (the weights).
        total_bytes: All members together.
        members: Number of members.
    """

    config_bytes: int = 16 * MIB
    member_bytes: int = 2048 * MIB
    total_bytes: int = 2048 * MIB
    members: int = 1000


DEFAULT_LIMITS = ArchiveLimits()


def check_archive(path: str | Path, limits: ArchiveLimits = DEFAULT_LIMITS) -> dict[str, int]:
    """Inflates every member in bounded blocks and checks its real size against `limits`.

    Returns:
        {member name: uncompressed size}.

    Raises:
        OversizedModelError: A member, or all of them, is over its limit.
        ValueError: Not a zip archive.
    """
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"{path} is not a Keras model (.keras files are zip archives): {error}") from None
    sizes, total = {}, 0
    with archive:
        members = archive.infolist()
        if len(members) > limits.members:
            raise OversizedModelError(f"{path} holds {len(members)} members; at most {limits.members} are accepted.")
        for member in members:
            limit = limits.config_bytes if member.filename == "config.json" else limits.member_bytes
            limit = min(limit, limits.total_bytes - total)
            size = _inflated_size(archive, member, limit, path)
            sizes[member.filename] = size
            total += size
    return sizes


def read_member(path: str | Path, name: str, limit: int) -> bytes:
    """The bytes of one member, refused once more than `limit` bytes come out.

    Raises:
        KeyError: No such member.
        OversizedModelError: It inflates past `limit`.
    """
    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo(name)
        if member.file_size > limit:
            raise OversizedModelError(_too_large(path, name, member.file_size, limit))
        with archive.open(member) as stream:
            data = stream.read(limit + 1)
    if len(data) > limit:
        raise OversizedModelError(_too_large(path, name, len(data), limit))
    return data


def _inflated_size(archive: zipfile.ZipFile, member: zipfile.ZipInfo, limit: int, path: Path) -> int:
    if member.file_size > limit:
        raise OversizedModelError(_too_large(path, member.filename, member.file_size, limit))
    size = 0
    try:
        with archive.open(member) as stream:
            while block := stream.read(BLOCK):
                size += len(block)
                if size > limit:
                    raise OversizedModelError(_too_large(path, member.filename, size, limit))
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{path} is a damaged archive ({member.filename}: {error})") from None
    return size


def _too_large(path, name: str, size: int, limit: int) -> str:
    return f"{path}: {name} inflates to more than {limit / MIB:.0f} MiB ({size / MIB:.0f} MiB or more seen); refused."
