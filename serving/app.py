"""The FastAPI application: the page, the JSON API and the batcher over one model chosen at start-up.

    app = create_app(ServiceSettings(model="reference/reference.keras"))
    uvicorn.run(app, host="127.0.0.1", port=8000)       # what `python serve.py` does

Endpoints (OpenAPI at /docs and /openapi.json):
    GET  /                     the page (serving/page/): new CAPTCHAs, uploads, readings, a tally
    POST /api/read             one image, multipart file or raw body -> text, per-character confidences
    POST /api/read_batch       up to 64 images (multipart files) -> one result per image
    GET  /api/captcha?seed=S   a fresh CAPTCHA as PNG, its text in the X-Captcha-Text header
    GET  /api/captcha.json     the same as JSON, the image as a data URL
    GET  /api/model            alphabet, length, input size, parameters, file size
    GET  /healthz              answers while the service is up, with the batcher's counts

No request names a file: the model is the one given at start-up. Requests
are answered with JSON errors (`{"detail": reason}`) and never stop the
service: 400/415 for bad images, 413 for bodies over `max_bytes`, 408 for a
body slower than 30 s to arrive, 503 with Retry-After when too many images
wait for the model.
"""

from __future__ import annotations

import base64
import contextlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from serving.batching import Batcher, QueueFullError
from serving.captchas import CaptchaSource
from serving.images import MAX_PIXELS, ImageError, decode_image
from serving.uploads import UploadError, images_in_body, read_body

PAGE = Path(__file__).resolve().parent / "page"
MAX_BATCH_IMAGES = 64  # Images per /api/read_batch request.
RETRY_AFTER_SECONDS = 1
# Bodies larger than this are decoded in a worker thread, so that one big
# upload does not hold up the event loop; CAPTCHAs (tens of kilobytes) are
# decoded in place, cheaper than the hop to a thread.
DECODE_IN_THREAD_BYTES = 256 * 1024
# The page's own rules: its scripts, styles and images come from the app alone.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass
class ServiceSettings:
    """What `serve.py` chooses at start-up.

    Attributes:
        model: The `.keras` file to serve.
        max_batch: The most images in one model call (1: no batching).
        max_wait_ms: How long a waiting image may wait for others to join its model call.
        max_queue: The most images waiting for the model; more get 503.
        max_bytes: The largest request body accepted; larger get 413.
        max_pixels: The largest decoded image accepted (width x height); larger get 400.
        cors_origin: The one origin allowed to call the API from a browser (None: no CORS headers).
    """

    model: str = "reference/reference.keras"
    max_batch: int = 64
    max_wait_ms: float = 2.0
    max_queue: int = 256
    max_bytes: int = 2 * 1024 * 1024
    max_pixels: int = MAX_PIXELS
    cors_origin: str | None = None


class Character(BaseModel):
    character: str
    confidence: float


class ReadResult(BaseModel):
    text: str
    characters: list[Character]
    confidence: float
    model: str
    milliseconds: float
    note: str | None = None


class BatchResult(BaseModel):
    results: list[ReadResult]
    model: str
    milliseconds: float


IMAGE_BODY = {
    "multipart/form-data": {
        "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}},
    },
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
}
BATCH_BODY = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
        }
    }
}
ERRORS = {
    400: {"description": "Not a readable image: broken, truncated, too many pixels, malformed form"},
    408: {"description": "Body slower than 30 s to arrive"},
    413: {"description": "Body over --max-bytes"},
    415: {"description": "Not an image of an accepted format"},
    503: {"description": "Too many images waiting; retry after the Retry-After seconds"},
}


def create_app(settings: ServiceSettings, reader=None) -> FastAPI:
    """The application serving `settings.model` (or an already built `models.reader.Reader`).

    The model is loaded and warmed up here, before the first request: its
    predict step is traced for batch sizes 1, 2 and 3, after which
    TensorFlow traces one that takes any batch size, so no request pays for
    tracing.
    """
    from models.io import load_model
    from models.reader import Reader

    model_path = Path(settings.model)
    if reader is None:
        reader = Reader(load_model(model_path))
    input_shape = tuple(reader.model.input_shape[1:])
    if None in input_shape:
        warm_shape = tuple(size or default for size, default in zip(input_shape, (64, 64, 3)))
    else:
        warm_shape = input_shape
    for batch_size in (1, 2, 3):
        reader.read(np.zeros((batch_size, *warm_shape), np.uint8))
    batcher = Batcher(reader, settings.max_batch, settings.max_wait_ms, settings.max_queue)
    captchas = CaptchaSource(reader.alphabet, reader.image_size)
    model_name = model_path.name if model_path.is_file() else reader.model.name
    model_description = {
        "name": reader.model.name,
        "file": model_name,
        "file_bytes": model_path.stat().st_size if model_path.is_file() else None,
        "alphabet": reader.alphabet.characters,
        "length": reader.alphabet.length,
        "min_length": reader.alphabet.min_length,
        "input_size": dict(zip(("height", "width", "channels"), input_shape)),
        "parameters": int(reader.model.count_params()),
        "generator": captchas.name,
        "max_batch": settings.max_batch,
        "max_wait_ms": settings.max_wait_ms,
        "max_bytes": settings.max_bytes,
        "max_pixels": settings.max_pixels,
        "max_images_per_batch_request": MAX_BATCH_IMAGES,
    }

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        try:
            yield
        finally:
            batcher.stop()

    app = FastAPI(
        title="captcha-kit reader",
        summary=f"Reads CAPTCHAs with {model_name} ({reader.alphabet.describe_length()} characters of "
        f"{reader.alphabet.characters!r}).",
        version="1",
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.settings, app.state.batcher, app.state.reader = settings, batcher, reader
    if settings.cors_origin:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=[settings.cors_origin],
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type"],
            expose_headers=["X-Captcha-Text", "X-Captcha-Seed"],
        )

    @app.exception_handler(UploadError)
    @app.exception_handler(ImageError)
    async def refused(request: Request, error: UploadError | ImageError):
        return JSONResponse({"detail": str(error)}, status_code=error.status)

    @app.exception_handler(QueueFullError)
    async def busy(request: Request, error: QueueFullError):
        return JSONResponse(
            {"detail": f"Busy: {error} Retry in {RETRY_AFTER_SECONDS} s."},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception):
        return JSONResponse({"detail": f"Internal error ({type(error).__name__}); the service carries on."}, 500)

    async def read_images(request: Request, max_images: int) -> tuple[list, list]:
        with batcher.arriving():
            body = await read_body(request, settings.max_bytes)
            files = images_in_body(body, request.headers.get("content-type"), max_images)
            decoded = []
            for index, data in enumerate(files):
                try:
                    if len(data) > DECODE_IN_THREAD_BYTES:
                        image = await run_in_threadpool(decode_image, data, input_shape, settings.max_pixels)
                    else:
                        image = decode_image(data, input_shape, settings.max_pixels)
                except ImageError as error:
                    if len(files) > 1:
                        raise ImageError(f"Image {index + 1} of {len(files)}: {error}", error.status) from error
                    raise
                decoded.append(image)
        readings = await batcher.read([image for image, _ in decoded])
        return readings, [note for _, note in decoded]

    def result(reading, note, started) -> dict:
        characters = [
            {"character": reader.alphabet.characters[code], "confidence": round(float(confidence), 4)}
            for code, confidence in zip(reading.codes, reading.character_confidences)
            if code >= 0
        ]
        answer = {
            "text": reading.text,
            "characters": characters,
            "confidence": round(reading.confidence, 4),
            "model": model_name,
            "milliseconds": round((time.perf_counter() - started) * 1000, 2),
        }
        if note:
            answer["note"] = note
        return answer

    page_html = (PAGE / "index.html").read_text()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(page_html, headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=PAGE), name="static")

    @app.post(
        "/api/read",
        summary="Read one CAPTCHA",
        response_model=ReadResult,
        responses=ERRORS,
        openapi_extra={"requestBody": {"required": True, "content": IMAGE_BODY}},
    )
    async def read(request: Request):
        """Reads one image, sent as a multipart file (`-F file=@captcha.png`) or as the raw body.

        Images of another size are resized to the model's input and `note` says so.
        """
        started = time.perf_counter()
        readings, notes = await read_images(request, max_images=1)
        return JSONResponse(result(readings[0], notes[0], started))

    @app.post(
        "/api/read_batch",
        summary=f"Read up to {MAX_BATCH_IMAGES} CAPTCHAs",
        response_model=BatchResult,
        responses=ERRORS,
        openapi_extra={"requestBody": {"required": True, "content": BATCH_BODY}},
    )
    async def read_batch(request: Request):
        """Reads every file of a multipart form (`-F files=@a.png -F files=@b.png`), one result per file in order.

        One unreadable image refuses the whole request, naming which one.
        """
        started = time.perf_counter()
        readings, notes = await read_images(request, max_images=MAX_BATCH_IMAGES)
        results = [result(reading, note, started) for reading, note in zip(readings, notes)]
        return JSONResponse(
            {"results": results, "model": model_name, "milliseconds": round((time.perf_counter() - started) * 1000, 2)}
        )

    seed_query = Query(None, description="names the CAPTCHA: the same seed gives the same image (default: random)")

    @app.get(
        "/api/captcha",
        summary="A fresh CAPTCHA (PNG)",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}, "description": "The text is in X-Captcha-Text"}},
    )
    def captcha(seed: str | None = seed_query):
        """A CAPTCHA from the model's own generator; its text in `X-Captcha-Text`, its seed in `X-Captcha-Seed`."""
        png, text, seed = draw(seed)
        headers = {"X-Captcha-Text": text, "X-Captcha-Seed": seed, "Cache-Control": "no-store"}
        return Response(png, media_type="image/png", headers=headers)

    @app.get("/api/captcha.json", summary="A fresh CAPTCHA (JSON, image as a data URL)")
    def captcha_json(seed: str | None = seed_query):
        """The CAPTCHA of `/api/captcha` as `{"seed", "text", "generator", "image"}`, `image` a PNG data URL."""
        png, text, seed = draw(seed)
        image = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        return JSONResponse(
            {"seed": seed, "text": text, "generator": captchas.name, "image": image},
            headers={"Cache-Control": "no-store"},
        )

    def draw(seed):
        try:
            return captchas.draw(seed)
        except ValueError as error:
            raise UploadError(str(error), 400) from error

    @app.get("/api/model", summary="The model served")
    async def model():
        """Alphabet, label length, input size, parameters and file size of the model, and the service's bounds."""
        return model_description

    @app.get("/healthz", summary="Liveness")
    async def healthz():
        """Answers while the service is up; counts the batcher's model calls and waiting images."""
        return {
            "status": "ok",
            "model_calls": batcher.model_calls,
            "images_read": batcher.images_read,
            "waiting": batcher.waiting,
        }

    return app


def settings_dict(settings: ServiceSettings) -> dict:
    """The settings as a plain dict, for printing and for the benchmark's record."""
    return asdict(settings)
