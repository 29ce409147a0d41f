"""Pins the image contract shared by the C++ helpers (csrc/src/image.cpp) and pydeconv/image.py.

The golden arrays were produced by Pillow 13.0.0 and are the same ones tests/cpp/test_image.cpp
checks the C++ resize against, so Python and C++ are held to identical pixels. Pillow 13 (PR #9549)
runs the vertical pass first when the height shrinks by more than twice as many pixels as the
width; older Pillow always ran horizontal first, and the 8-bit intermediate makes that visible:
those cases carry the older result too, and the C++ side follows Pillow >= 13.
"""

from __future__ import annotations

import numpy as np
import PIL
from PIL import Image

from pydeconv import image as pimage

_PILLOW_13 = int(PIL.__version__.split(".")[0]) >= 13


def make_src(w: int, h: int, c: int) -> np.ndarray:
    """The deterministic test image also built by tests/cpp/test_image.cpp (keep them in sync)."""
    y, x, ch = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    return ((x * 37 + y * 91 + ch * 53 + (x * y) % 7 * 29) % 256).astype(np.uint8)


def to_pil(a: np.ndarray) -> Image.Image:
    return Image.fromarray(a[..., 0], "L") if a.shape[2] == 1 else Image.fromarray(a, "RGB")


# (w, h, channels, out_w, out_h, pixels (HWC, flattened), pixels before Pillow 13 or None if equal)
GOLDENS = [
    (7, 5, 3, 11, 9, [
        0, 53, 106, 17, 70, 123, 40, 93, 146, 64, 117, 170, 87, 140, 193, 111, 164, 217, 135, 188,
        241, 158, 211, 194, 182, 235, 55, 205, 119, 55, 222, 19, 72, 30, 83, 136, 52, 105, 119,
        81, 126, 102, 111, 102, 132, 109, 108, 161, 85, 138, 191, 115, 168, 221, 144, 197, 180,
        174, 227, 47, 204, 117, 54, 225, 22, 75, 81, 134, 187, 109, 162, 112, 149, 182, 28, 189,
        77, 68, 147, 55, 108, 42, 95, 148, 82, 135, 188, 122, 175, 158, 162, 215, 35, 201, 115,
        51, 230, 27, 80, 131, 184, 124, 116, 169, 95, 104, 144, 68, 154, 104, 118, 153, 73, 126,
        112, 51, 104, 105, 116, 169, 122, 175, 158, 172, 225, 46, 161, 136, 73, 145, 56, 109, 182,
        235, 32, 109, 162, 75, 30, 83, 136, 90, 143, 196, 151, 110, 163, 211, 8, 61, 142, 102,
        155, 129, 182, 165, 189, 242, 63, 110, 163, 100, 37, 90, 143, 90, 143, 83, 89, 142, 133,
        85, 138, 191, 65, 118, 171, 108, 119, 120, 197, 136, 47, 120, 131, 133, 114, 128, 150,
        203, 127, 77, 137, 126, 127, 71, 124, 177, 27, 80, 133, 72, 125, 178, 117, 168, 221, 57,
        90, 143, 84, 119, 89, 177, 230, 56, 99, 152, 122, 102, 85, 138, 213, 33, 86, 162, 99, 136,
        106, 159, 183, 78, 131, 184, 65, 118, 171, 59, 96, 149, 118, 47, 100, 140, 85, 107, 134,
        187, 155, 85, 138, 160, 101, 84, 137, 203, 23, 76, 176, 112, 72, 140, 193, 76, 108, 161,
        214, 61, 114, 167, 24, 53, 106, 155, 22, 75, 174, 64, 117, 108, 161, 214, 76, 129, 182,
        100, 83, 136, 197, 17, 70, 184, 120, 34, 161, 214, 11
    ], None),
    (13, 11, 3, 5, 4, [
        99, 125, 118, 125, 136, 143, 142, 126, 103, 112, 120, 127, 138, 162, 111, 102, 125, 146,
        117, 109, 131, 133, 121, 114, 107, 120, 146, 126, 104, 127, 148, 129, 120, 104, 91, 115,
        103, 105, 135, 125, 127, 119, 82, 82, 121, 116, 126, 160, 138, 116, 122, 127, 125, 133,
        129, 130, 155, 137, 113, 122
    ], None),
    (1, 9, 3, 3, 4, [
        75, 128, 130, 75, 128, 130, 75, 128, 130, 91, 144, 122, 91, 144, 122, 91, 144, 122, 125,
        178, 125, 125, 178, 125, 125, 178, 125, 141, 99, 152, 141, 99, 152, 141, 99, 152
    ], None),
    (9, 1, 3, 4, 1, [
        31, 84, 137, 106, 159, 205, 172, 156, 103, 61, 62, 115
    ], None),
    (10, 6, 1, 3, 13, [
        55, 147, 74, 71, 145, 92, 109, 140, 136, 134, 137, 161, 124, 139, 127, 113, 141, 96, 99,
        133, 89, 84, 124, 82, 89, 130, 95, 96, 137, 109, 107, 139, 130, 119, 139, 153, 124, 139,
        163
    ], None),
    (17, 3, 3, 6, 7, [
        44, 97, 150, 140, 174, 177, 108, 89, 102, 92, 145, 150, 159, 145, 65, 63, 89, 142, 58,
        102, 141, 137, 167, 169, 116, 95, 101, 98, 140, 144, 158, 144, 71, 79, 95, 134, 100, 118,
        115, 130, 144, 145, 139, 112, 100, 115, 124, 126, 156, 142, 89, 125, 112, 109, 142, 133,
        88, 122, 122, 121, 162, 130, 98, 133, 108, 108, 153, 139, 107, 172, 130, 84, 127, 133,
        101, 132, 126, 127, 140, 145, 99, 133, 111, 124, 147, 153, 107, 138, 137, 107, 112, 133,
        114, 143, 131, 133, 118, 159, 100, 133, 113, 141, 140, 167, 108, 104, 144, 129, 107, 133,
        118, 146, 132, 135, 111, 164, 100, 133, 114, 146, 138, 172, 108, 93, 146, 137
    ], None),
    (3, 3, 3, 1, 1, [
        105, 126, 111
    ], None),
    (8, 23, 3, 6, 7, [
        84, 137, 119, 108, 113, 124, 122, 108, 137, 128, 161, 155, 174, 131, 75, 107, 118, 122,
        110, 150, 139, 128, 106, 142, 117, 117, 137, 85, 86, 129, 156, 87, 96, 118, 152, 125, 125,
        117, 142, 146, 137, 129, 139, 119, 108, 109, 77, 109, 89, 117, 146, 128, 119, 149, 143,
        117, 149, 136, 121, 174, 155, 99, 136, 151, 168, 137, 110, 133, 152, 143, 115, 129, 137,
        132, 107, 116, 114, 136, 122, 113, 157, 131, 174, 180, 164, 144, 87, 157, 120, 99, 116,
        143, 130, 139, 95, 140, 128, 113, 125, 97, 96, 128, 160, 94, 84, 109, 144, 116, 133, 122,
        123, 158, 134, 103, 172, 104, 98, 73, 62, 110, 83, 92, 139, 119, 120, 143
    ], [
        84, 137, 119, 108, 114, 125, 122, 108, 136, 128, 161, 155, 174, 131, 75, 108, 118, 122,
        110, 151, 139, 128, 106, 142, 117, 117, 137, 84, 85, 129, 156, 88, 96, 119, 152, 125, 125,
        117, 142, 146, 137, 129, 139, 119, 108, 110, 77, 109, 89, 116, 146, 127, 119, 148, 142,
        117, 148, 135, 120, 173, 155, 99, 136, 150, 168, 136, 109, 132, 152, 143, 115, 129, 137,
        132, 107, 116, 114, 136, 122, 113, 157, 131, 174, 180, 164, 144, 87, 158, 120, 99, 116,
        142, 130, 139, 95, 140, 128, 113, 125, 97, 96, 127, 160, 94, 83, 109, 144, 116, 132, 122,
        123, 158, 134, 103, 172, 105, 98, 73, 62, 110, 83, 92, 139, 119, 121, 143
    ]),
    (12, 31, 1, 9, 5, [
        98, 117, 123, 106, 158, 111, 105, 123, 92, 130, 140, 139, 124, 109, 133, 128, 138, 138,
        131, 128, 131, 121, 153, 135, 116, 133, 111, 124, 144, 152, 105, 105, 120, 128, 143, 111,
        135, 119, 131, 134, 133, 144, 118, 135, 137
    ], [
        98, 117, 123, 106, 158, 111, 105, 123, 91, 130, 140, 140, 124, 109, 133, 128, 138, 138,
        131, 128, 131, 121, 152, 135, 116, 133, 111, 124, 144, 151, 104, 105, 120, 128, 143, 111,
        135, 119, 131, 134, 133, 144, 118, 135, 137
    ]),
]


def test_pillow_bilinear_resize_matches_goldens():
    for w, h, c, ow, oh, pixels, before_13 in GOLDENS:
        out = np.asarray(to_pil(make_src(w, h, c)).resize((ow, oh), Image.BILINEAR))
        expected = pixels if _PILLOW_13 or before_13 is None else before_13
        assert out.reshape(-1).tolist() == expected, f"{w}x{h} -> {ow}x{oh}"


def test_vertical_first_cases_really_depend_on_the_pass_order():
    # Guards the goldens above: these cases would not pin the order if both orders agreed.
    orders = [g for g in GOLDENS if g[6] is not None]
    assert len(orders) == 2
    for w, h, c, ow, oh, pixels, before_13 in orders:
        assert (h - oh) > 0 and (h - oh) > (w - ow) * 2
        assert pixels != before_13


def test_pillow_grey_conversion_matches_goldens():
    cases = [((255, 0, 0), 76), ((0, 255, 0), 150), ((0, 0, 255), 29), ((12, 200, 77), 130),
             ((255, 255, 255), 255), ((1, 2, 3), 2), ((128, 64, 250), 104)]
    for rgb, grey in cases:
        assert Image.new("RGB", (1, 1), rgb).convert("L").getpixel((0, 0)) == grey
        r, g, b = rgb
        assert (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16 == grey  # the C++ formula


class _Net:
    def __init__(self, order: str, h: int, w: int) -> None:
        self.input_shape = (1 if order == "L" else 3, h, w)
        c = self.input_shape[0]
        self.preprocess = {"size": [h, w], "channel_order": order, "scale": 1.0, "mean": [0.0] * c, "std": [1.0] * c}


def test_python_preprocessing_converts_to_grey_before_resizing():
    # The same golden as the C++ test to_input_grey_converts_before_resizing.
    x = pimage.from_pil(to_pil(make_src(13, 11, 3)), _Net("L", 4, 5))
    assert x.shape == (1, 1, 4, 5) and x.dtype == np.float32
    assert x.reshape(-1).tolist() == [116, 134, 128, 118, 149, 120, 114, 123, 119, 113,
                                      134, 97, 108, 125, 86, 127, 123, 126, 132, 121]


def test_python_render_matches_the_cpp_expectations():
    # The same inputs and bytes as the C++ test render_follows_the_contrast_rule.
    bgr = np.array([4, -4, 0, 1, 2, -2], dtype=np.float32).reshape(3, 1, 2)
    assert np.asarray(pimage.render(bgr, "BGR")).reshape(-1).tolist() == [191, 128, 255, 64, 159, 0]
    assert np.asarray(pimage.render(bgr, "RGB")).reshape(-1).tolist() == [255, 128, 191, 0, 159, 64]
    one = np.array([-1, 0.5], dtype=np.float32).reshape(1, 1, 2)
    assert np.asarray(pimage.render(one)).reshape(-1).tolist() == [0, 0, 0, 191, 191, 191]
    two = np.array([1, -2, 2, 1], dtype=np.float32).reshape(2, 1, 2)
    assert np.asarray(pimage.render(two)).reshape(-1).tolist() == [255, 255, 255, 85, 85, 85]
    zero = np.zeros((3, 1, 1), np.float32)
    assert np.asarray(pimage.render(zero)).reshape(-1).tolist() == [128] * 3
