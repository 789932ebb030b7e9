"""Runs `inference.py` in a real window under Xvfb, presses keys with xdotool and saves a screenshot.

    python docs/inference_window_check.py --model my_model.keras --output docs/inference.png

Checks the window mode end to end on a machine without a screen: Xvfb
(`xvfb-run`) gives it an X display, matplotlib's TkAgg backend opens the
window, `xdotool` types `n` twice and `q` through the X server, as a person
would, and ImageMagick's `import` saves the screen after the second `n`.
Needs `apt-get install xvfb xdotool imagemagick`; `tests/test_inference.py`
runs it as a slow test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
TOOLS = ("xvfb-run", "xdotool", "import")

# Runs inside xvfb-run: start the viewer, wait for its window, type keys into it, take the screenshot.
SCRIPT = r"""
set -u
python "$REPOSITORY/inference.py" --model "$MODEL" --seed "$SEED" > "$LOG" 2>&1 &
viewer=$!
window=""
for attempt in $(seq 1 120); do
    window=$(xdotool search --name "captcha-kit inference" 2>/dev/null | head -n 1)
    [ -n "$window" ] && break
    sleep 0.5
done
[ -n "$window" ] || { echo "no window appeared" >&2; kill "$viewer"; exit 3; }
sleep 2
xdotool windowfocus --sync "$window"
xdotool key --window "$window" n; sleep 1.5
xdotool key --window "$window" n; sleep 1.5
import -window "$window" "$SCREENSHOT"
xdotool key --window "$window" q
for attempt in $(seq 1 40); do kill -0 "$viewer" 2>/dev/null || break; sleep 0.25; done
if kill -0 "$viewer" 2>/dev/null; then echo "q did not close the window" >&2; kill "$viewer"; exit 4; fi
wait "$viewer"
"""


def missing_tools() -> list[str]:
    """The programs this check needs that are not installed."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def check_window(model: str | Path, screenshot: str | Path, seed: int = 0) -> str:
    """Runs the check; returns what `inference.py` printed.

    Raises:
        RuntimeError: A tool is missing, no window appeared or `q` did not close it.
    """
    if missing_tools():
        raise RuntimeError(f"Missing programs: {', '.join(missing_tools())} (apt-get install xvfb xdotool imagemagick)")
    screenshot = Path(screenshot).resolve()
    log = Path(tempfile.mkdtemp(prefix="inference_window_")) / "inference.log"
    environment = {
        **os.environ,
        "MPLBACKEND": "TkAgg",
        "REPOSITORY": str(REPOSITORY),
        "MODEL": str(Path(model).resolve()),
        "SEED": str(seed),
        "LOG": str(log),
        "SCREENSHOT": str(screenshot),
        "PYTHON": sys.executable,
    }
    environment.pop("DISPLAY", None)
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
    result = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1024x768x24", "bash", "-c", SCRIPT],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    printed = log.read_text() if log.exists() else ""
    if result.returncode != 0:
        raise RuntimeError(f"The window check failed ({result.returncode}): {result.stderr}\n{printed}")
    return printed


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a .keras file of the kit")
    parser.add_argument("--output", default="docs/inference.png", help="screenshot PNG (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="CAPTCHA sequence (default: %(default)s)")
    args = parser.parse_args(argv)
    print(check_window(args.model, args.output, args.seed))
    print(f"Screenshot: {args.output}")
    return Path(args.output)


if __name__ == "__main__":
    main()
