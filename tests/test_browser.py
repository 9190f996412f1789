"""The one launch of Debian's headless chromium that the browser tests, bench/first_paint.py and docs/screenshot.py share."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant import browser
from assistant.errors import ConfigError


@pytest.mark.browser
def test_the_launched_browser_is_headless_chromium_that_renders_a_page() -> None:
    if not browser.CHROMIUM.exists():
        pytest.skip(f"{browser.CHROMIUM} is missing: apt-get install -y chromium (make browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = browser.launch_chromium(playwright)
        try:
            page = chromium.new_page()
            page.set_content("<p id=x>seals</p>")
            assert page.inner_text("#x") == "seals"
            assert "HeadlessChrome" in page.evaluate("navigator.userAgent")
        finally:
            chromium.close()


def test_a_missing_chromium_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", tmp_path / "chromium")
    with pytest.raises(ConfigError, match=r"chromium is missing: apt-get install -y chromium \(make browser\)"):
        browser.launch_chromium(object())  # type: ignore[arg-type]
