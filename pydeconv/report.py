"""The static, offline HTML report of a demo run.

The report is one self-contained ``index.html`` next to its PNGs: relative links only, inline CSS,
no scripts, so the folder can be opened from disk, zipped or served as it is.
"""

from __future__ import annotations

import html
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from urllib.parse import quote

from PIL import Image

from .errors import PydeconvError
from .fileio import write_atomic

# The picture formats the writers choose by file suffix; anything else is refused before any work
# (a .jpg name with PNG bytes inside confuses every viewer that trusts the name).
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def png_bytes(img: Image.Image) -> bytes:
    """An image encoded as PNG."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def image_format(path: str | PathLike[str]) -> str:
    """ "PNG" or "JPEG" by the path's suffix; PydeconvError for any other suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_FORMATS:
        known = ", ".join(IMAGE_FORMATS)
        raise PydeconvError(
            f"{path}: cannot write a picture with suffix {suffix or '(none)'!r} "
            f"(use one of {known})"
        )
    return IMAGE_FORMATS[suffix]


def image_bytes(img: Image.Image, path: str | PathLike[str]) -> bytes:
    """The picture encoded in the format its file name says (PNG or JPEG)."""
    fmt = image_format(path)
    if fmt == "PNG":
        return png_bytes(img)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


# Channels per picture of `pydeconv project`: 48 channels are 16 rows of 6 tiles, a PNG of about
# 1,200 x 3,400 pixels for VGG16. More channels go to further pages (page_paths), so --top 512
# never makes one 1,197 x 36,426 picture.
GRID_CHANNELS_PER_PAGE = 48


def page_paths(out: Path, pages: int) -> list[Path]:
    """Where the pages of a grid go: ``out`` itself for the first, then ``STEM-p2.SUFFIX``..."""
    return [out] + [out.with_name(f"{out.stem}-p{i}{out.suffix}") for i in range(2, pages + 1)]


@dataclass
class Figure:
    """One PNG of the report with its heading and one caption per tile pair."""

    src: str  # path relative to the report's folder
    title: str
    captions: Sequence[str] = field(default_factory=list)


@dataclass
class Section:
    """Everything shown for one input image."""

    title: str
    input_src: str | None = None  # the preprocessed input as the model saw it
    subtitle: str = ""
    figures: Sequence[Figure] = field(default_factory=list)


_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.4em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1em; margin-bottom: 0.3em; }
.notes { max-width: 60em; color: #444; }
.input img { image-rendering: pixelated; border: 1px solid #ccc; }
figure { margin: 0 0 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; background: #fff; }
figcaption ol { margin: 0.3em 0; padding-left: 1.5em; font-size: 0.85em; display: grid;
  grid-template-columns: repeat(auto-fill, minmax(24em, 1fr)); column-gap: 2.5em; }
figcaption li { padding: 0.1em 0; }
"""


def _src(path: str) -> str:
    """A relative link, percent-encoded and HTML-escaped; absolute paths and URLs are refused."""
    if path.startswith(("/", "\\")) or "://" in path or path.startswith(".."):
        raise ValueError(f"report links must stay inside the report folder: {path!r}")
    return html.escape(quote(path.replace(os.sep, "/")), quote=True)


def render_html(
    title: str,
    sections: Sequence[Section],
    notes: Sequence[str] = (),
    links: Sequence[tuple[str, str]] = (),
) -> str:
    """The report as an HTML string; every caption and title is escaped. ``links``: (relative
    path, text) pairs listed under the notes (the other reports of a run)."""
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{e(title)}</h1>",
    ]
    if notes:
        out.append('<div class="notes">')
        out.extend(f"<p>{e(n)}</p>" for n in notes)
        out.append("</div>")
    if links:
        out.append('<ul class="links">')
        out.extend(f'<li><a href="{_src(src)}">{e(text)}</a></li>' for src, text in links)
        out.append("</ul>")
    if len(sections) > 1:
        out.append("<ul>")
        out.extend(f'<li><a href="#s{i}">{e(s.title)}</a></li>' for i, s in enumerate(sections))
        out.append("</ul>")
    for i, sec in enumerate(sections):
        out.append(f'<h2 id="s{i}">{e(sec.title)}</h2>')
        if sec.subtitle:
            out.append(f"<p>{e(sec.subtitle)}</p>")
        if sec.input_src:
            src = _src(sec.input_src)
            out.append(f'<p class="input"><img src="{src}" alt="{e(sec.title)}"></p>')
        for fig in sec.figures:
            out.append("<figure>")
            out.append(f"<h3>{e(fig.title)}</h3>")
            src = _src(fig.src)
            out.append(f'<a href="{src}"><img src="{src}" alt="{e(fig.title)}"></a>')
            if fig.captions:
                out.append("<figcaption><ol>")
                out.extend(f"<li>{e(c)}</li>" for c in fig.captions)
                out.append("</ol></figcaption>")
            out.append("</figure>")
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


def write_report(
    path: str | PathLike[str],
    title: str,
    sections: Sequence[Section],
    notes: Sequence[str] = (),
    replace: bool = True,
    links: Sequence[tuple[str, str]] = (),
) -> None:
    """Write :func:`render_html` to ``path`` atomically (UTF-8); only a regular file is replaced,
    and none with ``replace=False`` (:mod:`pydeconv.fileio`)."""
    text = render_html(title, sections, notes, links)
    write_atomic(path, text.encode("utf-8"), replace=replace)
