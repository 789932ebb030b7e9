"""Serves a model as a web page and a JSON API: open the printed address, draw or drop a CAPTCHA.

    python serve.py                                   # the reference model on http://127.0.0.1:8000
    python serve.py --model my_model.keras --port 8080
    python serve.py --max-batch 1                     # no batching: one model call per image
    curl -F file=@captcha.png http://127.0.0.1:8000/api/read

The model is chosen here and only here: no request can name a file. The
service binds to 127.0.0.1 unless `--host` says otherwise, and sends no CORS
headers unless `--cors ORIGIN`. Images of requests that arrive together are
read in one model call (`serving.batching`); bodies, images and the queue
are bounded (`--max-bytes`, `--max-pixels`, `--max-queue`). Ctrl+C or
SIGTERM stops it and every thread it started; it runs no other process.
The endpoints are listed in `serving/app.py` and at /docs.
"""

from __future__ import annotations

import argparse
import gc
import os

from core.quiet import load_keras
from serving.images import MAX_PIXELS

DEFAULT_MODEL = "reference/reference.keras"
MAX_CONNECTIONS = 1024


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="the .keras file to serve (default: %(default)s)")
    group = parser.add_argument_group("network")
    group.add_argument(
        "--host", default="127.0.0.1", help="address to bind; 0.0.0.0 opens it to the network (default: %(default)s)"
    )
    group.add_argument("--port", type=int, default=8000, help="TCP port; 0 picks a free one (default: %(default)s)")
    group.add_argument(
        "--cors",
        default=None,
        metavar="ORIGIN",
        help="the one origin (e.g. http://localhost:3000) whose pages may call the API (default: none)",
    )
    group = parser.add_argument_group("batching")
    group.add_argument(
        "--max-batch",
        type=int,
        default=64,
        help="most images in one model call; 1 turns batching off (default: %(default)s)",
    )
    group.add_argument(
        "--max-wait-ms",
        type=float,
        default=2.0,
        help="how long an image may wait for others to share its model call (default: %(default)s)",
    )
    group.add_argument(
        "--max-queue",
        type=int,
        default=256,
        help="most images waiting for the model; more are answered 503 with Retry-After (default: %(default)s)",
    )
    group = parser.add_argument_group("limits")
    group.add_argument(
        "--max-bytes",
        type=int,
        default=2 * 1024 * 1024,
        help="largest request body; larger get 413 (default: %(default)s, 2 MB)",
    )
    group.add_argument(
        "--max-pixels",
        type=int,
        default=MAX_PIXELS,
        help="largest decoded image, width x height; larger get 400 "
        "as possible decompression bombs (default: %(default)s)",
    )
    return parser


def check_arguments(args) -> str | None:
    """Says what is wrong with the arguments, or None."""
    if not os.path.isfile(args.model):
        return f"Model file not found: {args.model}"
    if not 0 <= args.port <= 65535:
        return f"--port must be 0 to 65535. Received: {args.port}"
    if args.max_batch < 1 or args.max_queue < args.max_batch:
        return f"Expected 1 <= --max-batch <= --max-queue. Received: {args.max_batch} and {args.max_queue}"
    if args.max_wait_ms < 0 or args.max_bytes < 1 or args.max_pixels < 1:
        return "--max-wait-ms must be at least 0, --max-bytes and --max-pixels at least 1."
    if args.cors is not None and not args.cors.startswith(("http://", "https://")):
        return f"--cors takes an origin such as https://example.org. Received: {args.cors!r}"
    return None


def main(argv=None) -> dict:
    """Serves until stopped; returns the settings it served with."""
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = check_arguments(args)
    if problem:
        parser.exit(2, f"error: {problem}\n")

    load_keras()  # Keeps TensorFlow's start-up lines out of the console before the address line.
    import socket

    import uvicorn
    from PIL import Image

    from serving.app import ServiceSettings, create_app, settings_dict

    # The process serves CAPTCHAs only: Pillow's own bomb guard follows the service's bound.
    Image.MAX_IMAGE_PIXELS = args.max_pixels
    settings = ServiceSettings(
        model=args.model,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_bytes=args.max_bytes,
        max_pixels=args.max_pixels,
        cors_origin=args.cors,
    )
    try:
        app = create_app(settings)
    except ValueError as error:  # A file that is no loadable kit model.
        parser.exit(2, f"error: {error}\n")
    # The socket is bound here so that --port 0 can print the port it got and a busy port is one error line.
    listener = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((args.host, args.port))
        listener.listen(2048)  # From here connections wait in the backlog until uvicorn takes them.
    except OSError as error:
        parser.exit(2, f"error: cannot listen on {args.host}:{args.port}: {error.strerror}\n")
    port = listener.getsockname()[1]
    # TensorFlow and Keras leave ~320,000 objects behind; a full collection walking them stalls requests ~160 ms.
    gc.freeze()
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"Serving {args.model} at http://{shown_host}:{port}/  (API docs at /docs; Ctrl+C stops)", flush=True)
    # uvicorn answers 503 past MAX_CONNECTIONS open connections and requests, bounding what waits before the queue.
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_graceful_shutdown=5, limit_concurrency=MAX_CONNECTIONS
    )
    uvicorn.Server(config).run(sockets=[listener])
    listener.close()
    return {**settings_dict(settings), "host": args.host, "port": port}


if __name__ == "__main__":
    main()
