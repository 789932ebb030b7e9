"""serve.py and serving/: every endpoint and every bad input through FastAPI's TestClient, and dynamic batching."""

import io
import struct
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import models
import serve
from models.io import load_model, save_model
from models.reader import Reader
from serving.app import ServiceSettings, create_app
from serving.batching import Batcher, QueueFullError
from serving.images import ImageError, decode_image
from serving.uploads import UploadError, parse_multipart, read_body

IMAGE_SHAPE = (144, 256, 3)


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory):
    return save_model(models.get_model("cellnet_tiny"), tmp_path_factory.mktemp("models") / "tiny.keras")


@pytest.fixture(scope="module")
def reader(tiny_model_path):
    return Reader(load_model(tiny_model_path))


@pytest.fixture(scope="module")
def captchas(reader):
    """Four fixed CAPTCHAs as (PNG bytes, text), drawn by the service's own generator."""
    from serving.captchas import CaptchaSource

    source = CaptchaSource(reader.alphabet, reader.image_size)
    return [source.draw(f"test{index}")[:2] for index in range(4)]


def make_client(tiny_model_path, reader, raise_server_exceptions=True, **settings):
    """A TestClient of an app over the shared reader; used in `with`, so that its batcher runs."""
    app = create_app(ServiceSettings(model=str(tiny_model_path), **settings), reader=reader)
    return TestClient(app, raise_server_exceptions=raise_server_exceptions)


@pytest.fixture(scope="module")
def client(tiny_model_path, reader):
    with make_client(tiny_model_path, reader) as client:
        yield client


def png_bytes(image: Image.Image, format="PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def expected_text(reader, png: bytes) -> str:
    """What the kit's one prediction path reads in the image, outside the service."""
    return reader.read_one(np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))).text


def test_model_and_health_describe_the_served_model(client, tiny_model_path, reader):
    described = client.get("/api/model").json()
    assert described["file"] == "tiny.keras"
    assert described["file_bytes"] == tiny_model_path.stat().st_size
    assert (described["alphabet"], described["length"]) == ("0123456789", 4)
    assert described["input_size"] == {"height": 144, "width": 256, "channels": 3}
    assert described["parameters"] == reader.model.count_params()
    assert described["generator"] == "multicolorcaptcha"
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_read_takes_a_multipart_file_or_a_raw_body_and_reads_as_the_kit_does(client, reader, captchas):
    png, _ = captchas[0]
    multipart = client.post("/api/read", files={"file": ("captcha.png", png, "image/png")})
    raw = client.post("/api/read", content=png, headers={"Content-Type": "image/png"})
    for response in (multipart, raw):
        assert response.status_code == 200, response.text
        answer = response.json()
        assert set(answer) == {"text", "characters", "confidence", "model", "milliseconds"}
        assert answer["text"] == expected_text(reader, png)
        assert "".join(entry["character"] for entry in answer["characters"]) == answer["text"]
        assert all(0 <= entry["confidence"] <= 1 for entry in answer["characters"])
        assert answer["model"] == "tiny.keras" and answer["milliseconds"] > 0
    assert multipart.json()["characters"] == raw.json()["characters"]


def test_read_batch_gives_one_result_per_image_in_order(client, reader, captchas):
    files = [("files", (f"{index}.png", png, "image/png")) for index, (png, _) in enumerate(captchas)]
    response = client.post("/api/read_batch", files=files)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [result["text"] for result in results] == [expected_text(reader, png) for png, _ in captchas]
    too_many = [("files", (f"{index}.png", captchas[0][0], "image/png")) for index in range(65)]
    refused = client.post("/api/read_batch", files=too_many)
    assert refused.status_code == 400 and "at most 64" in refused.json()["detail"]
    one_bad = files[:2] + [("files", ("bad.png", b"not an image", "image/png"))]
    refused = client.post("/api/read_batch", files=one_bad)
    assert refused.status_code == 415 and refused.json()["detail"].startswith("Image 3 of 3")


def test_captcha_is_repeatable_by_seed_with_its_truth_in_a_header_and_as_json(client):
    first, again = client.get("/api/captcha?seed=s7"), client.get("/api/captcha", params={"seed": "s7"})
    assert first.status_code == 200 and first.headers["content-type"] == "image/png"
    assert first.content == again.content and first.headers["X-Captcha-Text"] == again.headers["X-Captcha-Text"]
    assert Image.open(io.BytesIO(first.content)).size == (256, 144)
    as_json = client.get("/api/captcha.json?seed=s7").json()
    assert (as_json["text"], as_json["seed"]) == (first.headers["X-Captcha-Text"], "s7")
    assert as_json["image"] == "data:image/png;base64," + __import__("base64").b64encode(first.content).decode()
    assert client.get("/api/captcha").headers["X-Captcha-Seed"] != client.get("/api/captcha").headers["X-Captcha-Seed"]
    refused = client.get("/api/captcha", params={"seed": "../../etc/passwd"})
    assert refused.status_code == 400 and "seed" in refused.json()["detail"]


def test_page_and_its_assets_come_from_the_app(client):
    page = client.get("/")
    assert page.status_code == 200 and "New CAPTCHA" in page.text
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "http" not in page.text.replace('href="/', "").split("<footer")[0]  # nothing from elsewhere
    for asset in ("/static/page.js", "/static/page.css"):
        assert client.get(asset).status_code == 200
    assert "/api/read" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def truncated_png(png: bytes) -> bytes:
    return png[: len(png) // 2]


def claimed_size_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels: a decompression bomb's signature."""
    png = png_bytes(Image.new("L", (8, 8)))
    header = b"IHDR" + struct.pack(">II", width, height) + png[24:29]
    return png[:12] + header + struct.pack(">I", zlib.crc32(header)) + png[33:]


@pytest.mark.parametrize(
    "body, status, reason",
    [
        (b"", 400, "empty"),
        (b"plain text, no image", 415, "Not an image"),
        ("truncated", 400, "truncated"),
        (claimed_size_png(100_000, 100_000), 400, "too large|decompression bomb"),
        (claimed_size_png(3000, 3000), 400, "decompression bomb"),
    ],
)
def test_bad_images_get_400_or_415_with_the_reason(client, captchas, body, status, reason):
    if body == "truncated":
        body = truncated_png(captchas[0][0])
    response = client.post("/api/read", content=body, headers={"Content-Type": "image/png"})
    assert response.status_code == status, response.text
    assert __import__("re").search(reason, response.json()["detail"])


def test_bodies_over_max_bytes_get_413_declared_or_chunked(tiny_model_path, reader, captchas):
    png = captchas[0][0]
    with make_client(tiny_model_path, reader, max_bytes=len(png) - 1) as client:
        declared = client.post("/api/read", content=png)
        # A generator body has no Content-Length: it goes chunked and is counted as it streams in.
        # (That the service stops reading early is checked on a real socket, in test_serve_process.py.)
        chunked = client.post("/api/read", content=(png[start : start + 1024] for start in range(0, len(png), 1024)))
        assert client.get("/healthz").status_code == 200
    assert declared.status_code == 413 and "at most" in declared.json()["detail"]
    assert chunked.status_code == 413 and "sent" in chunked.json()["detail"]


def test_multipart_and_raw_bodies_are_never_written_to_disk(client, reader, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a temporary file was made")

    for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    # Noise compresses badly: a PNG over 1 MB, the size past which Starlette's form parser spools to disk.
    noise = np.random.default_rng(0).integers(0, 256, (800, 600, 3), dtype=np.uint8)
    large = png_bytes(Image.fromarray(noise))
    assert len(large) > 1024 * 1024
    response = client.post("/api/read", files={"file": ("noise.png", large, "image/png")})
    assert response.status_code == 200, response.text


def test_other_sizes_are_resized_and_the_response_says_so(client, reader, captchas):
    original = Image.open(io.BytesIO(captchas[0][0]))
    small = png_bytes(original.resize((128, 72)))
    answer = client.post("/api/read", content=small).json()
    assert "Resized from 128x72 to 256x144" in answer["note"]
    array, _ = decode_image(small, IMAGE_SHAPE)
    assert array.shape == IMAGE_SHAPE and answer["text"] == reader.read_one(array).text
    assert "note" not in client.post("/api/read", content=captchas[0][0]).json()


def test_transparent_images_are_composited_onto_white():
    # Transparent pixels whose stored colour is black: dropping alpha would make them black.
    rgba = Image.new("RGBA", (256, 144), (0, 0, 0, 0))
    rgba.paste((0, 0, 0, 255), (10, 10, 20, 20))
    array, note = decode_image(png_bytes(rgba), IMAGE_SHAPE)
    assert (array[0, 0] == 255).all() and (array[15, 15] == 0).all()
    assert "composited onto white" in note
    la, _ = decode_image(png_bytes(Image.new("LA", (256, 144), (0, 0))), IMAGE_SHAPE)
    assert (la == 255).all()
    palette = Image.new("P", (256, 144), 0)
    palette.putpalette([0, 0, 0] * 256)
    palette.info["transparency"] = 0
    array, note = decode_image(png_bytes(palette), IMAGE_SHAPE)
    assert (array == 255).all() and note
    opaque, note = decode_image(png_bytes(Image.new("RGBA", (256, 144), (0, 0, 0, 255))), IMAGE_SHAPE)
    assert note is None and (opaque == 0).all()  # multicolorcaptcha's images are RGBA, all opaque
    jpeg, note = decode_image(png_bytes(Image.new("RGB", (256, 144), (9, 9, 9)), "JPEG"), IMAGE_SHAPE)
    assert note is None and jpeg.dtype == np.uint8 and abs(int(jpeg[0, 0, 0]) - 9) <= 2


@pytest.mark.parametrize("format", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
def test_every_accepted_format_decodes(format):
    image, note = decode_image(png_bytes(Image.new("RGB", (256, 144), (250, 250, 250)), format), IMAGE_SHAPE)
    assert image.shape == IMAGE_SHAPE and image.dtype == np.uint8 and note is None


def test_a_body_that_trickles_in_gets_408():
    import asyncio

    class TricklingRequest:
        headers = {}

        async def stream(self):
            while True:
                await asyncio.sleep(0.05)
                yield b"x"

    with pytest.raises(UploadError) as raised:
        asyncio.run(read_body(TricklingRequest(), max_bytes=1000, timeout_seconds=0.2))
    assert raised.value.status == 408


def test_image_errors_carry_their_status():
    with pytest.raises(ImageError) as raised:
        decode_image(png_bytes(Image.new("RGB", (8, 8)), "TIFF"), IMAGE_SHAPE)  # a format left out
    assert raised.value.status == 415


def build_colour_reader() -> keras.Model:
    """A model that reads each image's mean red, green, blue and red again as digits (0-25 -> 0, 230-255 -> 9).

    Its logits for digit c are 20 c x - c^2 for a mean x in [0, 1], highest at c = 10 x: images of
    distinct colours read distinct texts, so a reading handed to the wrong request shows.
    """
    inputs = keras.Input(IMAGE_SHAPE)
    means = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    kernel, bias = np.zeros((3, 40), "float32"), np.zeros(40, "float32")
    for position, channel in enumerate((0, 1, 2, 0)):
        for digit in range(10):
            kernel[channel, position * 10 + digit] = 20 * digit
            bias[position * 10 + digit] = -(digit**2)
    logits = keras.layers.Dense(
        40, kernel_initializer=keras.initializers.Constant(kernel), bias_initializer=keras.initializers.Constant(bias)
    )(means)
    return keras.Model(inputs, keras.layers.Softmax()(keras.layers.Reshape((4, 10))(logits)))


def colour_png(text: str) -> bytes:
    """A plain image that `build_colour_reader` reads as `text` (red, green, blue, red digits)."""
    colour = tuple(int((int(digit) + 0.5) / 10 * 255) for digit in text[:3])
    return png_bytes(Image.new("RGB", IMAGE_SHAPE[1::-1], colour))


def test_concurrent_requests_are_read_in_one_model_call_each_its_own_result(tmp_path):
    model_path = save_model(build_colour_reader(), tmp_path / "colours.keras")
    texts = ["1231", "4564", "7897", "0220"]
    with make_client(model_path, Reader(load_model(model_path)), max_batch=4, max_wait_ms=5000) as client:
        batcher = client.app.state.batcher
        calls_before = batcher.model_calls
        # One more request "arriving" for as long as the test likes: the worker waits for the four to gather.
        with batcher.arriving(), ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(lambda text: client.post("/api/read", content=colour_png(text)), texts))
        assert batcher.model_calls == calls_before + 1 and batcher.batch_sizes[4] == 1
        # A request alone, with nothing else arriving, is read at once instead of waiting 5 s for company.
        started = time.monotonic()
        assert client.post("/api/read", content=colour_png("9999")).json()["text"] == "9999"
        assert time.monotonic() - started < 2
    assert [response.json()["text"] for response in responses] == texts


def test_batching_off_reads_one_image_per_model_call(tmp_path):
    model_path = save_model(build_colour_reader(), tmp_path / "colours.keras")
    texts = ["1231", "4564", "7897"]
    with make_client(model_path, Reader(load_model(model_path)), max_batch=1, max_wait_ms=5000) as client:
        with ThreadPoolExecutor(3) as pool:
            responses = list(pool.map(lambda text: client.post("/api/read", content=colour_png(text)), texts))
        assert dict(client.app.state.batcher.batch_sizes) == {1: 3}
    assert [response.json()["text"] for response in responses] == texts


class BlockingReader:
    """A reader that holds each model call until the test lets it go, and fails when told to."""

    def __init__(self, reader):
        self.reader, self.model, self.alphabet = reader, reader.model, reader.alphabet
        self.image_size = reader.image_size
        self.entered, self.release, self.fail = threading.Event(), threading.Event(), False
        self.release.set()

    def read(self, images):
        self.entered.set()
        self.release.wait(10)
        if self.fail:
            self.fail = False
            raise RuntimeError("the model call failed")
        return self.reader.read(images)


def test_a_full_queue_gets_503_with_retry_after(tiny_model_path, reader, captchas):
    blocking = BlockingReader(reader)
    png = captchas[0][0]
    with make_client(tiny_model_path, blocking, max_batch=1, max_queue=1, max_wait_ms=0) as client:
        blocking.release.clear()
        blocking.entered.clear()
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(client.post, "/api/read", content=png)  # held in the model call
            assert blocking.entered.wait(10)
            second = pool.submit(client.post, "/api/read", content=png)  # waits: the queue is now full
            while client.app.state.batcher.waiting < 1:
                threading.Event().wait(0.01)
            third = client.post("/api/read", content=png)
            blocking.release.set()
            assert first.result().status_code == 200 and second.result().status_code == 200
    assert third.status_code == 503 and third.headers["Retry-After"] == "1"
    assert "at most 1 may wait" in third.json()["detail"]


def test_a_failing_model_call_fails_its_request_only(tiny_model_path, reader, captchas):
    blocking = BlockingReader(reader)
    # As uvicorn does, the client answers the 500 instead of raising the server's exception in the test.
    with make_client(tiny_model_path, blocking, raise_server_exceptions=False) as client:
        blocking.fail = True
        failed = client.post("/api/read", content=captchas[0][0])
        assert failed.status_code == 500 and "carries on" in failed.json()["detail"]
        assert client.post("/api/read", content=captchas[0][0]).status_code == 200


def test_no_cors_unless_an_origin_is_given(client, tiny_model_path, reader):
    origin = {"Origin": "https://example.org"}
    assert "access-control-allow-origin" not in client.get("/api/model", headers=origin).headers
    with make_client(tiny_model_path, reader, cors_origin="https://example.org") as cors_client:
        allowed = cors_client.get("/api/model", headers=origin)
        other = cors_client.get("/api/model", headers={"Origin": "https://elsewhere.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://example.org"
    assert "access-control-allow-origin" not in other.headers


def test_malformed_multipart_forms_get_400(client):
    no_boundary = client.post("/api/read", content=b"x", headers={"Content-Type": "multipart/form-data"})
    assert no_boundary.status_code == 400 and "boundary" in no_boundary.json()["detail"]
    no_file = client.post("/api/read", files={"seed": (None, "7")})
    assert no_file.status_code == 400 and "no file" in no_file.json()["detail"]
    assert parse_multipart(
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\nabc\r\n--b--\r\n',
        "multipart/form-data; boundary=b",
    ) == [("file", "a.png", b"abc")]


def test_batcher_refuses_past_its_queue_and_when_stopped(reader):
    import asyncio

    batcher = Batcher(reader, max_batch=2, max_queue=2)
    image = np.zeros(IMAGE_SHAPE, np.uint8)
    with pytest.raises(RuntimeError, match="not running"):
        asyncio.run(batcher.read([image]))
    batcher.start()
    try:
        with pytest.raises(QueueFullError):
            asyncio.run(batcher.read([image] * 3))
        assert len(asyncio.run(batcher.read([image] * 2))) == 2
    finally:
        batcher.stop()
    with pytest.raises(ValueError, match="max_queue >= max_batch"):
        Batcher(reader, max_batch=8, max_queue=4)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "missing.keras"], "Model file not found"),
        (["--port", "70000"], "--port"),
        (["--max-batch", "0"], "--max-batch"),
        (["--cors", "*"], "--cors takes an origin"),
    ],
)
def test_bad_arguments_are_one_error_line_and_exit_2(argv, message, capsys, tiny_model_path):
    if argv[0] != "--model":
        argv = ["--model", str(tiny_model_path), *argv]
    with pytest.raises(SystemExit) as raised:
        serve.main(argv)
    error = capsys.readouterr().err.strip().splitlines()
    assert raised.value.code == 2 and len(error) == 1
    assert error[0].startswith("error: ") and message in error[0]


def test_a_variable_length_imagecaptcha_model_gets_imagecaptchas_of_its_size_and_alphabet(tmp_path):
    from core.alphabet import Alphabet

    alphabet = Alphabet("0123456789ABCDEF", 5, min_length=3)
    model = models.get_model("crnn_ctc_tiny", alphabet=alphabet, image_size=(40, 100))
    model_path = save_model(model, tmp_path / "ctc.keras")
    with make_client(model_path, Reader(load_model(model_path))) as client:
        described = client.get("/api/model").json()
        captcha = client.get("/api/captcha?seed=ctc")
        answer = client.post("/api/read", content=captcha.content).json()
    assert described["generator"] == "imagecaptcha" and described["min_length"] == 3
    assert Image.open(io.BytesIO(captcha.content)).size == (100, 40)
    truth = captcha.headers["X-Captcha-Text"]
    assert 3 <= len(truth) <= 5 and set(truth) <= set(alphabet.characters)
    assert set(answer["text"]) <= set(alphabet.characters) and len(answer["characters"]) == len(answer["text"])
