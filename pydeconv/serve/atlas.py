"""``pydeconv serve --atlas DIR``: a channel's top-k from a ``pydeconv atlas`` report.

Reads ``atlas.json`` (the schema in docs/SERVE.md; written by ``pydeconv atlas``) and the report's
per-channel tile, ``layer_<layer>/c<NNNN>.png`` (the k projections beside their k patches), where
``<layer>`` is the layer name with every character other than letters, digits, ``-``, ``_``
and ``.`` replaced by ``_``. Only files inside DIR are read (symbolic links out are refused).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydeconv.errors import ChannelError, PydeconvError


class AtlasError(PydeconvError):
    """An atlas folder that cannot be used with this model."""


def _safe_name(layer: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", layer)


class Atlas:
    def __init__(self, folder: str | Path, net: Any):
        self.root = Path(folder).resolve()
        path = self.root / "atlas.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise AtlasError(f"{folder}: no atlas.json (not a `pydeconv atlas` report)") from None
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise AtlasError(f"{path}: cannot read ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != "pydeconv-atlas":
            raise AtlasError(
                f"{path}: not a pydeconv atlas (format {data.get('format')!r})"
                if isinstance(data, dict)
                else f"{path}: not a pydeconv atlas"
            )
        if data.get("version") != 1:
            raise AtlasError(f"{path}: atlas version {data.get('version')!r} (this reads 1)")
        units = data.get("units")
        images = data.get("images")
        if not isinstance(units, dict) or not isinstance(images, list):
            raise AtlasError(f"{path}: units and images are missing")
        for layer, per_channel in units.items():
            row = net.layer_info(layer)  # a layer this model lacks: the atlas is another model's
            if not isinstance(per_channel, list) or len(per_channel) != int(row["shape"][0]):
                raise AtlasError(
                    f"{path}: layer {layer!r} has {len(per_channel)} channels in the atlas and "
                    f"{int(row['shape'][0])} in the model"
                    if isinstance(per_channel, list)
                    else f"{path}: layer {layer!r}: expected a list of channels"
                )
        self.units: dict[str, list] = units
        self.images = [str(p) for p in images]
        self.k = int(data.get("k", 0) or 0)
        self.ranking = data.get("ranking")

    def _channels(self, layer: dict, channel: str | None) -> tuple[str, int, list]:
        from pydeconv.serve.state import parse_int

        name = layer["name"]
        c = parse_int("channel", channel)
        per = self.units.get(name)
        if per is None:
            raise AtlasError(f"the atlas has no layer {name!r} (it has {', '.join(self.units)})")
        if not 0 <= c < len(per):
            raise ChannelError(f"layer '{name}': channel {c} out of range (0..{len(per) - 1})")
        return name, c, per

    def _tile_path(self, name: str, c: int) -> Path | None:
        p = (self.root / f"layer_{_safe_name(name)}" / f"c{c:04d}.png").resolve()
        if self.root not in p.parents or not p.is_file():
            return None
        return p

    def units_of(self, layer: dict, channel: str | None) -> dict:
        name, c, per = self._channels(layer, channel)
        top = [
            {
                "image": int(u["image"]),
                "name": Path(str(u.get("path", ""))).name,  # the file name, not the path
                "y": int(u["y"]),
                "x": int(u["x"]),
                "value": float(u["value"]),
            }
            for u in per[c]
        ]
        tile = self._tile_path(name, c)
        return {
            "layer": name,
            "channel": c,
            "k": self.k,
            "ranking": self.ranking,
            "top": top,
            "tile": tile is not None,
        }

    def tile(self, layer: dict, channel: str | None) -> bytes:
        name, c, _ = self._channels(layer, channel)
        p = self._tile_path(name, c)
        if p is None:
            raise AtlasError(f"the atlas has no tile for layer {name!r} channel {c}")
        return p.read_bytes()
