"""A real headless browser for the UI tests (Debian's chromium driven by Playwright) and where their screenshots
go: a temporary folder, or docs/images (the README's) with HFT_UPDATE_SCREENSHOTS=1 (``make screenshots``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = os.environ.get("HFT_CHROMIUM", "/usr/bin/chromium")
DOCS_IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"


@contextmanager
def chromium() -> Iterator:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} not found: run `make setup` (installs Debian's chromium)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@contextmanager
def new_page(browser, width: int = 1400, height: int = 900, credentials: tuple[str, str] | None = None) -> Iterator:
    """A page of its own context; ``credentials`` (user, password) answer HTTP basic auth."""
    auth = {"username": credentials[0], "password": credentials[1]} if credentials else None
    context = browser.new_context(viewport={"width": width, "height": height}, http_credentials=auth)
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        yield page
    finally:
        context.close()


def screenshot_dir(fallback: Path) -> Path:
    """docs/images with HFT_UPDATE_SCREENSHOTS=1, else ``fallback`` (a test's temporary folder)."""
    if os.environ.get("HFT_UPDATE_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        return DOCS_IMAGES
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback
