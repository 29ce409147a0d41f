"""Images in and out: preprocessing, rendering projections, receptive-field crops, grids.

Pillow and NumPy only. Every visual helper returns a ``PIL.Image`` in RGB mode. The helpers only
read ``net.preprocess`` (as ``Net.preprocess`` gives it: every default filled in by the C++ model
reader, ``mean`` and ``std`` one value per channel), ``net.input_shape`` and ``net.info()``, so any
object offering those works.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from os import PathLike
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from pydeconv.errors import ChannelError, ImageError, LayerNotFoundError, PydeconvError, ShapeError
from pydeconv.limits import get_limits, limit_str

_ORDERS = ("RGB", "BGR", "L")

# Captions under grid tiles and on boxes: Pillow's bundled FreeType font at this pixel size
# (its bitmap fallback, about 11 px, ran neighbouring words together).
CAPTION_SIZE = 13


def caption_font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The font of every caption pydeconv draws."""
    return ImageFont.load_default(size=CAPTION_SIZE)


# --- preprocessing -------------------------------------------------------------------------------


def load(path: str | PathLike[str], net: Any) -> np.ndarray:
    """Read an image file and preprocess it for ``net``: a (1, C, H, W) float32 array."""
    return from_pil(open_image(path), net)


def open_image(path: str | PathLike[str]) -> Image.Image:
    """Open and fully decode an image file; ImageError (naming the file) if that fails.

    The size the file declares is checked against ``Limits.max_image_pixels`` from the header
    alone (``Image.open`` is lazy), before any pixel is decoded. Pillow's own decompression-bomb
    guard (``Image.MAX_IMAGE_PIXELS``) runs first, inside ``Image.open``: its error becomes
    ImageError too (its warning, between one and two times that size, is left to the caller)."""
    try:
        with Image.open(path) as img:
            _check_pixels(path, img.size)
            img.load()  # decode now, so a truncated file fails here and not later
            return img.copy()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such image file") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"{path}: {exc}; pydeconv's limit is {limit_str('max_image_pixels')}"
        ) from None
    except MemoryError:
        # The pixel count passed the limit, but a chunk of the file (a PNG's compressed data)
        # declared more bytes than can be allocated: the file is broken or hostile.
        raise ImageError(
            f"{path}: cannot decode image (it declares more memory than is available)"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{path}: cannot decode image ({exc})") from None


def _check_pixels(path: str | PathLike[str], size: tuple[int, int]) -> None:
    width, height = size
    if width * height > get_limits().max_image_pixels:
        raise ImageError(
            f"{path}: the image declares {width}x{height} pixels, "
            f"past {limit_str('max_image_pixels')}"
        )


def from_pil(img: Image.Image, net: Any) -> np.ndarray:
    """Preprocess a PIL image for ``net`` (FORMAT.md): resize, order channels, normalise."""
    pre = net.preprocess
    order = pre["channel_order"]
    pixels = _resized_pixels(img, pre, order)  # (H, W, C) uint8
    c = pixels.shape[2]
    if tuple(net.input_shape)[0] != c:
        raise ShapeError(
            f"preprocess channel_order {order} gives {c} channel(s) but the model's input has "
            f"{net.input_shape[0]}"
        )
    mean, std = _mean_std(pre, c)
    x = (pixels.transpose(2, 0, 1).astype(np.float64) * float(pre["scale"]) - mean) / std
    return np.ascontiguousarray(x[np.newaxis], dtype=np.float32)


def to_pil(x: np.ndarray, net: Any) -> Image.Image:
    """Undo the preprocessing of one input, (C, H, W) or (1, C, H, W), back to an RGB image."""
    pre = net.preprocess
    order = pre["channel_order"]
    x = _one_image(x, "input")
    c = x.shape[0]
    mean, std = _mean_std(pre, c)
    pixels = (x.astype(np.float64) * std + mean) / float(pre["scale"])
    pixels = np.clip(np.floor(pixels + 0.5), 0, 255).astype(np.uint8)
    if order == "BGR":
        pixels = pixels[::-1]
    if c == 1:
        return Image.fromarray(pixels[0], "L").convert("RGB")
    if c != 3:
        raise ShapeError(f"cannot show an input with {c} channels as an image")
    return Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)), "RGB")


def _resized_pixels(img: Image.Image, pre: dict, order: str) -> np.ndarray:
    h, w = (int(v) for v in pre["size"])
    img = img.convert("L" if order == "L" else "RGB")
    if img.size != (w, h):
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    pixels = np.asarray(img, dtype=np.uint8)
    if order == "L":
        return pixels[:, :, np.newaxis]
    return pixels[:, :, ::-1] if order == "BGR" else pixels


def _mean_std(pre: dict, c: int) -> tuple[np.ndarray, np.ndarray]:
    """mean and std as (C, 1, 1) float64 (the model reader gave one value per input channel)."""
    out = []
    for key in ("mean", "std"):
        v = np.asarray(pre[key], dtype=np.float64).reshape(-1)
        if v.size != c:
            raise ShapeError(f"preprocess {key} has {v.size} values for {c} channels")
        out.append(v.reshape(c, 1, 1))
    return out[0], out[1]


def _one_image(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3:
        raise ShapeError(f"expected one {what} of shape (C, H, W) or (1, C, H, W), got {x.shape}")
    return x


# --- rendering -----------------------------------------------------------------------------------


def render(projection: np.ndarray, channel_order: str = "RGB") -> Image.Image:
    """One projection, (C, H, W) or (1, C, H, W), as an RGB image centred on grey.

    The rule, shared byte for byte with the C++ renderer: ``m = max |p|`` over the whole image,
    ``v = 0.5 + p / (2m)`` (0.5 everywhere when m == 0),
    ``byte = clip(floor(v*255 + 0.5), 0, 255)``, all in float64. 3 channels are colour (BGR
    reversed to RGB), 1 channel is grey, any other count is summed over channels first and shown
    grey.
    """
    order = channel_order.upper()
    if order not in _ORDERS:
        raise PydeconvError(f"unknown channel_order {channel_order!r} (expected RGB, BGR or L)")
    p = _one_image(projection, "projection").astype(np.float64)
    if not np.all(np.isfinite(p)):
        raise ShapeError("projection contains NaN or infinite values")
    if p.shape[0] == 3:
        if order == "BGR":
            p = p[::-1]
    elif p.shape[0] != 1:
        p = p.sum(axis=0, keepdims=True)
    m = float(np.max(np.abs(p))) if p.size else 0.0
    v = np.full(p.shape, 0.5) if m == 0.0 else 0.5 + p / (2.0 * m)
    pixels = np.clip(np.floor(v * 255.0 + 0.5), 0, 255).astype(np.uint8)
    if pixels.shape[0] == 1:
        return Image.fromarray(pixels[0], "L").convert("RGB")
    return Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)), "RGB")


def enlarge(img: Image.Image, min_side: int = 96) -> Image.Image:
    """Scale up by a whole factor (nearest neighbour) until the shorter side reaches ``min_side``.

    Early layers have receptive fields of a few pixels; shown at 1:1 they are unreadable, and
    nearest-neighbour keeps the pixels honest instead of smoothing them.
    """
    factor = max(1, math.ceil(min_side / max(1, min(img.size))))
    if factor == 1:
        return img
    return img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)


# --- receptive fields ----------------------------------------------------------------------------


def receptive_field(net: Any, layer: str, y: int, x: int) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) in input pixels, half-open, clipped to the input.

    From ``net.info()``: rows ``rf_start + y*rf_stride`` to ``... + rf_size - 1``, columns likewise.
    """
    row = _layer_info(net, layer)
    shape = tuple(row["shape"])
    oh, ow = (shape[1], shape[2]) if len(shape) == 3 else (1, 1)
    if not (0 <= y < oh and 0 <= x < ow):
        raise ChannelError(f"position ({y}, {x}) is outside layer {layer!r} of size {oh}x{ow}")
    _, h, w = (int(v) for v in net.input_shape)
    # -- head: a field that is the whole image with the image's size as its stride (net.info's
    # mark of a layer whose every unit reads everything: linear, reshape, a concat along W) is
    # the whole image at every position (a (4 + nc, 1, 8400) detection output).
    if tuple(int(v) for v in row["rf_stride"]) == (h, w) == tuple(
        int(v) for v in row["rf_size"]
    ) and tuple(int(v) for v in row["rf_start"]) == (0, 0):
        return 0, 0, h, w
    top = int(row["rf_start"][0]) + y * int(row["rf_stride"][0])
    left = int(row["rf_start"][1]) + x * int(row["rf_stride"][1])
    bottom = top + int(row["rf_size"][0])
    right = left + int(row["rf_size"][1])
    return max(0, top), max(0, left), min(h, bottom), min(w, right)


def crop_patch(
    image: Image.Image | np.ndarray, net: Any, layer: str, y: int, x: int
) -> Image.Image:
    """The receptive-field patch of activation (y, x) of ``layer``.

    ``image`` is either a PIL image (resized to the model's input size first, as preprocessing
    does) or a preprocessed input array (C, H, W) / (1, C, H, W).
    """
    if isinstance(image, Image.Image):
        h, w = (int(v) for v in net.preprocess["size"])
        img = image.convert("RGB")
        if img.size != (w, h):
            img = img.resize((w, h), Image.Resampling.BILINEAR)
    else:
        img = to_pil(image, net)
    top, left, bottom, right = receptive_field(net, layer, y, x)
    return img.crop((left, top, right, bottom))


def mask_to_receptive_field(
    projection: np.ndarray, net: Any, layer: str, y: int, x: int
) -> np.ndarray:
    """A projection (..., H, W) cropped to the receptive field of activation (y, x) of ``layer``."""
    projection = np.asarray(projection)
    if projection.ndim < 2:
        raise ShapeError(f"a projection needs spatial axes, got shape {projection.shape}")
    top, left, bottom, right = receptive_field(net, layer, y, x)
    return projection[..., top:bottom, left:right]


def _layer_info(net: Any, layer: str) -> dict:
    for row in net.info():
        if row["name"] == layer:
            return row
    lookup = getattr(net, "layer_info", None)  # a Net: aliases, and the closest names if unknown
    if lookup is not None:
        return lookup(layer)
    raise LayerNotFoundError(f"the model has no layer named {layer!r}")


# --- grids ---------------------------------------------------------------------------------------


def grid(
    images: Sequence[Image.Image],
    cols: int | None = None,
    pad: int = 2,
    background: tuple[int, int, int] = (255, 255, 255),
    captions: Sequence[str] | None = None,
) -> Image.Image:
    """Tile images row by row into one RGB image, each in a cell as large as the largest tile.

    Tiles are centred in their cells; ``captions`` (one per image, may be multi-line) are drawn
    under each tile with Pillow's default font.
    """
    images = list(images)
    if not images:
        raise PydeconvError("grid needs at least one image")
    if captions is not None and len(captions) != len(images):
        raise PydeconvError(f"grid got {len(captions)} captions for {len(images)} images")
    if pad < 0:
        raise PydeconvError("grid pad must be >= 0")
    cols = cols or math.ceil(math.sqrt(len(images)))
    if cols < 1:
        raise PydeconvError("grid cols must be >= 1")
    cols = min(cols, len(images))
    rows = math.ceil(len(images) / cols)

    font = caption_font()
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    boxes = [scratch.multiline_textbbox((0, 0), c, font=font) for c in captions or []]
    text_w = max((math.ceil(b[2]) for b in boxes), default=0)
    text_h = max((math.ceil(b[3]) for b in boxes), default=0)
    cell_w = max(max(im.width for im in images), text_w)
    cell_h = max(im.height for im in images) + (text_h + pad if captions is not None else 0)

    canvas = Image.new(
        "RGB",
        (cols * cell_w + (cols + 1) * pad, rows * cell_h + (rows + 1) * pad),
        tuple(background),
    )
    draw = ImageDraw.Draw(canvas)
    # Dark text on a light background, light text on a dark one.
    ink = (0, 0, 0) if sum(background) >= 384 else (255, 255, 255)
    tile_h = max(im.height for im in images)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        x0 = pad + c * (cell_w + pad)
        y0 = pad + r * (cell_h + pad)
        at = (x0 + (cell_w - im.width) // 2, y0 + (tile_h - im.height) // 2)
        canvas.paste(im.convert("RGB"), at)
        if captions is not None:
            text_x = x0 + (cell_w - math.ceil(boxes[i][2])) // 2
            draw.multiline_text(
                (text_x, y0 + tile_h + pad), captions[i], fill=ink, font=font, align="center"
            )
    return canvas
