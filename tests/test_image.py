"""Image helpers: preprocessing round trip, the render rule, receptive-field crops, grids, errors.

The helpers read only ``preprocess``, ``input_shape`` and ``info()``, so a plain stand-in object
plays the model here and these tests need no compiled engine.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from pydeconv import image as pimg
from pydeconv.errors import ChannelError, ImageError, LayerNotFoundError, ShapeError


def fake_net(order="RGB", size=(8, 10), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
    c = 1 if order == "L" else 3
    info = [
        # a 3x3 stride-1 pad-1 conv then a 2x2 stride-2 pool: rf 4x4, stride 2, start -1
        {
            "name": "conv",
            "kind": "conv2d",
            "shape": (4, 8, 10),
            "rf_size": (3, 3),
            "rf_stride": (1, 1),
            "rf_start": (-1, -1),
            "params": 0,
        },
        {
            "name": "pool",
            "kind": "max_pool2d",
            "shape": (4, 4, 5),
            "rf_size": (4, 4),
            "rf_stride": (2, 2),
            "rf_start": (-1, -1),
            "params": 0,
        },
        {
            "name": "fc",
            "kind": "linear",
            "shape": (2,),
            "rf_size": (8, 10),
            "rf_stride": (1, 1),
            "rf_start": (0, 0),
            "params": 0,
        },
    ]
    pre = {
        "size": list(size),
        "channel_order": order,
        "scale": 1 / 255,
        "mean": list(mean[:c]),
        "std": list(std[:c]),
        "source_layout": "NCHW",
    }
    return SimpleNamespace(preprocess=pre, input_shape=(c, *size), info=lambda: info)


def random_rgb(h=8, w=10, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


@pytest.mark.parametrize("order", ["RGB", "BGR", "L"])
def test_load_to_pil_round_trip(tmp_path, order):
    img = random_rgb()
    if order == "L":
        img = img.convert("L").convert("RGB")
    path = tmp_path / "in.png"
    img.save(path)
    net = fake_net(order)
    x = pimg.load(path, net)
    assert x.dtype == np.float32 and x.shape == (1, net.input_shape[0], 8, 10)
    assert x.flags.c_contiguous
    back = pimg.to_pil(x, net)
    assert back.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(back), np.asarray(img))


def test_from_pil_formula_and_channel_order():
    img = random_rgb()
    rgb = np.asarray(img, dtype=np.float64).transpose(2, 0, 1)
    net = fake_net("BGR", mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    x = pimg.from_pil(img, net)[0]
    mean = np.array([0.1, 0.2, 0.3]).reshape(3, 1, 1)
    std = np.array([0.5, 0.25, 2.0]).reshape(3, 1, 1)
    np.testing.assert_allclose(x, (rgb[::-1] / 255 - mean) / std, rtol=1e-6, atol=1e-6)


def test_from_pil_resizes_bilinear():
    big = random_rgb(40, 30, seed=1)
    net = fake_net("RGB", mean=(0, 0, 0), std=(1, 1, 1))
    x = pimg.from_pil(big, net)
    expected = np.asarray(big.resize((10, 8), Image.BILINEAR), dtype=np.float64) / 255
    np.testing.assert_allclose(x[0], expected.transpose(2, 0, 1), atol=1e-7)


def test_from_pil_channel_mismatch():
    net = fake_net("RGB")
    net.input_shape = (1, 8, 10)
    with pytest.raises(ShapeError):
        pimg.from_pil(random_rgb(), net)


def test_render_rule_grey():
    p = np.array([[[-2.0, 0.0, 1.0, 2.0, -0.5]]], dtype=np.float32)
    img = pimg.render(p)
    assert img.mode == "RGB" and img.size == (5, 1)
    # v = 0.5 + p/4: 0, 0.5, 0.75, 1, 0.375 -> floor(v*255 + 0.5)
    expected = [0, 128, 191, 255, 96]
    np.testing.assert_array_equal(np.asarray(img)[0, :, 0], expected)
    np.testing.assert_array_equal(np.asarray(img)[0, :, 1], expected)


def test_render_zero_is_grey():
    img = pimg.render(np.zeros((1, 3, 4, 5), np.float32))
    assert img.size == (5, 4)
    assert np.all(np.asarray(img) == 128)


def test_render_colour_and_bgr():
    p = np.zeros((3, 1, 2), np.float32)
    p[0, 0, 0] = 4.0  # first channel, strongest
    p[2, 0, 1] = -1.0  # third channel
    rgb = np.asarray(pimg.render(p, "RGB"))
    bgr = np.asarray(pimg.render(p, "BGR"))
    # one m for the whole image: v = 0.5 + p/8
    assert rgb[0, 0].tolist() == [255, 128, 128]
    assert rgb[0, 1].tolist() == [128, 128, 96]
    np.testing.assert_array_equal(bgr, rgb[:, :, ::-1])


def test_render_other_channel_counts_sum_to_grey():
    p = np.array([[[1.0, -3.0]], [[1.0, 1.0]]], dtype=np.float32)  # sums: 2, -2
    out = np.asarray(pimg.render(p))
    assert out[0, :, 0].tolist() == [255, 0]


def test_render_rejects_bad_input():
    with pytest.raises(ShapeError):
        pimg.render(np.zeros((2, 1, 3, 4, 4)))
    with pytest.raises(ShapeError):
        pimg.render(np.full((1, 2, 2), np.nan))


def test_receptive_field_clipped_at_borders():
    net = fake_net()
    assert pimg.receptive_field(net, "pool", 0, 0) == (0, 0, 3, 3)
    assert pimg.receptive_field(net, "pool", 1, 2) == (1, 3, 5, 7)
    assert pimg.receptive_field(net, "pool", 3, 4) == (5, 7, 8, 10)
    assert pimg.receptive_field(net, "fc", 0, 0) == (0, 0, 8, 10)
    with pytest.raises(ChannelError):
        pimg.receptive_field(net, "pool", 4, 0)
    with pytest.raises(LayerNotFoundError):
        pimg.receptive_field(net, "nope", 0, 0)


def test_crop_patch_from_pil_and_array():
    img = random_rgb()
    net = fake_net()
    patch = pimg.crop_patch(img, net, "pool", 3, 4)
    assert patch.size == (3, 3)
    np.testing.assert_array_equal(np.asarray(patch), np.asarray(img)[5:8, 7:10])
    x = pimg.from_pil(img, net)
    same = pimg.crop_patch(x, net, "pool", 3, 4)
    np.testing.assert_array_equal(np.asarray(same), np.asarray(patch))
    corner = pimg.crop_patch(img.resize((20, 16)), net, "pool", 0, 0)  # resized to 10x8 first
    assert corner.size == (3, 3)


def test_mask_to_receptive_field():
    p = np.arange(2 * 3 * 8 * 10, dtype=np.float32).reshape(2, 3, 8, 10)
    net = fake_net()
    crop = pimg.mask_to_receptive_field(p, net, "pool", 1, 2)
    np.testing.assert_array_equal(crop, p[:, :, 1:5, 3:7])


def test_enlarge_whole_factor():
    img = random_rgb(5, 7)
    big = pimg.enlarge(img, 20)
    assert big.size == (28, 20)
    np.testing.assert_array_equal(np.asarray(big)[::4, ::4], np.asarray(img))
    assert pimg.enlarge(img, 3) is img


def test_grid_size_and_placement():
    tiles = [Image.new("RGB", (10, 6), (i * 40, 0, 0)) for i in range(5)]
    g = pimg.grid(tiles, cols=2, pad=3, background=(0, 0, 255))
    assert g.size == (2 * 10 + 3 * 3, 3 * 6 + 4 * 3)
    a = np.asarray(g)
    assert a[0, 0].tolist() == [0, 0, 255]  # padding
    assert a[3 + 6 + 3, 3 + 10 + 3].tolist() == [120, 0, 0]  # tile 3 at row 1, col 1
    assert a[-2, -2].tolist() == [0, 0, 255]  # the empty sixth cell
    assert pimg.grid(tiles).size == (3 * 10 + 4 * 2, 2 * 6 + 3 * 2)  # default: ceil(sqrt(5)) cols


def test_grid_captions_add_text_below():
    tiles = [Image.new("RGB", (30, 20), (0, 0, 0)) for _ in range(2)]
    plain = pimg.grid(tiles, cols=2)
    cap = pimg.grid(tiles, cols=2, captions=["conv5 ch 1", "a much longer caption <b>"])
    assert cap.height > plain.height and cap.width > plain.width
    below = np.asarray(cap)[2 + 20 + 2 :, :, :]
    assert (below < 128).any()  # some dark text pixels under the tiles
    with pytest.raises(ValueError):
        pimg.grid(tiles, captions=["one"])
    with pytest.raises(ValueError):
        pimg.grid([])


def test_missing_image_names_file(tmp_path):
    path = tmp_path / "absent.png"
    with pytest.raises(ImageError, match="absent.png"):
        pimg.load(path, fake_net())


def test_undecodable_image_names_file(tmp_path):
    path = tmp_path / "junk.jpg"
    path.write_bytes(b"this is not an image at all")
    with pytest.raises(ImageError, match="junk.jpg"):
        pimg.load(path, fake_net())


def test_truncated_image_names_file(tmp_path):
    good = tmp_path / "good.png"
    random_rgb(64, 64).save(good)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageError, match="cut.png"):
        pimg.load(cut, fake_net())
