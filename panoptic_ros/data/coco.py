"""COCO-panoptic data sets: writer and reader (also for real COCO-panoptic data with other taxonomies).

Layout written by :func:`write_coco_panoptic`::

    OUT/images/<name>.png        RGB images
    OUT/panoptic/<name>.png      segment ids as RGB, id = R + 256 G + 256^2 B (panopticapi's id2rgb)
    OUT/annotations.json         images, annotations (image_id, file_name, segments_info), categories

The panoptic PNGs hold our ids (``category_id * 1000 + k``, see :mod:`panoptic_ros.panoptic`), which are
valid COCO segment ids. Readers convert any data set's segment ids to that convention
(:func:`convention_ids`), so real COCO data (arbitrary ids) reads the same way.

The PNG <-> id codec and the JSON layout are a few lines of numpy; panopticapi is only a test dependency.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np
from tqdm import tqdm

from ..panoptic import OFFSET, VOID_ID, Segment, segments_from_ids
from ..taxonomy import Taxonomy
from .frame import Sample

MAX_SEGMENT_ID = 256 ** 3 - 1
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


# -- PNG codec -------------------------------------------------------------------------------------------------
def ids_to_rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W) segment ids -> (H, W, 3) uint8 with id = R + 256 G + 256^2 B."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() > MAX_SEGMENT_ID):
        raise ValueError(f"segment ids must be in 0..{MAX_SEGMENT_ID} to fit an RGB PNG")
    ids = ids.astype(np.uint32)
    return np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], axis=-1).astype(np.uint8)


def rgb_to_ids(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def write_rgb_png(path: Path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f"could not write {path}")


def read_rgb_png(path: Path) -> np.ndarray:
    """An 8-bit colour image file as (H, W, 3) uint8 RGB (grey and alpha images are converted)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return np.ascontiguousarray(bgr[..., ::-1])


def read_panoptic_png(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if bgr is None:
        raise FileNotFoundError(f"cannot read panoptic PNG {path}")
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ValueError(f"{path} is not an 8-bit RGB panoptic PNG (shape {bgr.shape}, {bgr.dtype})")
    return rgb_to_ids(bgr[..., ::-1])


# -- id conventions --------------------------------------------------------------------------------------------
def convention_ids(segments_info: list[dict], taxonomy: Taxonomy) -> dict[int, int]:
    """Map each data-set segment id to our id (``category_id * 1000 + k``).

    Ids already in the convention are kept; the others get ``category_id * 1000`` (stuff) or the smallest
    free ``k >= 1`` of their category (things, e.g. crowd regions). ValueError on unknown categories, a
    second segment of one stuff category, or more than 999 instances of a category.
    """
    mapping: dict[int, int] = {}
    taken: set[int] = set()
    todo = []
    for seg in segments_info:
        sid, cat_id = int(seg["id"]), int(seg["category_id"])
        cat = taxonomy.by_id.get(cat_id)
        if cat is None:
            raise ValueError(f"segment {sid} has category_id {cat_id}, which is not in the categories")
        if sid in mapping:
            raise ValueError(f"segment id {sid} is listed twice in one image")
        k = sid - cat_id * OFFSET
        if (k == 0 and not cat.is_thing) or (cat.is_thing and 0 < k < OFFSET):
            if sid not in taken:
                mapping[sid] = sid
                taken.add(sid)
                continue
        todo.append((sid, cat))
        mapping[sid] = -1
    for sid, cat in todo:
        if not cat.is_thing:
            new = cat.id * OFFSET
            if new in taken:
                raise ValueError(f"two segments of stuff category {cat.id} ({cat.name}) in one image")
        else:
            free = (cat.id * OFFSET + k for k in range(1, OFFSET) if cat.id * OFFSET + k not in taken)
            new = next(free, None)
            if new is None:
                raise ValueError(f"more than {OFFSET - 1} instances of category {cat.id} ({cat.name}) in one image")
        mapping[sid] = new
        taken.add(new)
    return mapping


def remap_ids(ids: np.ndarray, mapping: dict[int, int], where: str = "") -> np.ndarray:
    """Apply ``mapping`` to an id image (0 stays void); ValueError for ids the mapping does not list."""
    uniq, inverse = np.unique(ids, return_inverse=True)
    table = np.empty(len(uniq), dtype=np.int32)
    for i, sid in enumerate(uniq.tolist()):
        if sid == VOID_ID:
            table[i] = VOID_ID
        elif sid in mapping:
            table[i] = mapping[sid]
        else:
            raise ValueError(f"{where}: segment id {sid} is in the PNG but not in segments_info")
    missing = set(mapping) - set(uniq.tolist())
    if missing:
        raise ValueError(f"{where}: segments {sorted(missing)} are in segments_info but have no pixels")
    return table[inverse].reshape(ids.shape)


def checked_segments(sample: Sample, taxonomy: Taxonomy, where: str) -> list[Segment]:
    """The sample's segment table, checked against its pixels (ids, categories, areas)."""
    ids = sample.panoptic
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{where}: panoptic must be a 2-D integer id map, got {ids.dtype} {ids.shape}")
    if sample.image.shape != ids.shape + (3,) or sample.image.dtype != np.uint8:
        raise ValueError(f"{where}: image {sample.image.dtype} {sample.image.shape} does not match "
                         f"panoptic {ids.shape} (need uint8 (H, W, 3))")
    by_id = {int(s.id): s for s in sample.segments}
    if len(by_id) != len(sample.segments):
        raise ValueError(f"{where}: duplicate segment ids in the segment table")
    from_pixels = segments_from_ids(ids, taxonomy, crowd_ids=[s.id for s in sample.segments if s.iscrowd])
    pixel_ids = {s.id for s in from_pixels}
    if pixel_ids != set(by_id):
        raise ValueError(f"{where}: ids in pixels but not in segments: {sorted(pixel_ids - set(by_id))}; "
                         f"in segments but not in pixels: {sorted(set(by_id) - pixel_ids)}")
    for seg in from_pixels:
        given = by_id[seg.id]
        if given.category_id != seg.category_id or given.area != seg.area:
            raise ValueError(f"{where}: segment {seg.id} says category {given.category_id} area {given.area}, "
                             f"its pixels say category {seg.category_id} area {seg.area}")
    return from_pixels


def sample_names(samples: Iterable[Sample]) -> Iterator[tuple[str, Sample]]:
    """(file stem, sample): the sample's name, or its index when unnamed; names must be unique file stems."""
    seen = set()
    for i, sample in enumerate(samples):
        name = sample.name or f"{i:06d}"
        if not _NAME_RE.match(name):
            raise ValueError(f"sample name {name!r} is not a plain file name (letters, digits, _ . -)")
        if name in seen:
            raise ValueError(f"two samples are named {name!r}")
        seen.add(name)
        yield name, sample


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


# -- writer ----------------------------------------------------------------------------------------------------
def write_coco_panoptic(out_dir: str | Path, samples: Iterable[Sample], taxonomy: Taxonomy,
                        progress: bool = True, total: int | None = None) -> Path:
    """Write ``samples`` as a COCO-panoptic data set under ``out_dir``; returns the annotations.json path."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "panoptic").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id, (name, sample) in enumerate(tqdm(sample_names(samples), desc="coco-panoptic", unit="img",
                                                   total=total, disable=not progress)):
        segments = checked_segments(sample, taxonomy, f"sample {name!r}")
        h, w = sample.panoptic.shape
        write_rgb_png(out / "images" / f"{name}.png", sample.image)
        write_rgb_png(out / "panoptic" / f"{name}.png", ids_to_rgb(sample.panoptic))
        images.append({"id": image_id, "width": w, "height": h, "file_name": f"{name}.png"})
        annotations.append({"image_id": image_id, "file_name": f"{name}.png",
                            "segments_info": [s.to_coco() for s in segments]})
    json_path = out / "annotations.json"
    write_json_atomic(json_path, {"info": {"description": "panoptic_ros COCO-panoptic export",
                                           "taxonomy": taxonomy.name},
                                  "images": images, "annotations": annotations,
                                  "categories": taxonomy.to_coco_categories()})
    return json_path


# -- reader ----------------------------------------------------------------------------------------------------
class PanopticJsonReader:
    """A COCO-panoptic annotation file with its PNG folder and image folder, read as :class:`Sample` s."""

    def __init__(self, json_path: str | Path, png_dir: str | Path, taxonomy_name: str | None = None):
        self.json_path = Path(json_path)
        data = json.loads(self.json_path.read_text())
        for key in ("images", "annotations", "categories"):
            if not isinstance(data, dict) or not isinstance(data.get(key), list):
                raise ValueError(f"{self.json_path} is not a COCO-panoptic file: no {key!r} list")
        self.png_dir = Path(png_dir)
        if not self.png_dir.is_dir():
            raise FileNotFoundError(f"panoptic PNG folder {self.png_dir} does not exist")
        name = taxonomy_name or data.get("info", {}).get("taxonomy") or self.json_path.stem
        try:
            self.taxonomy = Taxonomy.from_coco_categories(data["categories"], name)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{self.json_path}: unusable categories ({type(exc).__name__}: {exc})") from exc
        self.categories = data["categories"]
        self.images = {img["id"]: img for img in data["images"]}
        self.annotations = data["annotations"]
        for ann in self.annotations:
            if not isinstance(ann, dict) or "image_id" not in ann:
                raise ValueError(f"{self.json_path}: an annotation has no image_id")
            if ann["image_id"] not in self.images:
                raise ValueError(f"{self.json_path}: annotation {ann.get('file_name')} has unknown image_id "
                                 f"{ann['image_id']!r}")
        self._hash: dict[bool, str] = {}

    def __len__(self) -> int:
        return len(self.annotations)

    def image_path(self, image: dict) -> Path:
        raise NotImplementedError

    def sample_name(self, annotation: dict) -> str:
        return Path(annotation["file_name"]).stem

    def __getitem__(self, i: int) -> Sample:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        ann = self.annotations[i]
        image_info = self.images[ann["image_id"]]
        png = self.png_dir / ann["file_name"]
        raw = read_panoptic_png(png)
        image = read_rgb_png(self.image_path(image_info))
        if image.shape[:2] != raw.shape:
            raise ValueError(f"{png}: panoptic {raw.shape} and image {image.shape[:2]} differ in size")
        try:
            mapping = convention_ids(ann["segments_info"], self.taxonomy)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{self.json_path}: segments_info of {ann['file_name']}: {exc}") from exc
        ids = remap_ids(raw, mapping, str(png))
        crowd = [mapping[int(s["id"])] for s in ann["segments_info"] if s.get("iscrowd", 0)]
        segments = segments_from_ids(ids, self.taxonomy, crowd_ids=crowd)
        return Sample(image, ids, segments, self.sample_name(ann))

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def hash(self, images: bool = False) -> str:
        """A stable SHA-256 of the data set's content (not its location): the annotations, every panoptic
        PNG's bytes and, with ``images=True``, every image's bytes (else the image files' names and sizes)."""
        if images not in self._hash:
            h = hashlib.sha256()
            h.update(json.dumps({"annotations": self.annotations, "categories": self.categories,
                                 "images": sorted(self.images.values(), key=lambda im: str(im["id"]))},
                                sort_keys=True).encode())
            for ann in self.annotations:
                h.update((self.png_dir / ann["file_name"]).read_bytes())
                path = self.image_path(self.images[ann["image_id"]])
                h.update(path.read_bytes() if images else f"{path.name}:{path.stat().st_size}".encode())
            self._hash[images] = h.hexdigest()
        return self._hash[images]


class CocoPanopticReader(PanopticJsonReader):
    """Reads a COCO-panoptic data set (ours or real COCO) as :class:`Sample` s with our id convention.

    ``png_dir`` defaults to ``<json dir>/panoptic`` (our layout) or the json path without ``.json``
    (COCO's ``panoptic_val2017.json`` + ``panoptic_val2017/``); ``image_dir`` defaults to
    ``<json dir>/images``.
    """

    def __init__(self, json_path: str | Path, png_dir: str | Path | None = None,
                 image_dir: str | Path | None = None):
        json_path = Path(json_path)
        if png_dir is None:
            candidates = [json_path.parent / "panoptic", json_path.with_suffix("")]
            png_dir = next((c for c in candidates if c.is_dir()), candidates[0])
        self.image_dir = Path(image_dir) if image_dir is not None else json_path.parent / "images"
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"image folder {self.image_dir} does not exist (pass image_dir=)")
        super().__init__(json_path, png_dir)

    def image_path(self, image: dict) -> Path:
        return self.image_dir / image["file_name"]


# -- COCO as distributed ---------------------------------------------------------------------------------------
def write_coco_root(root: str | Path, samples: Iterable[Sample], taxonomy: Taxonomy, split: str = "val2017",
                    progress: bool = True, total: int | None = None, seed: int = 0) -> Path:
    """Write ``samples`` the way COCO distributes its panoptic annotations; returns the JSON path::

        ROOT/annotations/panoptic_{split}.json      info, licenses, images, annotations, categories (no colours)
        ROOT/annotations/panoptic_{split}/{id:012d}.png
        ROOT/{split}/{id:012d}.jpg                  JPEG images, as COCO ships them

    Segment ids are random 24-bit colours, as panopticapi's converters make them (not our ``category * 1000 + k``),
    so readers must go through ``segments_info``.
    """
    root = Path(root)
    if not re.match(r"^[A-Za-z0-9_]+$", split):
        raise ValueError(f"split {split!r} must be letters, digits and _")
    png_dir, image_dir = root / "annotations" / f"panoptic_{split}", root / split
    png_dir.mkdir(parents=True, exist_ok=True)
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cats = {c["id"]: c for c in taxonomy.to_coco_categories()}
    images, annotations = [], []
    for index, (name, sample) in enumerate(tqdm(sample_names(samples), desc="coco-panoptic", unit="img",
                                                total=total, disable=not progress)):
        image_id = index + 1
        segments = checked_segments(sample, taxonomy, f"sample {name!r}")
        new_ids: dict[int, int] = {}
        while len(set(new_ids.values())) < len(segments):
            new_ids = {s.id: int(v) for s, v in zip(segments, rng.integers(1, MAX_SEGMENT_ID, len(segments)))}
        uniq, inverse = np.unique(sample.panoptic, return_inverse=True)
        coco_ids = np.array([new_ids.get(int(u), VOID_ID) for u in uniq], np.int64)[inverse]
        h, w = sample.panoptic.shape
        stem = f"{image_id:012d}"
        if not cv2.imwrite(str(image_dir / f"{stem}.jpg"), np.ascontiguousarray(sample.image[..., ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"could not write {image_dir / f'{stem}.jpg'}")
        write_rgb_png(png_dir / f"{stem}.png", ids_to_rgb(coco_ids.reshape(h, w)))
        images.append({"license": 1, "file_name": f"{stem}.jpg", "coco_url": "", "height": h, "width": w,
                       "date_captured": "", "flickr_url": "", "id": image_id})
        infos = []
        for s in segments:
            info = s.to_coco()
            info["id"] = new_ids[s.id]
            infos.append(info)
        annotations.append({"segments_info": infos, "file_name": f"{stem}.png", "image_id": image_id})
    json_path = root / "annotations" / f"panoptic_{split}.json"
    categories = [{"supercategory": c["supercategory"], "isthing": c["isthing"], "id": c["id"], "name": c["name"]}
                  for c in cats.values()]
    write_json_atomic(json_path, {"info": {"description": f"panoptic_ros synthetic world, {split}"},
                                  "licenses": [{"url": "", "id": 1, "name": "synthetic"}],
                                  "images": images, "annotations": annotations, "categories": categories})
    return json_path
