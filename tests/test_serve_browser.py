"""serve.py as a real process on 127.0.0.1, and its page in a real browser (headless Chromium driven by Selenium).

The server is started here (`python serve.py --port 0`) and stopped here;
the last test stops it and checks that no process of it, or of the browser,
is left. The browser test needs Debian's `chromium` and `chromium-driver`
(`.ci/run` installs them) and is skipped, saying so, where they are absent.
Set SERVE_SCREENSHOT=docs/serve.png to keep the page's screenshot there.
"""

import json
import os
import select
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest

import models
from models.io import save_model
from serving.server_process import ServerProcess

# One xdist worker runs these tests, so one server process serves them all.
pytestmark = pytest.mark.xdist_group("server")

REPOSITORY = Path(__file__).resolve().parent.parent
REFERENCE = REPOSITORY / "reference" / "reference.keras"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The reference model when present (the screenshot then shows real readings), else an untrained tiny one."""
    model_path = REFERENCE
    if not model_path.is_file():
        model_path = save_model(models.get_model("cellnet_tiny"), tmp_path_factory.mktemp("models") / "tiny.keras")
    running = ServerProcess(model_path, "--max-batch", "8")
    yield running
    running.stop()


def test_the_server_answers_on_127_0_0_1(server):
    assert server.url.startswith("http://127.0.0.1:")
    body, _ = server.get("/healthz")
    assert json.loads(body)["status"] == "ok"
    png, headers = server.get("/api/captcha?seed=process1")
    reading = server.post("/api/read", png)
    assert len(reading["text"]) == len(headers["X-Captcha-Text"])


def test_a_chunked_body_over_max_bytes_is_cut_off_before_it_is_all_sent(server):
    host, port = server.url.removeprefix("http://").split(":")
    chunk = bytes(64 * 1024)
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent, limit = 0, 64 * 1024 * 1024
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(
            b"POST /api/read HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        while sent < limit and not select.select([connection], [], [], 0)[0]:
            try:
                connection.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        answer = connection.recv(4096).decode("latin-1")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert sent < 8 * 1024 * 1024  # the 2 MB bound, plus what the socket buffers hold
    body, _ = server.get("/healthz")  # and the service is still up
    assert json.loads(body)["status"] == "ok"


def chromium_driver(profile: Path):
    """Headless Chromium through the system's chromedriver (Selenium Manager is not asked: the Service names it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",  # Chromium's sandbox cannot start as root, as CI runs.
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1100,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def browser_processes(profile: Path) -> list[int]:
    """Ids of live Chromium processes started with this test's profile folder."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(profile).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def characters_of(driver, element_id: str) -> str:
    return "".join(box.text.split("\n")[0] for box in driver.find_elements("css selector", f"#{element_id} .character"))


@pytest.mark.slow  # A browser's start-up; the page's API calls are tested in-process in tests/test_serve.py.
@pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)",
)
def test_the_page_reads_a_new_captcha_and_uploads_in_a_real_browser(server, tmp_path, monkeypatch):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    monkeypatch.setenv("SE_OFFLINE", "true")  # and should Selenium Manager run all the same, it downloads nothing
    profile = tmp_path / "chromium-profile"
    driver = chromium_driver(profile)
    try:
        wait = WebDriverWait(driver, 30)
        driver.get(server.url + "/")
        wait.until(lambda driver: "parameters" in driver.find_element("id", "model-line").text)

        # New CAPTCHA: a reading appears, with the truth beside it, as the API reads that seed.
        driver.find_element("id", "new-captcha").click()
        wait.until(lambda driver: driver.find_element("id", "tally").text.startswith("1 read"))
        seed = driver.find_element("id", "source-line").text.rsplit("seed ", 1)[1].rstrip(")")
        captcha = json.loads(server.get(f"/api/captcha.json?seed={seed}")[0])
        png, _ = server.get(f"/api/captcha?seed={seed}")
        assert characters_of(driver, "truth-text") == captcha["text"]
        assert characters_of(driver, "read-text") == server.post("/api/read", png)["text"]
        assert driver.find_elements("css selector", "#read-text .character.right, #read-text .character.wrong")

        # Upload through the file picker: a CAPTCHA of another size, read (and resized) as the API reads it.
        from PIL import Image

        upload = tmp_path / "upload.png"
        Image.open(_png_file(server, "upload1", tmp_path)).resize((200, 112)).save(upload)
        driver.find_element("id", "file-input").send_keys(str(upload))
        # The caption changes with the status ("Reading…"), so "Read" after it is this upload's reading.
        wait.until(lambda driver: "upload.png" in driver.find_element("id", "source-line").text)
        wait.until(lambda driver: driver.find_element("id", "status").text.startswith("Read"))
        expected = server.post("/api/read", upload.read_bytes())
        assert characters_of(driver, "read-text") == expected["text"]
        assert "Resized from 200x112" in driver.find_element("id", "note").text

        # Drop and paste deliver a file the same way (synthetic events carrying a real file).
        for event in ("drop", "paste"):
            driver.execute_async_script(DISPATCH_FILE, event, f"/api/captcha?seed={event}1")
            wait.until(lambda driver, event=event: f"{event}.png" in driver.find_element("id", "source-line").text)
            wait.until(lambda driver: driver.find_element("id", "status").text.startswith("Read"))

        # Back to a new CAPTCHA for the screenshot, then every control by the keyboard alone.
        driver.find_element("id", "new-captcha").click()
        wait.until(lambda driver: driver.find_element("id", "tally").text.startswith("2 read"))
        screenshot = tmp_path / "serve.png"
        assert driver.save_screenshot(str(screenshot))
        if os.environ.get("SERVE_SCREENSHOT"):
            shutil.copyfile(screenshot, REPOSITORY / os.environ["SERVE_SCREENSHOT"])
        driver.find_element("tag name", "h1").click()
        reached = []
        for _ in range(8):  # Keys go to the page (a file input given keys directly takes them as a path).
            ActionChains(driver).send_keys(Keys.TAB).perform()
            reached.append(driver.switch_to.active_element.get_attribute("id"))
        assert {"new-captcha", "file-input", "drop-zone", "reset-tally"} <= set(reached)

        # A phone-sized window: nothing wider than the screen.
        driver.set_window_size(390, 844)
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        driver.quit()
    deadline = time.monotonic() + 10
    while browser_processes(profile) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert browser_processes(profile) == []


def _png_file(server, seed: str, folder: Path) -> Path:
    path = folder / f"{seed}.png"
    path.write_bytes(server.get(f"/api/captcha?seed={seed}")[0])
    return path


# Fetches an image from the app and hands it to the page in a drop (on the drop zone) or paste event.
DISPATCH_FILE = """
const [kind, url, done] = arguments;
fetch(url).then((response) => response.blob()).then((blob) => {
  const transfer = new DataTransfer();
  transfer.items.add(new File([blob], kind + ".png", { type: "image/png" }));
  const event = kind === "drop"
    ? new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true })
    : new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true });
  (kind === "drop" ? document.getElementById("drop-zone") : document).dispatchEvent(event);
  done(true);
});
"""


def test_stopping_the_server_leaves_no_process(server):
    assert server.session_processes() == [server.process.pid]  # serve.py starts no other process
    status = server.stop()
    assert status in (0, -signal.SIGINT, 130), "".join(server.output)
    assert server.session_processes() == []
