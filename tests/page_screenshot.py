"""Take the page's screenshot for the docs: a real herd at work, seen in the real Chromium.

    python -m tests.page_screenshot docs/page.png

runs a herd named "crawler" for a couple of minutes (works of varied length, a few
retried, a few failing; the herd grown halfway), then saves the page as a PNG. It needs
what the browser tests need (tests/browser.py). Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from herdexec import ExponentialBackoff, HerdExecutor, Retry

from .browser import launch


def work(rng: random.Random) -> None:
    time.sleep(min(rng.lognormvariate(-3.2, 1.0), 2.0))  # about 40 ms, a long tail
    roll = rng.random()
    if roll < 0.04:
        raise Retry()
    if roll < 0.06:
        raise ConnectionError("the backend hung up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("png", type=Path)
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    herd = HerdExecutor(
        3, name="crawler", max_retries=2, backoff=ExponentialBackoff(0.05), registry=None
    )
    server = herd.serve("127.0.0.1:0")
    stop = threading.Event()

    def feed() -> None:
        rng = random.Random(7)
        while not stop.is_set():
            try:
                herd.submit(work, rng)
            except RuntimeError:  # shut down
                return

    feeder = threading.Thread(target=feed, name="feeder")
    feeder.start()
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(server.url)
        time.sleep(args.seconds / 2)
        herd.herd_size = 6  # the step the chart shows
        time.sleep(args.seconds / 2)
        page.screenshot(path=args.png, full_page=True)
        browser.close()
    stop.set()
    herd.shutdown(wait=True, cancel_futures=True)
    feeder.join()
    print(f"saved {args.png}")


if __name__ == "__main__":
    main()
