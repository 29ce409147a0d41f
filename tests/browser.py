"""Open a report folder in a real headless browser, as a person would (issue 15/16).

Debian's ``chromium`` + ``chromium-driver`` (CI installs them with apt) driven through Selenium.
:func:`check_report` loads ``index.html`` and every local page it links to, and asserts that every
``<img>`` decoded (naturalWidth > 0), every local link points to an existing file inside the
folder, and each page's screenshot is not blank; the screenshots are saved (test artefacts).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from PIL import Image

_DRIVER = None


def _driver():
    global _DRIVER
    if _DRIVER is not None:
        return _DRIVER
    webdriver = pytest.importorskip("selenium.webdriver")
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chrome or not driver:
        pytest.skip(
            "needs Debian's chromium and chromium-driver (apt install chromium chromium-driver)"
        )
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--allow-file-access-from-files",
    ):
        opts.add_argument(arg)
    service = webdriver.ChromeService(executable_path=driver)
    _DRIVER = webdriver.Chrome(options=opts, service=service)
    return _DRIVER


def close() -> None:
    global _DRIVER
    if _DRIVER is not None:
        _DRIVER.quit()
        _DRIVER = None


def _local_target(page: Path, href: str) -> Path | None:
    url = urlparse(href)
    if url.scheme not in ("", "file"):
        raise AssertionError(f"{page}: link to an external resource {href!r} (reports are offline)")
    if not url.path:
        return None  # an anchor on the same page
    return Path(unquote(url.path)) if url.scheme == "file" else (page.parent / unquote(url.path))


def check_report(folder: Path, shots: Path, max_pages: int = 50) -> list[Path]:
    """Check every page of the report under ``folder``; screenshots go to ``shots``. Returns
    the screenshots' paths."""
    driver = _driver()
    folder = folder.resolve()
    shots.mkdir(parents=True, exist_ok=True)
    todo, seen, out = [folder / "index.html"], set(), []
    while todo and len(seen) < max_pages:
        page = todo.pop(0).resolve()
        if page in seen:
            continue
        seen.add(page)
        assert page.is_file(), f"missing page {page}"
        assert folder in page.parents, f"{page} is outside the report folder"
        driver.get(page.as_uri())
        imgs = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), "
            "i.complete && i.naturalWidth > 0]);"
        )
        broken = [src for src, ok in imgs if not ok]
        assert not broken, f"{page.name}: images that did not load: {broken[:5]}"
        links = driver.execute_script(
            "return Array.from(document.querySelectorAll('a[href]'))"
            ".map(a => a.getAttribute('href'));"
        )
        for href in links:
            target = _local_target(page, href)
            if target is None:
                continue
            target = target.resolve()
            assert target.exists(), f"{page.name}: link {href!r} points to a missing file"
            assert folder in target.parents, f"{page.name}: link {href!r} leaves the report"
            if target.suffix == ".html":
                todo.append(target)
        shot = shots / f"{page.relative_to(folder).as_posix().replace('/', '__')}.png"
        driver.save_screenshot(str(shot))
        pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
        assert pixels.std() > 2.0, f"{page.name}: the screenshot is blank"
        out.append(shot)
    return out
