"""Benchmark: requests/s and latency of `serve.py` under local load, batching on and off.

    python -m bench.bench_serve                       # reference/reference.keras
    python -m bench.bench_serve --model my_model.keras --seconds 20

Measures first the model's own batched throughput (`bench.bench_inference.throughput`
of `Reader.scores` on batches of 32, 64 and 128 fixed CAPTCHAs; the best is
what the service is held against), then starts `python serve.py --port 0`
twice on 127.0.0.1, with batching (serve.py's defaults, or `--max-batch`,
`--max-wait-ms`) and without (`--max-batch 1`), and loads each with 1, 8 and 64 concurrent
clients. Each client keeps one HTTP/1.1 connection and sends the next
`POST /api/read` (a raw PNG body, one of 32 fixed CAPTCHAs) as soon as the
answer to the last one arrives. A level ends after its fixed number of
requests or `--seconds`, whichever comes first, and the servers are stopped
at the end: it stops by itself and leaves nothing running. The clients are
a small asyncio loop in this process, on the same cores as the server; the
CPU seconds that each side used are recorded beside the figures. Writes
`bench/results/serve_<model>.json` and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import sys
import time
from pathlib import Path

from bench.bench_inference import RESULTS, load_or_build, machine, sample_captchas, throughput, write_result
from serving.server_process import ServerProcess

CONCURRENCY = (1, 8, 64)
MODEL_BATCH_SIZES = (32, 64, 128)
REQUESTS = {1: 500, 8: 2000, 64: 4000}  # per level; the time bound may end it first
SINGLE_P50_TARGET_MS = 10.0
BATCHED_SHARE_TARGET = 0.70  # of the model's own batched images/s, at 64 clients with batching
BATCHED_P99_TARGET_MS = 150.0


def read_requests(images) -> list[bytes]:
    """One ready-made `POST /api/read` request per image, its PNG as the raw body."""
    from PIL import Image

    requests = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        body = buffer.getvalue()
        head = (
            f"POST /api/read HTTP/1.1\r\nHost: bench\r\nContent-Type: image/png\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


async def load(port: int, requests: list[bytes], clients: int, total: int, seconds: float) -> dict:
    """Sends `total` requests from `clients` concurrent connections (or stops at `seconds`); latencies and counts."""
    remaining = [total]
    latencies, statuses = [], {}
    deadline = time.perf_counter() + seconds

    async def client(number: int):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        index = number
        try:
            while remaining[0] > 0 and time.perf_counter() < deadline:
                remaining[0] -= 1
                started = time.perf_counter()
                writer.write(requests[index % len(requests)])
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                status = int(head[9:12])
                statuses[status] = statuses.get(status, 0) + 1
                index += clients
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(number) for number in range(clients)))
    elapsed = time.perf_counter() - started
    return {"latencies": latencies, "statuses": statuses, "seconds": elapsed}


def measure_level(server: ServerProcess, requests, clients: int, total: int, seconds: float) -> dict:
    import json
    import urllib.request

    import numpy as np

    def health():
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=30) as response:
            return json.loads(response.read())

    asyncio.run(load(server.port, requests, clients, 4 * clients, seconds))  # warm-up: connections, buffers
    before, cpu_server, cpu_client = health(), server.cpu_seconds(), time.process_time()
    outcome = asyncio.run(load(server.port, requests, clients, total, seconds))
    after, cpu_server, cpu_client = health(), server.cpu_seconds() - cpu_server, time.process_time() - cpu_client
    latencies = np.asarray(outcome["latencies"]) * 1000
    calls = max(after["model_calls"] - before["model_calls"], 1)
    images = after["images_read"] - before["images_read"]
    ok = outcome["statuses"].get(200, 0)
    return {
        "clients": clients,
        "requests": len(latencies),
        "statuses": {str(status): count for status, count in sorted(outcome["statuses"].items())},
        "seconds": round(outcome["seconds"], 2),
        "requests_per_second": round(ok / outcome["seconds"], 1),
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "model_calls": calls,
        "mean_images_per_model_call": round(images / calls, 2),
        "server_cpu_seconds": round(cpu_server, 2),
        "client_cpu_seconds": round(cpu_client, 2),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a .keras file (default: the reference model)")
    parser.add_argument("--seconds", type=float, default=20.0, help="time bound of each level (default: %(default)s)")
    parser.add_argument(
        "--max-batch", type=int, default=None, help="serve.py --max-batch when batching (default: serve.py's)"
    )
    parser.add_argument(
        "--max-wait-ms", type=float, default=None, help="serve.py --max-wait-ms when batching (default: serve.py's)"
    )
    parser.add_argument("--output", default=None, help="JSON file (default: bench/results/serve_<model>.json)")
    args = parser.parse_args(argv)

    import numpy as np

    from core.quiet import load_keras

    load_keras()
    from models.reader import Reader

    load_before = os.getloadavg()
    model, description = load_or_build(args.model)
    if args.model is None and not str(description).endswith(".keras"):
        parser.exit(2, "error: reference/reference.keras not found; pass --model\n")
    model_path = str(args.model or description)
    reader = Reader(model)
    captchas = sample_captchas(reader)
    model_batched = []
    for batch_size in MODEL_BATCH_SIZES:
        batch = captchas[np.arange(batch_size) % len(captchas)]
        model_batched.append(throughput(lambda batch=batch: reader.scores(batch), batch_size, 3.0))
    model_throughput = max(model_batched, key=lambda row: row["images_per_second"])
    batch = captchas[np.arange(model_throughput["batch_size"]) % len(captchas)]
    read_throughput = throughput(lambda: reader.read(batch), model_throughput["batch_size"], 3.0)
    requests = read_requests(captchas)

    batching_options = [] if args.max_batch is None else ["--max-batch", str(args.max_batch)]
    if args.max_wait_ms is not None:
        batching_options += ["--max-wait-ms", str(args.max_wait_ms)]
    runs = {}
    for name, options in (("batching_on", batching_options), ("batching_off", ["--max-batch", "1"])):
        server = ServerProcess(model_path, *options)
        try:
            runs[name] = {
                "serve_options": options,
                "levels": [
                    measure_level(server, requests, clients, REQUESTS[clients], args.seconds) for clients in CONCURRENCY
                ],
            }
        finally:
            server.stop()

    single = runs["batching_on"]["levels"][0]
    crowded = runs["batching_on"]["levels"][-1]
    share = crowded["requests_per_second"] / model_throughput["images_per_second"]
    result = {
        "benchmark": "serve.py under local load: POST /api/read with raw PNG bodies from concurrent keep-alive clients",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "command": "python -m bench.bench_serve" + " ".join([""] + (argv if argv is not None else sys.argv[1:])),
        "model": model_path,
        "load_average_before_and_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "requests_per_level": {str(clients): count for clients, count in REQUESTS.items()},
        "seconds_bound_per_level": args.seconds,
        "model_batched": {
            "scores": model_batched,
            "best": model_throughput,
            "read_with_decoding_at_best": read_throughput,
        },
        "runs": runs,
        "targets": {
            "single_client_p50_ms_at_most": SINGLE_P50_TARGET_MS,
            "batched_share_of_model_throughput_at_least": BATCHED_SHARE_TARGET,
            "batched_p99_ms_at_most": BATCHED_P99_TARGET_MS,
            "single_p50_ms": single["p50_ms"],
            "batched_share": round(share, 3),
            "batched_p99_ms": crowded["p99_ms"],
            "single_met": single["p50_ms"] <= SINGLE_P50_TARGET_MS,
            "batched_share_met": share >= BATCHED_SHARE_TARGET,
            "batched_p99_met": crowded["p99_ms"] <= BATCHED_P99_TARGET_MS,
        },
    }
    name = Path(model_path).stem
    path = write_result(result, Path(args.output) if args.output else RESULTS / f"serve_{name}.json")
    print_table(result)
    print(f"\nWritten: {path}")
    return result


def print_table(result: dict) -> None:
    model = result["model_batched"]
    print(f"\n{result['model']}; {result['machine']}")
    print(f"1-minute load average before and after: {result['load_average_before_and_after']}")
    alone = ", ".join(f"{row['images_per_second']:,.0f} at {row['batch_size']}" for row in model["scores"])
    print(
        f"model alone, images/s (Reader.scores): {alone}; with decoding (Reader.read) at "
        f"{model['best']['batch_size']}: {model['read_with_decoding_at_best']['images_per_second']:,.0f}\n"
    )
    print("| batching | clients | requests | requests/s | p50 | p99 | images per model call | CPU s server / client |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, run in result["runs"].items():
        for level in run["levels"]:
            refused = sum(count for status, count in level["statuses"].items() if status != "200")
            print(
                f"| {name.removeprefix('batching_')} | {level['clients']} | {level['requests']}"
                f"{f' ({refused} not 200)' if refused else ''} | {level['requests_per_second']:,.0f} | "
                f"{level['p50_ms']:.1f} ms | {level['p99_ms']:.1f} ms | {level['mean_images_per_model_call']:.1f} | "
                f"{level['server_cpu_seconds']:.1f} / {level['client_cpu_seconds']:.1f} |"
            )
    targets = result["targets"]
    print(
        f"\none client p50 {targets['single_p50_ms']:.1f} ms (target ≤ {targets['single_client_p50_ms_at_most']:g}): "
        f"{'met' if targets['single_met'] else 'MISSED'}; 64 clients with batching "
        f"{100 * targets['batched_share']:.0f}% of the model's own throughput "
        f"(target ≥ {100 * targets['batched_share_of_model_throughput_at_least']:.0f}%): "
        f"{'met' if targets['batched_share_met'] else 'MISSED'}, p99 {targets['batched_p99_ms']:.1f} ms "
        f"(target ≤ {targets['batched_p99_ms_at_most']:g}): {'met' if targets['batched_p99_met'] else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
