"""`pydeconv serve` driven as a person would: the page in headless chromium (tests/browser.py's
driver), against the real server. Pick an image and a layer, click a feature map: the projection
appears, is not blank, and equals pixel for pixel the one the Python API renders for that unit.
Screenshots are saved under the test's tmp_path.
"""

from __future__ import annotations

import base64
import io
from urllib.parse import parse_qs

import browser
import numpy as np
import pytest
from PIL import Image
from test_serve_api import expected, image_path, make_folders, small_net, start_server

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

WAIT = 60


@pytest.fixture(scope="module")
def net():
    return small_net()


@pytest.fixture(scope="module")
def server(net, tmp_path_factory):
    root, _ = make_folders(tmp_path_factory.mktemp("serve"))
    srv = start_server(net, [root])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def driver():
    d = browser._driver()
    yield d
    browser.close()


def _wait(driver, script, what, timeout=WAIT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(script), what)


def _shown_png(driver, selector):
    """The bytes of the picture an <img> shows (a blob: URL), decoded to RGB pixels."""
    data = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        fetch(document.querySelector(arguments[0]).src)
          .then((r) => r.arrayBuffer())
          .then((b) => {
            let s = ""; const u = new Uint8Array(b);
            for (let i = 0; i < u.length; i++) s += String.fromCharCode(u[i]);
            done(btoa(s));
          }).catch((e) => done("error " + e));
        """,
        selector,
    )
    assert not data.startswith("error"), data
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


def _hash(driver):
    return {k: v[0] for k, v in parse_qs(driver.execute_script("return location.hash")[1:]).items()}


def _unit_shown(driver, unit):
    return _wait(
        driver,
        f"return document.querySelector('#projection-img').dataset.unit === {unit!r} "
        "&& document.querySelector('#projection-img').complete",
        f"the projection of {unit}",
    )


def _check_projection(driver, server, net, image, layer, channel, rule, at):
    _unit_shown(driver, f"{image}/{layer}/{channel}/{rule}/{at}")
    got = _shown_png(driver, "#projection-img")
    assert got.std() > 0, "the projection is blank"
    where = at if at in ("max", "map") else tuple(int(v) for v in at.split(","))
    want = expected(net, image_path(server, image), layer, channel, rule, where)
    assert np.array_equal(got, want), f"{layer} channel {channel} {rule} at {at}"
    patch = _shown_png(driver, "#patch-img")
    assert patch.size > 0 and patch.std() > 0


def test_click_a_feature_map_shows_its_projection(server, net, driver, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    shots = tmp_path / "screenshots"
    shots.mkdir()
    driver.get(server.url + "/")
    _wait(driver, "return document.body.dataset.ready === '1'", "the page to load")
    # Pick an image and a layer.
    driver.find_element(By.CSS_SELECTOR, ".thumb[data-id='1']").click()
    driver.find_element(By.CSS_SELECTOR, "#layers li[data-layer='conv3']").click()
    _wait(driver, "return document.querySelectorAll('#fmaps .cell').length === 16", "the grid")
    order = [
        int(c)
        for c in driver.execute_script(
            "return Array.from(document.querySelectorAll('#fmaps .cell'))"
            ".map(c => c.dataset.channel)"
        )
    ]
    x_act = net.forward(__import__("pydeconv").image.load(image_path(server, "1"), net))[1]
    act = x_act.activation("conv3")[0]
    assert order == [int(c) for c in np.argsort(-act.reshape(16, -1).max(axis=1), kind="stable")]
    assert len(driver.find_elements(By.CSS_SELECTOR, "#fmaps .cell.top")) == 9
    # Click the third strongest feature map.
    driver.find_elements(By.CSS_SELECTOR, "#fmaps .cell")[2].click()
    channel = order[2]
    _check_projection(driver, server, net, "1", "conv3", channel, "deconvnet", "max")
    driver.save_screenshot(str(shots / "1-projection.png"))
    h = _hash(driver)
    assert h == {
        "image": "1",
        "layer": "conv3",
        "channel": str(channel),
        "rule": "deconvnet",
        "at": "max",
    }
    pixels = np.asarray(Image.open(shots / "1-projection.png").convert("L"), dtype=np.float32)
    assert pixels.std() > 2.0
    # Download buttons point at the pictures shown.
    href = driver.find_element(By.ID, "download-projection").get_attribute("href")
    assert href.startswith("blob:") and href == driver.find_element(
        By.ID, "projection-img"
    ).get_attribute("src")

    # The guided rule, then the whole map.
    driver.find_element(By.CSS_SELECTOR, "input[name=rule][value=guided]").click()
    _check_projection(driver, server, net, "1", "conv3", channel, "guided", "max")
    driver.find_element(By.CSS_SELECTOR, "input[name=at][value=map]").click()
    _check_projection(driver, server, net, "1", "conv3", channel, "guided", "map")

    # Arrow keys: the next channel in the grid's order, then the next layer.
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.ARROW_RIGHT)
    _check_projection(driver, server, net, "1", "conv3", order[3], "guided", "map")
    body.send_keys(Keys.ARROW_DOWN)
    _wait(
        driver,
        "return document.querySelector('#layers li.selected').dataset.layer === "
        "'relu3' && document.querySelectorAll('#fmaps .cell').length === 16",
        "the next layer",
    )
    assert _hash(driver)["layer"] == "relu3"

    # A reload restores the view from the URL (a shared link does the same).
    driver.get(server.url + "/#image=2&layer=conv2&channel=5&rule=backprop&at=max")
    driver.refresh()
    _check_projection(driver, server, net, "2", "conv2", 5, "backprop", "max")
    driver.save_screenshot(str(shots / "2-reloaded.png"))

    # A click on the input image projects from the position under it.
    img = driver.find_element(By.ID, "input")
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).move_to_element_with_offset(img, 0, 0).click().perform()  # the centre
    _wait(
        driver,
        "return !['max', 'map'].includes(new URLSearchParams(location.hash.slice(1)).get('at'))",
        "a clicked position",
    )
    at = _hash(driver)["at"]
    _check_projection(driver, server, net, "2", "conv2", 5, "backprop", at)
    y, x = (int(v) for v in at.split(","))
    shape = net.layer_info("conv2")["shape"]
    assert abs(y - shape[1] // 2) <= 1 and abs(x - shape[2] // 2) <= 1
    driver.save_screenshot(str(shots / "3-clicked.png"))
    for shot in shots.iterdir():
        assert np.asarray(Image.open(shot).convert("L"), dtype=np.float32).std() > 2.0


def test_upload_from_the_page(server, net, driver, tmp_path):
    from selenium.webdriver.common.by import By

    from pydeconv import demo

    driver.get(server.url + "/#layer=conv1")
    _wait(driver, "return document.body.dataset.ready === '1'", "the page to load")
    before = len(driver.find_elements(By.CSS_SELECTOR, ".thumb"))
    photo = demo.demo_images()[3]
    driver.find_element(By.ID, "upload").send_keys(str(photo))
    _wait(
        driver,
        f"return document.querySelectorAll('.thumb').length === {before + 1}",
        "the uploaded image in the strip",
    )
    _wait(
        driver,
        "return (new URLSearchParams(location.hash.slice(1)).get('image') || '').startsWith('u')",
        "the upload selected",
    )
    uid = _hash(driver)["image"]
    _wait(driver, "return document.querySelectorAll('#fmaps .cell').length === 8", "the grid")
    driver.find_elements(By.CSS_SELECTOR, "#fmaps .cell")[0].click()
    channel = int(_hash(driver)["channel"])
    _check_projection(driver, server, net, uid, "conv1", channel, "deconvnet", "max")
    driver.save_screenshot(str(tmp_path / "upload.png"))
