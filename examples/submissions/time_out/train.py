"""A submission that never finishes: an endless training loop that also ignores SIGTERM.

The grader stops it at --time-limit, and everything it runs with it.
"""

import signal
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
epoch = 0
while True:
    epoch += 1
    print(f"epoch {epoch}: still training", flush=True)
    time.sleep(5)
