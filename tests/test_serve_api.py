"""`pydeconv serve`'s HTTP API, against the real server (uvicorn on a free port, in a thread).

Every error path answers 400 (413 for an oversized upload) with a JSON message; nothing outside
the given folders is served; a burst of concurrent requests gets every answer right (each
projection equal to the one the Python API renders for the same unit); the trace cache stays
within its budget; a client that goes away mid-request leaves the server serving.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import models
import numpy as np
import pytest
from PIL import Image

import pydeconv
from pydeconv import demo
from pydeconv import image as pimg

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")

from pydeconv.serve import make_app  # noqa: E402

SIZE = 64  # the small net's input: the demo photos are resized to 64x64
MAX_UPLOAD_BYTES = 300_000
MAX_UPLOAD_PIXELS = 1_000_000


class Server:
    """A running server: ``get``/``post`` return (status, headers, body)."""

    def __init__(self, app):
        self.app = app
        self.state = app.state.pydeconv
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        if method == "POST":
            headers = {"Content-Type": "application/octet-stream", **(headers or {})}
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def get(self, path):
        return self.request("GET", path)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.state.close()


def small_net():
    return pydeconv.build(*models.zfnet_like(size=SIZE))


def start_server(net, folders, **options):
    options.setdefault("threads", 1)
    return Server(make_app(net, [str(f) for f in folders], **options))


def make_folders(base):
    """The demo photos in a folder, beside a file outside it that symbolic links point to."""
    root = base / "images"
    (root / "more").mkdir(parents=True)
    photos = demo.demo_images()
    for p in photos[:3]:
        shutil.copy(p, root / p.name)
    shutil.copy(photos[3], root / "more" / photos[3].name)
    outside = base / "outside"
    outside.mkdir()
    shutil.copy(photos[0], outside / "secret.jpg")
    (root / "link-out.jpg").symlink_to(outside / "secret.jpg")
    (root / "folder-out").symlink_to(outside, target_is_directory=True)
    (root / "link-in.jpg").symlink_to(root / photos[1].name)  # inside: the same file, once
    (root / "notes.txt").write_text("not an image")
    return root, outside


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return make_folders(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def net():
    return small_net()


@pytest.fixture(scope="module")
def server(net, folders):
    srv = start_server(
        net,
        [folders[0]],
        max_upload_bytes=MAX_UPLOAD_BYTES,
        max_upload_pixels=MAX_UPLOAD_PIXELS,
    )
    yield srv
    srv.stop()


def png_pixels(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def expected(net, path, layer, channel, rule="deconvnet", at="max"):
    """The projection the Python API renders for this unit, as pixels."""
    x = pimg.load(path, net)
    _, trace = net.forward(x)
    p = net.project(trace, layer, channel, at=at, rule=rule)[0]
    return np.asarray(pimg.render(p, net.preprocess["channel_order"]))


def image_path(server, image_id):
    return server.state.images[image_id].path


def error_of(status, headers, body, want=400):
    assert status == want, (status, body)
    assert headers["content-type"].startswith("application/json")
    msg = json.loads(body)["error"]
    assert "Traceback" not in msg and msg
    return msg


# --- what it serves ------------------------------------------------------------------------------


def test_model_lists_every_layer(server, net):
    status, headers, body = server.get("/api/model")
    assert status == 200
    info = json.loads(body)
    assert [row["name"] for row in info["layers"]] == [r["name"] for r in net.info()]
    for row, ref in zip(info["layers"], net.info()):
        assert row["kind"] == ref["kind"]
        assert row["shape"] == [int(v) for v in ref["shape"]]
        assert row["rf"]["size"] == [int(v) for v in ref["rf_size"]]
        assert row["rf"]["stride"] == [int(v) for v in ref["rf_stride"]]
        assert row["rf"]["start"] == [int(v) for v in ref["rf_start"]]
    assert info["input"]["shape"] == [3, SIZE, SIZE]
    assert info["rules"] == ["deconvnet", "guided", "backprop"]


def test_images_are_the_folder_files_only(server, folders):
    root, _ = folders
    status, _, body = server.get("/api/images")
    assert status == 200
    listed = json.loads(body)["images"]
    names = [im["name"] for im in listed]
    photos = demo.demo_images()
    assert names == sorted([p.name for p in photos[:3]]) + [f"more/{photos[3].name}"]
    assert [im["id"] for im in listed] == [str(i) for i in range(len(listed))]
    for im in listed:  # ids, never paths
        assert "/" not in im["id"] and str(root) not in json.dumps(im)


def test_input_image_is_the_preprocessed_input(server, net):
    status, headers, body = server.get("/api/image/0.png")
    assert status == 200 and headers["content-type"] == "image/png"
    x = pimg.load(image_path(server, "0"), net)
    assert np.array_equal(png_pixels(body), np.asarray(pimg.to_pil(x, net)))


def test_fmaps_sorted_by_strength(server, net):
    status, _, body = server.get("/api/fmaps?image=1&layer=conv2")
    assert status == 200
    meta = json.loads(body)
    x = pimg.load(image_path(server, "1"), net)
    _, trace = net.forward(x)
    act = trace.activation("conv2")[0]
    strength = act.reshape(act.shape[0], -1).max(axis=1)
    assert meta["channels"] == act.shape[0]
    np.testing.assert_allclose(meta["max"], strength, rtol=1e-6)
    assert meta["order"] == demo.top_channels(act, act.shape[0])
    assert meta["top"] == demo.top_channels(act, 9)
    assert meta["map"] == list(act.shape[1:])
    status, headers, sprite = server.get("/api/fmaps.png?image=1&layer=conv2")
    assert status == 200 and headers["content-type"] == "image/png"
    h, w = meta["cell"]
    assert Image.open(io.BytesIO(sprite)).size == (meta["cols"] * w, meta["rows"] * h)
    assert meta["cols"] * meta["rows"] >= meta["channels"]
    # Cell k of the sprite is channel order[k], on the layer's shared colour scale.
    from pydeconv.serve.state import HEAT_LUT

    pixels = png_pixels(sprite)
    lo, hi = 0.0, float(act.max())
    assert hi > 0 and meta["range"] == [lo, hi]
    for k in (0, 5, 11):
        r, q = divmod(k, meta["cols"])
        v = np.clip(np.floor((act[meta["order"][k]] - lo) * (255.0 / (hi - lo)) + 0.5), 0, 255)
        assert np.array_equal(
            pixels[r * h : (r + 1) * h, q * w : (q + 1) * w], HEAT_LUT[v.astype(np.uint8)]
        )
    # A linear layer: one cell per unit.
    status, _, body = server.get("/api/fmaps?image=1&layer=fc6")
    assert status == 200 and json.loads(body)["channels"] == 20


@pytest.mark.parametrize(
    "layer, channel, rule, at",
    [
        ("conv1", 3, "deconvnet", "max"),
        ("pool2", 5, "guided", "map"),
        ("conv3", 7, "backprop", "1,2"),
        ("relu4", 0, "deconvnet", "max"),
        ("fc6", 11, "guided", "max"),
    ],
)
def test_projection_equals_python_api(server, net, layer, channel, rule, at):
    status, headers, body = server.get(
        f"/api/project?image=2&layer={layer}&channel={channel}&rule={rule}&at={at}"
    )
    assert status == 200 and headers["content-type"] == "image/png"
    where = at if at in ("max", "map") else tuple(int(v) for v in at.split(","))
    want = expected(net, image_path(server, "2"), layer, channel, rule, where)
    got = png_pixels(body)
    assert np.array_equal(got, want)
    assert got.std() > 0  # not blank
    y, x = (int(v) for v in headers["x-pydeconv-position"].split(","))
    if at == "map":
        assert (y, x) == (-1, -1)
    elif at != "max":
        assert (y, x) == where


def test_patch_is_the_receptive_field(server, net):
    status, headers, body = server.get("/api/patch?image=0&layer=conv3&channel=4")
    assert status == 200
    x = pimg.load(image_path(server, "0"), net)
    _, trace = net.forward(x)
    a = trace.activation("conv3")[0, 4]
    y0, x0 = np.unravel_index(np.argmax(a), a.shape)
    assert headers["x-pydeconv-position"] == f"{y0},{x0}"
    # The engine's own choice for at="max" is the same position.
    _, pos = net.project(trace, "conv3", 4, at="max", return_positions=True)
    assert tuple(pos[0]) == (y0, x0)
    want = np.asarray(pimg.crop_patch(x, net, "conv3", int(y0), int(x0)))
    assert np.array_equal(png_pixels(body), want)
    status, headers, body = server.get("/api/patch?image=0&layer=conv3&channel=4&at=0,1")
    assert status == 200 and headers["x-pydeconv-position"] == "0,1"
    assert np.array_equal(png_pixels(body), np.asarray(pimg.crop_patch(x, net, "conv3", 0, 1)))


def test_page_and_static_files(server):
    for path, kind in (
        ("/", "text/html"),
        ("/static/index.html", "text/html"),
        ("/static/app.js", "text/javascript"),
        ("/static/style.css", "text/css"),
    ):
        status, headers, body = server.get(path)
        assert status == 200 and headers["content-type"].startswith(kind), path
        assert b"http://" not in body and b"https://" not in body  # nothing from the web
    assert "default-src 'self'" in server.get("/")[1]["content-security-policy"]


# --- errors: 400 and a JSON message, never a traceback -------------------------------------------

BAD = [
    ("/api/project?image=0&layer=nope&channel=0", "unknown layer 'nope'"),
    ("/api/project?image=0&layer=conv3&channel=16", "channel 16 out of range"),
    ("/api/project?image=0&layer=conv3&channel=-1", "channel -1 out of range"),
    ("/api/project?image=0&layer=conv3&channel=x", "channel must be an integer"),
    ("/api/project?image=0&layer=conv3", "missing parameter channel"),
    ("/api/project?image=0&channel=1", "missing parameter layer"),
    ("/api/project?layer=conv3&channel=1", "missing parameter image"),
    ("/api/project?image=99&layer=conv3&channel=1", "unknown image '99'"),
    ("/api/project?image=..%2F..%2Fetc%2Fpasswd&layer=conv3&channel=1", "unknown image"),
    ("/api/project?image=0&layer=conv3&channel=1&at=top", "at must be max, map or Y,X"),
    ("/api/project?image=0&layer=conv3&channel=1&at=1", "at must be max, map or Y,X"),
    ("/api/project?image=0&layer=conv3&channel=1&at=1,2,3", "at must be max, map or Y,X"),
    ("/api/project?image=0&layer=conv3&channel=1&at=1,99", "outside layer 'conv3'"),
    ("/api/project?image=0&layer=conv3&channel=1&at=-1,0", "outside layer 'conv3'"),
    ("/api/project?image=0&layer=conv3&channel=1&rule=lrp", "unknown rule 'lrp'"),
    ("/api/patch?image=0&layer=conv3&channel=99", "channel 99 out of range"),
    ("/api/patch?image=0&layer=zz&channel=0", "unknown layer 'zz'"),
    ("/api/patch?image=0&layer=conv3&channel=0&at=5,5", "outside layer 'conv3'"),
    ("/api/fmaps?image=0&layer=zz", "unknown layer 'zz'"),
    ("/api/fmaps?image=0", "missing parameter layer"),
    ("/api/fmaps.png?image=zz&layer=conv1", "unknown image 'zz'"),
    ("/api/image/77.png", "unknown image '77'"),
    ("/api/detections?image=77", "unknown image '77'"),
    ("/api/atlas?layer=conv1&channel=0", "no atlas"),
    ("/api/atlas/tile?layer=conv1&channel=0&rank=0", "no atlas"),
]


@pytest.mark.parametrize("path, message", BAD, ids=[p for p, _ in BAD])
def test_bad_requests_answer_400_json(server, path, message):
    assert message in error_of(*server.get(path))


def test_unknown_routes_and_methods_answer_json(server):
    error_of(*server.get("/api/nothing"), want=404)
    error_of(*server.request("POST", "/api/model", body=b"{}"), want=405)
    error_of(*server.request("GET", "/api/upload"), want=405)


TRAVERSAL = [
    "/static/../state.py",
    "/static/..%2Fstate.py",
    "/static/%2E%2E/app.py",
    "/static/app.py",
    "/static/__init__.py",
    "/api/image/..%2F..%2Fetc%2Fpasswd.png",
    "/api/image/%2Fetc%2Fpasswd.png",
    "/api/image/link-out.jpg.png",
    "/api/image/more%2Fchelsea.jpg.png",
    "//etc/passwd",
    "/../../../../etc/passwd",
    "/api/image/../../etc/passwd",
]


@pytest.mark.parametrize("path", TRAVERSAL)
def test_path_traversal_refused(server, folders, path):
    status, headers, body = server.get(path)
    assert status in (400, 404), (path, status)
    assert headers["content-type"].startswith("application/json")
    assert b"root:" not in body and b"import " not in body


def test_symlinks_out_of_the_folder_are_not_served(server, folders):
    root, outside = folders
    secret = (outside / "secret.jpg").resolve()
    for e in server.state.images.values():
        assert e.path.resolve() != secret
        assert root.resolve() in e.path.resolve().parents
    # the link inside the folder to a file inside it: listed once (under the file's own name)
    paths = [e.path for e in server.state.images.values()]
    assert len(paths) == len(set(paths))


def test_file_swapped_for_a_link_after_the_scan_is_refused(net, tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    photo = demo.demo_images()[0]
    shutil.copy(photo, root / "a.jpg")
    outside = tmp_path / "outside.jpg"
    shutil.copy(photo, outside)
    srv = start_server(net, [root])
    try:
        (root / "a.jpg").unlink()
        (root / "a.jpg").symlink_to(outside)
        assert "no longer a file inside its folder" in error_of(*srv.get("/api/image/0.png"))
    finally:
        srv.stop()


# --- uploads -------------------------------------------------------------------------------------


def _png(img):
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_upload_then_project(server, net):
    photo = demo.demo_images()[2]
    data = Path(photo).read_bytes()
    status, _, body = server.request(
        "POST", "/api/upload", body=data, headers={"X-Filename": "../../mine.jpg"}
    )
    assert status == 200, body
    answer = json.loads(body)
    uid = answer["id"]
    assert answer["name"] == "mine.jpg"  # the file name only, never a path
    entry = server.state.images[uid]
    assert server.state._tmp.resolve() in entry.path.resolve().parents  # the temporary folder
    listed = [im["id"] for im in json.loads(server.get("/api/images")[2])["images"]]
    assert uid in listed
    status, _, png = server.get(f"/api/project?image={uid}&layer=conv2&channel=3")
    assert status == 200
    assert np.array_equal(png_pixels(png), expected(net, photo, "conv2", 3))


@pytest.mark.parametrize(
    "kind",
    [None, "text/plain", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"],
)
def test_upload_needs_an_image_content_type(server, kind):
    data = Path(demo.demo_images()[0]).read_bytes()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("POST", "/api/upload", body=data, headers={"Content-Type": kind} if kind else {})
    r = conn.getresponse()
    assert "Content-Type image/" in error_of(r.status, dict(r.getheaders()), r.read())


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.evil.example"])
def test_other_host_names_are_refused(server, host):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("GET", "/api/model", headers={"Host": host})
    r = conn.getresponse()
    assert "answers to 127.0.0.1, localhost only" in error_of(
        r.status, dict(r.getheaders()), r.read()
    )
    assert server.request("GET", "/api/model", headers={"Host": "localhost:1234"})[0] == 200


def test_upload_too_many_bytes_is_413(server):
    data = b"\x89PNG" + bytes(MAX_UPLOAD_BYTES)
    msg = error_of(*server.request("POST", "/api/upload", body=data), want=413)
    assert "past the limit" in msg
    # Without a Content-Length (chunked): refused while reading.
    chunks = iter([bytes(100_000)] * 4)
    msg = error_of(*server.request("POST", "/api/upload", body=chunks), want=413)
    assert "past the limit" in msg


def test_upload_too_many_pixels_is_400(server):
    data = _png(Image.new("L", (1500, 1000)))  # a few kB, but 1.5 M pixels
    assert len(data) < MAX_UPLOAD_BYTES
    assert "past the limit of 1000000" in error_of(
        *server.request("POST", "/api/upload", body=data)
    )


def test_decompression_bomb_is_refused(server):
    # 20000 x 20000 one-bit pixels compress to a few tens of kB; Pillow's bomb guard refuses it
    # from the header (more than twice Image.MAX_IMAGE_PIXELS) before decoding anything.
    data = _png(Image.new("1", (20000, 20000)))
    assert len(data) < MAX_UPLOAD_BYTES
    msg = error_of(*server.request("POST", "/api/upload", body=data))
    assert "upload refused" in msg and "pixels" in msg


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"hello, not an image", "not an image"),
        (None, "cannot decode"),  # a truncated JPEG: the header reads, the pixels do not
    ],
    ids=["empty", "text", "truncated"],
)
def test_bad_uploads_answer_400(server, data, message):
    if data is None:
        data = Path(demo.demo_images()[0]).read_bytes()[:2000]
    before = set(server.state.images)
    msg = error_of(*server.request("POST", "/api/upload", body=data))
    assert message in msg
    assert str(server.state._tmp) not in msg  # no server paths in messages
    assert set(server.state.images) == before
    assert not [
        p
        for p in server.state._tmp.iterdir()
        if p.name not in {e.path.name for e in server.state.images.values()}
    ]


# --- many clients --------------------------------------------------------------------------------


def test_burst_of_200_requests_from_8_threads(server, net):
    units = [
        (img, layer, ch, rule, at)
        for img in ("0", "1", "3")
        for layer, ch, rule, at in (
            ("conv2", 1, "deconvnet", "max"),
            ("conv3", 9, "guided", "max"),
            ("pool2", 2, "backprop", "map"),
            ("relu4", 5, "deconvnet", "2,1"),
            ("fc6", 3, "deconvnet", "max"),
        )
    ]
    want = {}
    for u in units:
        img, layer, ch, rule, at = u
        where = at if at in ("max", "map") else tuple(int(v) for v in at.split(","))
        want[u] = expected(net, image_path(server, img), layer, ch, rule, where)
    fmap_meta = {
        img: json.loads(server.get(f"/api/fmaps?image={img}&layer=conv1")[2])
        for img in ("0", "1", "3")
    }

    def one(i):
        kind = i % 5
        if kind == 3:  # a bad request in the mix
            return "bad", server.get("/api/project?image=0&layer=conv3&channel=999")
        if kind == 4:
            img = ("0", "1", "3")[i % 3]
            return ("fmaps", img), server.get(f"/api/fmaps?image={img}&layer=conv1")
        u = units[i % len(units)]
        img, layer, ch, rule, at = u
        q = f"image={img}&layer={layer}&channel={ch}&rule={rule}&at={at}"
        return u, server.get(f"/api/project?{q}")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(200)))
    assert len(answers) == 200
    for key, (status, headers, body) in answers:
        if key == "bad":
            assert "channel 999 out of range" in error_of(status, headers, body)
        elif key[0] == "fmaps":
            assert status == 200 and json.loads(body)["order"] == fmap_meta[key[1]]["order"]
        else:
            assert status == 200, body
            assert np.array_equal(png_pixels(body), want[key]), key


def test_cache_stays_within_its_budget(net, folders):
    root, _ = folders
    x = pimg.load(demo.demo_images()[0], net)
    _, trace = net.forward(x)
    one = x.nbytes + sum(trace.activation(n).nbytes for n in trace.layers)
    budget = int(one * 2.5)  # room for two traces (and their derived pictures)
    srv = start_server(net, [root], cache_bytes=budget)
    try:
        n = len(srv.state.images)
        assert n >= 4
        for _ in range(3):
            for i in range(n):
                assert srv.get(f"/api/fmaps?image={i}&layer=conv1")[0] == 200
                cache = json.loads(srv.get("/api/cache")[2])
                assert cache["bytes"] <= budget and cache["entries"] <= 2
        assert cache["forwards"] == 3 * n  # evicted traces were recomputed, in LRU order
        # The most recent image stays: asking again runs no forward.
        assert srv.get(f"/api/project?image={n - 1}&layer=conv2&channel=0")[0] == 200
        assert json.loads(srv.get("/api/cache")[2])["forwards"] == 3 * n
    finally:
        srv.stop()


def test_client_disconnecting_mid_request(server):
    port = server.port
    for raw in (
        b"GET /api/project?image=3&layer=conv1&channel=2&rule=guided HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n" + bytes(5000),
        b"GET /api/fmaps?image=3&lay",
    ):
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(raw)
            s.close()  # gone before the answer
    time.sleep(0.5)
    status, _, body = server.get("/api/model")
    assert status == 200 and json.loads(body)["layers"]
    assert server.get("/api/project?image=3&layer=conv1&channel=2")[0] == 200


# --- the command line ----------------------------------------------------------------------------


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(args, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "pydeconv", "--threads", "1", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    return proc


def test_cli_serves_and_says_where(tmp_path, net, folders):
    model = tmp_path / "small.npz"
    net.save(model)
    port = _free_port()
    proc = _serve([str(model), str(folders[0]), "--port", str(port)], tmp_path)
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line, line + proc.stderr.read()
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                conn.request("GET", "/api/images")
                r = conn.getresponse()
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert r.status == 200 and len(json.loads(r.read())["images"]) == 4
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_cli_warns_when_not_on_loopback(tmp_path, net):
    model = tmp_path / "small.npz"
    net.save(model)
    proc = _serve([str(model), "--host", "0.0.0.0", "--port", str(_free_port())], tmp_path)
    try:
        assert "http://0.0.0.0:" in proc.stdout.readline()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "warning: serving on 0.0.0.0" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.npz"], "missing.npz"),
        (["MODEL", "no-such-folder"], "no-such-folder: not a folder"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, net, args, message):
    model = tmp_path / "small.npz"
    net.save(model)
    args = [str(model) if a == "MODEL" else a for a in args]
    r = subprocess.run(
        [sys.executable, "-m", "pydeconv", "serve", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert r.returncode == 1
    assert r.stderr.startswith("pydeconv: error:") and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_without_the_extra_says_which_to_install(tmp_path, net):
    model = tmp_path / "small.npz"
    net.save(model)
    code = (
        "import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None\n"
        "from pydeconv.cli import main\n"
        f"sys.exit(main(['serve', {str(model)!r}]))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
    )
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "pydeconv: error: this needs starlette, which is not installed: "
        "pip install 'pydeconv[serve]'"
    )


# --- --atlas DIR ---------------------------------------------------------------------------------


def _atlas_folder(root, net, layer="conv2", k=3, outside=None):
    """An atlas report's files as `pydeconv atlas` writes them: atlas.json and one tile PNG per
    channel under layer_<layer>/."""
    channels = int(net.layer_info(layer)["shape"][0])
    units = [
        [
            {"image": r, "path": f"/data/img{r}.jpg", "y": r, "x": ch % 3, "value": 10.0 - r}
            for r in range(k)
        ]
        for ch in range(channels)
    ]
    data = {
        "format": "pydeconv-atlas",
        "version": 1,
        "model": "small.npz",
        "layers": [layer],
        "k": k,
        "ranking": "activation",
        "class": None,
        "images": [f"/data/img{i}.jpg" for i in range(k)],
        "skipped": [],
        "units": {layer: units},
    }
    root.mkdir()
    (root / "atlas.json").write_text(json.dumps(data))
    (root / f"layer_{layer}").mkdir()
    for ch in range(channels - 1):
        Image.new("RGB", (30, 20), (ch * 20, 100, 50)).save(root / f"layer_{layer}/c{ch:04d}.png")
    if outside is not None:  # the last channel's tile: a link out of the folder
        (root / f"layer_{layer}/c{channels - 1:04d}.png").symlink_to(outside)
    return data


def test_atlas_tiles(tmp_path, net, folders):
    secret = tmp_path / "secret.png"
    Image.new("RGB", (5, 5)).save(secret)
    data = _atlas_folder(tmp_path / "atlas", net, outside=secret)
    srv = Server(make_app(net, [str(folders[0])], str(tmp_path / "atlas"), threads=1))
    try:
        assert json.loads(srv.get("/api/model")[2])["atlas"] is True
        status, _, body = srv.get("/api/atlas?layer=conv2&channel=4")
        assert status == 200
        answer = json.loads(body)
        want = data["units"]["conv2"][4]
        assert [(t["image"], t["y"], t["x"], t["value"]) for t in answer["top"]] == [
            (u["image"], u["y"], u["x"], u["value"]) for u in want
        ]
        assert [t["name"] for t in answer["top"]] == ["img0.jpg", "img1.jpg", "img2.jpg"]
        assert answer["tile"] is True
        status, headers, png = srv.get("/api/atlas/tile?layer=conv2&channel=4")
        assert status == 200 and headers["content-type"] == "image/png"
        assert png == (tmp_path / "atlas/layer_conv2/c0004.png").read_bytes()
        # The last channel's tile links out of the folder: not served.
        assert json.loads(srv.get("/api/atlas?layer=conv2&channel=11")[2])["tile"] is False
        assert "no tile" in error_of(*srv.get("/api/atlas/tile?layer=conv2&channel=11"))
        assert "no layer 'conv3'" in error_of(*srv.get("/api/atlas?layer=conv3&channel=0"))
        assert "channel 12 out of range" in error_of(*srv.get("/api/atlas?layer=conv2&channel=12"))
        assert "unknown layer" in error_of(*srv.get("/api/atlas/tile?layer=..&channel=0"))
    finally:
        srv.stop()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(format="other"), "not a pydeconv atlas"),
        (lambda d: d.update(version=2), "atlas version 2"),
        (lambda d: d["units"].update(nope=[]), "unknown layer 'nope'"),
        (lambda d: d["units"]["conv2"].pop(), "11 channels in the atlas and 12 in the model"),
    ],
    ids=["format", "version", "layer", "channels"],
)
def test_atlas_of_another_model_is_refused(tmp_path, net, change, message):
    data = _atlas_folder(tmp_path / "atlas", net)
    change(data)
    (tmp_path / "atlas/atlas.json").write_text(json.dumps(data))
    with pytest.raises(pydeconv.PydeconvError, match=message.replace("(", r"\(")):
        make_app(net, [], str(tmp_path / "atlas"))


def test_atlas_folder_without_atlas_json(tmp_path, net):
    with pytest.raises(pydeconv.PydeconvError, match="no atlas.json"):
        make_app(net, [], str(tmp_path))


# --- a detector ----------------------------------------------------------------------------------


def test_detector_boxes_and_their_units(tmp_path, folders):
    import darknet_files
    from test_detect import SMALL_DARKNET

    from pydeconv import detect

    cfg, _ = darknet_files.write(tmp_path, "small", SMALL_DARKNET)
    yolo = pydeconv.load(cfg, labels=["person", "cup"])
    srv = start_server(yolo, [folders[0]])
    try:
        status, _, body = srv.get("/api/detections?image=0&conf=0.05")
        assert status == 200
        answer = json.loads(body)
        x = pimg.load(image_path(srv, "0"), yolo)
        dets, trace = detect.detect(yolo, x, conf=0.05)
        assert answer["detector"] is True and len(answer["boxes"]) == len(dets) > 0
        for box, d in zip(answer["boxes"], dets):
            assert (box["layer"], box["channel"], tuple(box["at"])) == (
                d.layer,
                d.channel,
                (d.y, d.x),
            )
            np.testing.assert_allclose(box["box"], d.box, atol=0.01)
            assert box["label"] == d.name
        # A click on a box projects its unit.
        d = dets[0]
        q = f"image=0&layer={d.layer}&channel={d.channel}&at={d.y},{d.x}"
        status, _, png = srv.get(f"/api/project?{q}")
        assert status == 200
        want = pimg.render(yolo.project(trace, **d.unit)[0], yolo.preprocess["channel_order"])
        assert np.array_equal(png_pixels(png), np.asarray(want))
        for bad in ("2", "-0.1", "x"):
            assert "conf must be" in error_of(*srv.get(f"/api/detections?image=0&conf={bad}"))
    finally:
        srv.stop()
