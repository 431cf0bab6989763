"""Open a panoptic data set by its root folder, in any of the layouts it is distributed in.

=============  ====================================================================================
layout         files under ROOT
=============  ====================================================================================
``folder``     ``annotations.json``, ``panoptic/``, ``images/`` (panoptic-world's own COCO-panoptic folder)
``coco``       ``annotations/panoptic_{split}.json``, ``annotations/panoptic_{split}/``, ``{split}/`` (COCO 2017:
               split ``train2017`` / ``val2017``)
``cityscapes`` ``gtFine/cityscapes_panoptic_{split}.json``, ``gtFine/cityscapes_panoptic_{split}/``,
               ``leftImg8bit/{split}/{city}/`` (after cityscapesscripts' ``csCreatePanopticImgs``)
=============  ====================================================================================

The layout is detected from what is there; ``fmt`` overrides (``coco`` covers both COCO layouts). Every problem
is a :class:`DataError` whose message is one line naming the file and what is wrong with it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

FORMATS = ("auto", "coco", "cityscapes")


class DataError(ValueError):
    """A data set that cannot be read; the message names the file and the problem in one line."""


def _splits(paths, prefix: str, suffix: str = ".json") -> list[str]:
    return sorted(p.name[len(prefix): len(p.name) - len(suffix)] for p in paths
                  if p.name.startswith(prefix) and p.name.endswith(suffix))


def detect_layout(root: Path) -> str:
    """``folder``, ``coco`` or ``cityscapes``; DataError when ROOT is none of them."""
    if not root.exists():
        raise DataError(f"{root} does not exist")
    if not root.is_dir():
        raise DataError(f"{root} is a file, not a data-set folder")
    if (root / "annotations.json").is_file():
        return "folder"
    if (root / "annotations").is_dir():
        return "coco"
    if (root / "gtFine").is_dir():
        return "cityscapes"
    raise DataError(f"{root} is not a panoptic data set: it has no annotations.json (panoptic-world folder), "
                    "no annotations/panoptic_<split>.json (COCO) and no gtFine/ (Cityscapes)")


def coco_splits(root: Path) -> list[str]:
    folder = root / "annotations"
    return _splits(folder.glob("panoptic_*.json"), "panoptic_") if folder.is_dir() else []


def cityscapes_splits(root: Path) -> list[str]:
    folder = root / "gtFine"
    return _splits(folder.glob("cityscapes_panoptic_*.json"), "cityscapes_panoptic_") if folder.is_dir() else []


def _need(path: Path, what: str, kind: str = "dir") -> None:
    ok = path.is_dir() if kind == "dir" else path.is_file()
    if not ok:
        raise DataError(f"{path}: {what} {'folder' if kind == 'dir' else 'file'} does not exist")


def _missing_split(json_path: Path, split: str | None, splits: list[str], how: str) -> DataError:
    there = ", ".join(splits) if splits else "none"
    asked = f"split {split!r}" if split else "no split given"
    return DataError(f"{json_path}: {asked}; splits in this {how}: {there} (choose one with --split)")


def pick_split(split: str | None, splits: list[str], default: str | None) -> str | None:
    """``split``, else the one split starting with ``default`` (``train`` -> ``train2017``), else the only one."""
    if split is not None:
        return split
    matching = [s for s in splits if default and s.startswith(default)]
    if len(matching) == 1:
        return matching[0]
    return splits[0] if len(splits) == 1 else (default if default in splits else None)


def open_dataset(root: str | Path, split: str | None = None, fmt: str = "auto", default_split: str | None = "val"):
    """A reader (``len``, ``[i]`` -> Sample, ``.taxonomy``, ``.hash()``) of ``root``'s ``split``.

    ``split`` is ignored for the panoptic-world folder. Without it, COCO and Cityscapes roots use the split
    starting with ``default_split`` (``val`` -> ``val2017``) or their only split.
    """
    root = Path(root)
    if fmt not in FORMATS:
        raise DataError(f"unknown data format {fmt!r}; choose one of {', '.join(FORMATS)}")
    layout = detect_layout(root)
    if fmt == "cityscapes" and layout != "cityscapes":
        raise DataError(f"{root / 'gtFine'}: no such folder, so {root} is not a Cityscapes root")
    if fmt == "coco" and layout == "cityscapes":
        raise DataError(f"{root} has no annotations.json or annotations/ folder, so it is not a COCO-panoptic set")
    try:
        if layout == "folder":
            from .coco import CocoPanopticReader

            _need(root / "panoptic", "panoptic PNG")
            _need(root / "images", "image")
            reader = CocoPanopticReader(root / "annotations.json", root / "panoptic", root / "images")
        elif layout == "coco":
            from .coco import CocoPanopticReader

            splits = coco_splits(root)
            split = pick_split(split, splits, default_split)
            json_path = root / "annotations" / f"panoptic_{split}.json"
            if split is None or not json_path.is_file():
                raise _missing_split(json_path, split, splits, "COCO root")
            _need(json_path.with_suffix(""), "panoptic PNG")
            _need(root / split, "image")
            reader = CocoPanopticReader(json_path, json_path.with_suffix(""), root / split)
        else:
            from .cityscapes import CityscapesPanopticReader

            split = pick_split(split, cityscapes_splits(root), default_split)
            json_path = root / "gtFine" / f"cityscapes_panoptic_{split}.json"
            if split is None or not json_path.is_file():
                raise _missing_split(json_path, split, cityscapes_splits(root), "Cityscapes root (run "
                                     "cityscapesscripts' csCreatePanopticImgs for the panoptic files)")
            _need(json_path.with_suffix(""), "panoptic PNG")
            _need(root / "leftImg8bit" / split, "image")
            reader = CityscapesPanopticReader(root, split)
    except DataError:
        raise
    except json.JSONDecodeError as exc:
        raise DataError(f"{_json_of(root, layout, split)}: not valid JSON ({exc})") from exc
    except (KeyError, TypeError) as exc:
        raise DataError(f"{_json_of(root, layout, split)}: not a COCO-panoptic file (missing or malformed "
                        f"field {exc})") from exc
    except (ValueError, FileNotFoundError) as exc:
        raise DataError(" ".join(str(exc).split())) from exc
    check_files(reader)
    return reader


class ConcatReader:
    """Several readers of the same categories as one (training on data rendered under several conditions or
    image shapes): ``len``, ``[i]``, ``.taxonomy``, ``.hash()``."""

    def __init__(self, readers: list):
        if not readers:
            raise DataError("no data sets given")
        for r in readers[1:]:
            if r.taxonomy != readers[0].taxonomy:
                raise DataError("the training data sets have different categories; they cannot be mixed")
        self.readers = list(readers)
        self.taxonomy = readers[0].taxonomy
        self._ends = np.cumsum([len(r) for r in readers])

    def __len__(self) -> int:
        return int(self._ends[-1])

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(index)
        k = int(np.searchsorted(self._ends, index, side="right"))
        return self.readers[k][index - (int(self._ends[k - 1]) if k else 0)]

    def hash(self, images: bool = False) -> str:
        h = hashlib.sha256()
        for r in self.readers:
            h.update(r.hash(images).encode() if hasattr(r, "hash") else b"")
        return h.hexdigest()


def _json_of(root: Path, layout: str, split: str | None) -> Path:
    return {"folder": root / "annotations.json", "coco": root / "annotations" / f"panoptic_{split}.json",
            "cityscapes": root / "gtFine" / f"cityscapes_panoptic_{split}.json"}[layout]


def check_files(reader) -> None:
    """Every annotation's panoptic PNG and image exist (a stat each), so training does not stop at step N."""
    if len(reader) == 0:
        raise DataError(f"{reader.json_path}: no annotations")
    missing = []
    for index, ann in enumerate(reader.annotations):
        if not isinstance(ann, dict) or "file_name" not in ann or "segments_info" not in ann:
            raise DataError(f"{reader.json_path}: annotation {index} has no file_name or segments_info")
        image = reader.images[ann["image_id"]]
        if "file_name" not in image:
            raise DataError(f"{reader.json_path}: image {image.get('id')!r} has no file_name")
        for path in (reader.png_dir / ann["file_name"], reader.image_path(image)):
            if not path.is_file():
                missing.append(path)
    if missing:
        raise DataError(f"{missing[0]}: listed in {reader.json_path.name} but missing"
                        + (f" ({len(missing) - 1} more files missing)" if len(missing) > 1 else ""))
