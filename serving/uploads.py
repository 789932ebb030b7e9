"""The images of a request: its body read within a size bound, then taken raw or from multipart parts.

    body = await read_body(request, max_bytes)          # 413 past max_bytes, before reading it all
    images = images_in_body(body, request.headers.get("content-type"), max_images=64)

The body is bounded while it streams in, whether or not it declares a
Content-Length (a chunked upload declares none), and a declared length over
the bound is refused before a byte is read. Multipart bodies are parsed here
in memory with `python_multipart`: Starlette's own form parser spools files
over 1 MB to a temporary file on disk, and the service writes nothing to disk.
"""

from __future__ import annotations

import asyncio

from python_multipart.multipart import MultipartParser, parse_options_header

BODY_TIMEOUT_SECONDS = 30.0
# Multipart parts taken as images: any part that names a file, or one of these field names.
IMAGE_FIELD_NAMES = ("file", "files", "image", "images")


class UploadError(ValueError):
    """A request whose body cannot be taken; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


async def read_body(request, max_bytes: int, timeout_seconds: float = BODY_TIMEOUT_SECONDS) -> bytes:
    """The request's body, refused with `UploadError` (413) as soon as it is known to exceed `max_bytes`.

    Args:
        request: A Starlette `Request`.
        max_bytes: The largest body accepted.
        timeout_seconds: How long the whole body may take to arrive; a client trickling
            bytes to hold a connection open gets 408 instead.
    """
    try:
        async with asyncio.timeout(timeout_seconds):
            return await _read_bounded(request, max_bytes)
    except TimeoutError as error:
        raise UploadError(f"The body took over {timeout_seconds:g} s to arrive.", 408) from error


async def _read_bounded(request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise UploadError(f"Content-Length must be a number of bytes. Received: {declared!r}", 400)
        if int(declared) > max_bytes:
            raise UploadError(_too_large(f"{int(declared):,} bytes declared", max_bytes), 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise UploadError(_too_large(f"over {max_bytes:,} bytes sent", max_bytes), 413)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(received: str, max_bytes: int) -> str:
    return f"Body too large: {received}; at most {max_bytes:,} bytes are accepted (serve.py --max-bytes)."


def images_in_body(body: bytes, content_type: str | None, max_images: int) -> list[bytes]:
    """The image files a body carries: each file part of a multipart form, or the whole body.

    Args:
        body: The request body.
        content_type: Its Content-Type header; `multipart/form-data` is parsed, anything else is one raw image.
        max_images: The most images accepted.

    Raises:
        UploadError: A malformed form, one without images, or more than `max_images` of them (400).
    """
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "multipart/form-data":
        images = [body]
    else:
        images = [
            data for name, filename, data in parse_multipart(body, content_type) if _is_image_part(name, filename)
        ]
        if not images:
            raise UploadError(
                f"The form holds no file; send the image as a file field (e.g. curl -F file=@captcha.png), "
                f"one of the fields {', '.join(IMAGE_FIELD_NAMES)}.",
                400,
            )
    if len(images) > max_images:
        raise UploadError(f"Too many images: {len(images)}; at most {max_images} per request.", 400)
    return images


def _is_image_part(name: str | None, filename: str | None) -> bool:
    return filename is not None or name in IMAGE_FIELD_NAMES


def parse_multipart(body: bytes, content_type: str) -> list[tuple[str | None, str | None, bytes]]:
    """The parts of a `multipart/form-data` body, in memory: (field name, file name or None, bytes) each.

    Raises:
        UploadError: No boundary in the Content-Type, or a body that is not a well-formed form (400).
    """
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise UploadError("multipart/form-data without a boundary in its Content-Type.", 400)
    parts, header = [], {"field": b"", "value": b""}
    current = {}

    def on_part_begin():
        current.clear()
        current.update(headers={}, data=[])

    def on_header_field(data, start, end):
        header["field"] += data[start:end]

    def on_header_value(data, start, end):
        header["value"] += data[start:end]

    def on_header_end():
        current["headers"][header["field"].decode("latin-1").lower()] = header["value"]
        header["field"], header["value"] = b"", b""

    def on_part_data(data, start, end):
        current["data"].append(data[start:end])

    def on_part_end():
        _, disposition = parse_options_header(current["headers"].get("content-disposition", b""))
        name, filename = disposition.get(b"name"), disposition.get(b"filename")
        parts.append(
            (
                None if name is None else name.decode("utf-8", "replace"),
                None if filename is None else filename.decode("utf-8", "replace"),
                b"".join(current["data"]),
            )
        )

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    }
    parser = MultipartParser(boundary, callbacks)
    try:
        parser.write(body)
        parser.finalize()
    except Exception as error:  # python_multipart's MultipartParseError and friends.
        raise UploadError(f"Malformed multipart/form-data body: {error}", 400) from error
    return parts
