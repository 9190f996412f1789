"""Debian's headless chromium through Playwright: one launch for the browser tests, the first-paint benchmark
and the README's screenshots, so all three measure and show the same browser.

Never `playwright install` (it downloads a browser): `make browser` installs Debian's chromium.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from assistant.errors import ConfigError

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

CHROMIUM = Path("/usr/bin/chromium")
# No GPU and no sandbox in a container; no background traffic (updates, sync), so a run asks only the server
# under test and works offline.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def launch_chromium(playwright: Playwright) -> Browser:
    """Start headless chromium with Dossier's flags; raises `ConfigError` saying how to install it when missing.

    >>> with sync_playwright() as playwright:                      # doctest: +SKIP
    ...     browser = launch_chromium(playwright)
    """
    if not CHROMIUM.exists():
        raise ConfigError(f"{CHROMIUM} is missing: apt-get install -y chromium (make browser)")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
