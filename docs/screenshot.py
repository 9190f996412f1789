"""Take the README's screenshots: the chat answering a question on the demo corpus, its sources open.

    .venv/bin/python docs/screenshot.py            # needs Debian's chromium (make browser)

Three pictures: docs/screenshot.png (light theme, 1200x860), docs/screenshot-dark.png (the dark theme)
and docs/screenshot-embed.png (the compact chat for iframes, `/?embed=1`, at a phone's 360x640).

Same setup as the browser tests: the demo corpus in a temporary store, Dossier on a free port of
127.0.0.1, headless chromium driven by Playwright.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from assistant.api import DEMO_CORPUS, BackgroundServer, create_app, prepare
from assistant.browser import launch_chromium
from assistant.settings import Settings

HERE = Path(__file__).resolve().parent


SHOTS = [
    ("screenshot.png", "/", {"width": 1200, "height": 860}),
    ("screenshot-dark.png", "/?__theme=dark", {"width": 1200, "height": 860}),
    ("screenshot-embed.png", "/?embed=1", {"width": 360, "height": 640}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--question", default="What figures did Hamas report?")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the pictures")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(store=Path(folder) / "store", upload_dir=Path(folder) / "uploads", chroma_url="")
        with (
            BackgroundServer(create_app(settings, prepare(settings, DEMO_CORPUS))) as server,
            sync_playwright() as playwright,
        ):
            browser = launch_chromium(playwright)
            for name, path, viewport in SHOTS:
                page = browser.new_page(viewport=viewport, device_scale_factor=1)
                shoot(page, server.url + path, args.question, args.out / name)
                page.close()
            browser.close()


def shoot(page: Any, url: str, question: str, out: Path) -> None:
    page.set_default_timeout(120_000)
    page.goto(url)
    box = page.locator("#dossier-question textarea, #dossier-question input").first
    box.fill(question)
    box.press("Enter")
    answer = page.locator("#dossier-chatbot .dossier-answer:has(details)").first
    answer.wait_for()
    answer.locator("summary").click()
    page.wait_for_timeout(800)
    # Show the question and the start of the answer: the chat scrolls itself to the bottom; scroll it back.
    page.evaluate(
        """() => [...document.querySelectorAll('#dossier-chatbot *')]
            .filter(e => e.scrollHeight > e.clientHeight + 4)
            .forEach(e => { e.scrollTop = 0; })"""
    )
    page.wait_for_timeout(200)
    page.screenshot(path=str(out))
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
