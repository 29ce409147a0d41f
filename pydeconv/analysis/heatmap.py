"""Pictures of numbers for the occlusion, invariance, correspondence and filter reports: heat maps
over an image, class maps with a legend, line plots.

Heat maps and line plots are drawn by matplotlib when it is installed (a colour bar, axes); without
it a heat map is plain NumPy + Pillow (a colour ramp blended over the image, a ramp bar with the
minimum and maximum written beside it) and a line plot is skipped (the numbers are in the JSON/CSV;
the report says :data:`pydeconv.analysis.extras.PLOTS_NOTE`). Class maps are always Pillow.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pydeconv import image as pimg
from pydeconv.analysis import extras

# viridis at 9 evenly spaced stops (matplotlib's table, rounded to bytes): the Pillow fallback
# interpolates linearly between them.
_VIRIDIS = np.array(
    [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ],
    dtype=np.float64,
)
# tab20's colours: one per class of a class map, in order of first appearance.
PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (174, 199, 232),
    (255, 187, 120),
    (152, 223, 138),
    (255, 152, 150),
    (197, 176, 213),
    (196, 156, 148),
    (247, 182, 210),
    (199, 199, 199),
    (219, 219, 141),
    (158, 218, 229),
]


def ramp(v: np.ndarray) -> np.ndarray:
    """Values in [0, 1] to viridis RGB bytes (..., 3) (NumPy; NaN shows as the lowest colour)."""
    v = np.nan_to_num(np.clip(np.asarray(v, dtype=np.float64), 0.0, 1.0))
    pos = v * (len(_VIRIDIS) - 1)
    lo = np.minimum(np.floor(pos).astype(np.int64), len(_VIRIDIS) - 2)
    t = (pos - lo)[..., None]
    rgb = _VIRIDIS[lo] * (1 - t) + _VIRIDIS[lo + 1] * t
    return np.clip(np.floor(rgb + 0.5), 0, 255).astype(np.uint8)


def _normalised(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    lo, hi = float(np.min(values)), float(np.max(values))
    span = hi - lo
    return (np.zeros_like(values) if span == 0 else (values - lo) / span), lo, hi


def cell_boxes(
    centres_y: Sequence[float], centres_x: Sequence[float], height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel edges of the cells of a map whose entries sit at the given centres: each cell runs
    halfway to its neighbours' centres and to the image border at the ends.
    Returns (row edges, column edges)."""

    def edges(centres: Sequence[float], n: int) -> np.ndarray:
        c = np.asarray(centres, dtype=np.float64)
        mid = (c[1:] + c[:-1]) / 2 if len(c) > 1 else np.array([])
        return np.concatenate([[0.0], mid, [float(n)]])

    return edges(centres_y, height), edges(centres_x, width)


def _cells_to_pixels(values: np.ndarray, ey: np.ndarray, ex: np.ndarray, h: int, w: int):
    """An (ny, nx) map spread over (h, w) pixels by the cell edges."""
    iy = np.clip(np.searchsorted(ey[1:-1], np.arange(h) + 0.5, side="right"), 0, len(ey) - 2)
    ix = np.clip(np.searchsorted(ex[1:-1], np.arange(w) + 0.5, side="right"), 0, len(ex) - 2)
    return values[iy][:, ix]


def heat_overlay(
    image: Image.Image,
    values: np.ndarray,
    centres_y: Sequence[float],
    centres_x: Sequence[float],
    title: str,
    label: str,
    min_side: int = 240,
) -> Image.Image:
    """A map over the image: each entry coloured over the pixels nearest its centre, half blended
    with the image, with a colour bar (matplotlib) or a ramp bar and the range (Pillow)."""
    values = np.asarray(values, dtype=np.float64)
    img = image.convert("RGB")
    w, h = img.size
    ey, ex = cell_boxes(centres_y, centres_x, h, w)
    plt = extras.pyplot()
    if plt is not None:
        fig, ax = plt.subplots(figsize=(5.2, 4.2), dpi=100)
        try:
            ax.imshow(np.asarray(img), extent=(0, w, h, 0))
            im = ax.pcolormesh(ex, ey, values, cmap="viridis", alpha=0.55, shading="flat")
            ax.set_xlim(0, w)
            ax.set_ylim(h, 0)
            ax.set_title(title, fontsize=9)
            fig.colorbar(im, ax=ax, label=label)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", bbox_inches="tight")
        finally:
            plt.close(fig)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    unit, lo, hi = _normalised(values)
    colours = ramp(_cells_to_pixels(unit, ey, ex, h, w))
    blended = (np.asarray(img, dtype=np.float64) * 0.45 + colours * 0.55).astype(np.uint8)
    pic = pimg.enlarge(Image.fromarray(blended, "RGB"), min_side)
    return _with_bar(pic, lo, hi, title, label)


def _with_bar(pic: Image.Image, lo: float, hi: float, title: str, label: str) -> Image.Image:
    font = ImageFont.load_default()
    bar_h = pic.height
    bar = ramp(np.linspace(1, 0, bar_h))[:, None, :].repeat(16, axis=1)
    text = [f"{hi:.4g}", f"{lo:.4g}"]
    canvas = Image.new("RGB", (pic.width + 110, pic.height + 36), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), f"{title} ({label})", fill=(0, 0, 0), font=font)
    canvas.paste(pic, (0, 30))
    canvas.paste(Image.fromarray(bar, "RGB"), (pic.width + 6, 30))
    draw.text((pic.width + 26, 30), text[0], fill=(0, 0, 0), font=font)
    draw.text((pic.width + 26, 30 + bar_h - 12), text[1], fill=(0, 0, 0), font=font)
    return canvas


def class_map(
    image: Image.Image,
    classes: np.ndarray,
    centres_y: Sequence[float],
    centres_x: Sequence[float],
    names: Sequence[str],
    title: str,
    min_side: int = 240,
) -> Image.Image:
    """Each entry's class as a colour over the image (blended), with a legend naming every class
    that occurs (colours by first appearance; a class past the palette's 20 colours is grey)."""
    classes = np.asarray(classes, dtype=np.int64)
    img = image.convert("RGB")
    w, h = img.size
    ey, ex = cell_boxes(centres_y, centres_x, h, w)
    seen = list(dict.fromkeys(int(c) for c in classes.reshape(-1)))
    colour = {c: PALETTE[i] if i < len(PALETTE) else (90, 90, 90) for i, c in enumerate(seen)}
    table = np.array([colour[int(c)] for c in classes.reshape(-1)], dtype=np.float64)
    rgb = table.reshape(classes.shape + (3,))
    pix = _cells_to_pixels(rgb, ey, ex, h, w)
    blended = (np.asarray(img, dtype=np.float64) * 0.4 + pix * 0.6).astype(np.uint8)
    pic = pimg.enlarge(Image.fromarray(blended, "RGB"), min_side)
    font = ImageFont.load_default()
    line = 14
    legend_w = max(ImageDraw.Draw(pic).textlength(names[c], font=font) for c in seen) + 30
    canvas = Image.new(
        "RGB",
        (pic.width + int(legend_w) + 10, max(pic.height, line * len(seen)) + 30),
        (255, 255, 255),
    )
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), title, fill=(0, 0, 0), font=font)
    canvas.paste(pic, (0, 30))
    for i, c in enumerate(seen):
        y = 30 + i * line
        draw.rectangle((pic.width + 8, y + 2, pic.width + 18, y + 11), fill=colour[c])
        draw.text((pic.width + 24, y), names[c], fill=(0, 0, 0), font=font)
    return canvas


def line_plot(
    xs: Sequence[float],
    series: Mapping[str, Sequence[float]],
    title: str,
    xlabel: str,
    ylabel: str,
) -> Image.Image | None:
    """One line per series against ``xs`` (matplotlib); None without matplotlib."""
    plt = extras.pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(5.0, 3.6), dpi=100)
    try:
        for name, ys in series.items():
            ax.plot(list(xs), list(ys), marker="o", markersize=3, label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=8)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def bar_plot(
    names: Sequence[str], series: Mapping[str, Sequence[float]], title: str, ylabel: str
) -> Image.Image | None:
    """Grouped bars, one group per name (matplotlib); None without matplotlib."""
    plt = extras.pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(names) + 2), 3.6), dpi=100)
    try:
        n = max(1, len(series))
        width = 0.8 / n
        pos = np.arange(len(names))
        for i, (label, ys) in enumerate(series.items()):
            ax.bar(pos + i * width - 0.4 + width / 2, list(ys), width, label=label)
        ax.set_xticks(pos, list(names), rotation=45, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        if len(series) > 1:
            ax.legend(fontsize=8)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
