"""The documentation site: it builds with ``mkdocs build --strict`` and renders in a browser.

The browser test opens the built home page and one API page in headless Chromium, served from
127.0.0.1 (no network), and checks the DOM (title, code blocks) and that the screenshot is
not blank. Without Chromium it is skipped (``apt install chromium``; ``.ci/run`` installs it).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from html import unescape
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1280,1600",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built strictly (any warning fails) into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "mkdocs.yml", "-d", out],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{log}"
    assert "WARNING" not in log, log
    return out


def test_site_builds_strictly_with_every_page(site: Path) -> None:
    assert (site / "index.html").is_file()
    assert (site / "api" / "calculators" / "index.html").is_file()
    # every workflow page shows its figure, and the figure is in the site
    for page in sorted((ROOT / "docs" / "workflows").glob("*.md")):
        if page.stem == "index":
            continue
        html = (site / "workflows" / page.stem / "index.html").read_text(encoding="utf-8")
        figures = re.findall(r'<img[^>]* src="([^"]+\.png)"', html)
        assert figures, f"workflow page {page.name} shows no figure"
        for src in figures:
            assert (site / "workflows" / page.stem / src).resolve().is_file(), (page.name, src)
    # every model card of the registry is a page of the site, included from the card itself
    cards = sorted(path.stem for path in (ROOT / "registry" / "cards").glob("*.md"))
    index = json.loads((ROOT / "registry" / "index.json").read_text(encoding="utf-8"))
    assert cards == sorted(model["name"] for model in index["models"])
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for name in cards:
        assert f"models/{name}.md" in nav, f"model card {name} is not in the nav of mkdocs.yml"
        card = (ROOT / "registry" / "cards" / f"{name}.md").read_text(encoding="utf-8")
        heading = card.splitlines()[0].removeprefix("# ").replace("`", "")
        page = (site / "models" / name / "index.html").read_text(encoding="utf-8")
        assert heading in _text(page), f"the page of {name} does not show its card"


def _text(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html))


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    """Base URL of the built site, served on 127.0.0.1 by a thread of this process."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()
            thread.join()


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("headless Chromium is not installed: apt install chromium")


def _run_chromium(browser: str, profile: Path, *args: str) -> str:
    result = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize(
    ("page", "title", "expected"),
    [
        ("", "mlcalc", "NEMPCalculator.from_pretrained"),
        ("api/calculators/", "mlcalc.calculators", "from_checkpoint"),
    ],
)
def test_page_renders_in_headless_chromium(
    served: str, tmp_path: Path, page: str, title: str, expected: str
) -> None:
    browser = _chromium()
    url = served + page
    dom = _run_chromium(browser, tmp_path / "profile-dom", "--dump-dom", url)
    heading = re.search(r"<h1[^>]*>(.*?)</h1>", dom, re.DOTALL)
    assert heading is not None, f"{url}: no <h1>"
    assert title in _text(heading.group(1)), heading.group(1)
    assert f"<title>{title}" in dom
    code_blocks = re.findall(r'<div class="[^"]*highlight[^"]*"><pre', dom)
    assert code_blocks, f"{url}: no highlighted code block"
    assert expected in _text(dom)
    assert "md-search" in dom and "md-nav" in dom  # the theme's search box and navigation

    png = tmp_path / "page.png"
    _run_chromium(browser, tmp_path / "profile-shot", f"--screenshot={png}", url)
    pixels = image.imread(png)[..., :3]
    assert pixels.shape[:2] == (1600, 1280), pixels.shape
    colours = np.unique((pixels.reshape(-1, 3) * 255).round().astype(np.uint8), axis=0)
    assert len(colours) > 100, f"{url}: screenshot has only {len(colours)} colours"
    ink = np.mean(np.abs(pixels - pixels.reshape(-1, 3).max(axis=0)).sum(axis=-1) > 0.3)
    assert ink > 0.02, f"{url}: screenshot nearly blank ({ink:.1%} of pixels differ from white)"
