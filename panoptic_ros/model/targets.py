"""Training targets from a Sample (semantic train ids, boxes, center offsets) and the augmenting Dataset."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

from ..data.conditions import photometric_jitter
from ..data.frame import Sample
from ..panoptic import OFFSET, VOID_ID
from ..taxonomy import VOID_TRAIN_ID, Taxonomy

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_targets(panoptic: np.ndarray, taxonomy: Taxonomy, crowd_ids=()) -> dict[str, np.ndarray]:
    """Targets of a panoptic id map (H, W).

    Returns semantic (H, W) uint8 train ids (void and crowd -> 255); boxes (N, 4) float32 xyxy of the
    non-crowd thing instances (from their masks, continuous pixel coordinates); labels (N,) int64 train ids;
    center_offsets (2, H, W) float32 (dx, dy) from each pixel centre to its instance's box centre;
    center_mask (H, W) bool, the pixels of those instances.
    """
    if panoptic.ndim != 2:
        raise ValueError(f"panoptic ids must be (H, W), got shape {panoptic.shape}")
    h, w = panoptic.shape
    category = panoptic // OFFSET
    known = np.isin(category, taxonomy.ids) & (panoptic != VOID_ID)
    semantic = np.full((h, w), VOID_TRAIN_ID, dtype=np.uint8)
    semantic[known] = taxonomy.id_to_train[category[known]]
    crowd = np.isin(panoptic, np.asarray(list(crowd_ids), dtype=panoptic.dtype)) if len(crowd_ids) else \
        np.zeros((h, w), dtype=bool)
    semantic[crowd] = VOID_TRAIN_ID
    thing_category = np.zeros(256, dtype=bool)
    thing_category[taxonomy.ids[taxonomy.is_thing]] = True
    is_thing_pixel = known & ~crowd & (panoptic % OFFSET > 0) & thing_category[np.where(known, category, 0)]

    offsets = np.zeros((2, h, w), dtype=np.float32)
    rows, cols = np.nonzero(is_thing_pixel)
    if rows.size == 0:
        return {"semantic": semantic, "boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64),
                "center_offsets": offsets, "center_mask": is_thing_pixel}
    uniq, inverse = np.unique(panoptic[rows, cols], return_inverse=True)
    n = len(uniq)
    x0 = np.full(n, w); y0 = np.full(n, h); x1 = np.zeros(n, np.int64); y1 = np.zeros(n, np.int64)
    np.minimum.at(x0, inverse, cols); np.minimum.at(y0, inverse, rows)
    np.maximum.at(x1, inverse, cols + 1); np.maximum.at(y1, inverse, rows + 1)
    boxes = np.stack([x0, y0, x1, y1], axis=1).astype(np.float32)
    labels = taxonomy.id_to_train[uniq // OFFSET].astype(np.int64)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    offsets[0, rows, cols] = cx[inverse] - (cols + 0.5)
    offsets[1, rows, cols] = cy[inverse] - (rows + 0.5)
    return {"semantic": semantic, "boxes": boxes, "labels": labels, "center_offsets": offsets,
            "center_mask": is_thing_pixel}


def sample_targets(sample: Sample, taxonomy: Taxonomy) -> dict[str, np.ndarray]:
    return build_targets(sample.panoptic, taxonomy, [s.id for s in sample.segments if s.iscrowd])


class PanopticDataset(torch.utils.data.Dataset):
    """Samples of a reader as network inputs + targets at a fixed input size, with augmentation.

    Each sample is first scaled to fit ``input_size`` (aspect kept, fits the height), then (``augment``)
    flipped left-right with p=0.5 and scaled by a factor in ``scale_range``; finally centre- (eval) or
    randomly- (train) cropped / padded to ``input_size``. Padding is void.

    Args:
        reader: anything with ``len`` and ``[i] -> Sample``.
        taxonomy: the label taxonomy.
        input_size: (H, W) network input.
        augment: random flip / scale / crop.
        scale_range: scale jitter factors.
        flip: left-right flips when augmenting (off for data with handedness, e.g. left-hand traffic).
        photometric: strength of the photometric jitter when augmenting (exposure, contrast, gamma, haze, blur,
            noise; :func:`panoptic_ros.data.conditions.photometric_jitter`); 0 = off.
        mean, std: normalisation of RGB in [0, 1].
    """

    def __init__(self, reader, taxonomy: Taxonomy, input_size: tuple[int, int], augment: bool = True,
                 scale_range: tuple[float, float] = (0.75, 1.25), flip: bool = True, photometric: float = 0.0,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        if scale_range[0] <= 0 or scale_range[0] > scale_range[1]:
            raise ValueError(f"scale_range must be 0 < min <= max, got {scale_range}")
        self.reader = reader
        self.taxonomy = taxonomy
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.augment = augment
        self.scale_range = tuple(scale_range)
        self.flip = bool(flip)
        self.photometric = float(photometric)
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)

    def __len__(self) -> int:
        return len(self.reader)

    def _transform(self, image: np.ndarray, ids: np.ndarray, rng: np.random.Generator):
        out_h, out_w = self.input_size
        h, w = ids.shape
        scale = out_h / h
        if self.augment:
            scale *= rng.uniform(*self.scale_range)
            if self.flip and rng.random() < 0.5:
                image, ids = image[:, ::-1], ids[:, ::-1]
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
        if (new_h, new_w) != (h, w):
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            image = cv2.resize(np.ascontiguousarray(image), (new_w, new_h), interpolation=interp)
            ids = cv2.resize(np.ascontiguousarray(ids), (new_w, new_h), interpolation=cv2.INTER_NEAREST)
        # Crop (random when augmenting, else centred) and pad to the input size.
        def offset(size, out):
            if size <= out:
                return 0
            return int(rng.integers(0, size - out + 1)) if self.augment else (size - out) // 2
        y, x = offset(new_h, out_h), offset(new_w, out_w)
        image, ids = image[y: y + out_h, x: x + out_w], ids[y: y + out_h, x: x + out_w]
        canvas = np.empty((out_h, out_w, 3), np.uint8)
        canvas[:] = np.round(self.mean * 255).astype(np.uint8)  # pad with the mean -> 0 after normalisation
        canvas[: image.shape[0], : image.shape[1]] = image
        ids_canvas = np.full((out_h, out_w), VOID_ID, np.int32)
        ids_canvas[: ids.shape[0], : ids.shape[1]] = ids
        return canvas, ids_canvas

    def normalize(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 RGB -> (3, H, W) float normalised."""
        x = (image.astype(np.float32) / 255.0 - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))

    def __getitem__(self, index: int) -> dict:
        sample = self.reader[index]
        if sample.image.shape[:2] != sample.panoptic.shape:
            raise ValueError(f"sample {sample.name!r}: image {sample.image.shape[:2]} and panoptic ids "
                             f"{sample.panoptic.shape} differ in size")
        rng = np.random.default_rng(torch.randint(0, 2 ** 62, ()).item())
        image = sample.image
        if self.augment and self.photometric > 0:
            image = photometric_jitter(image, rng, self.photometric)
        image, ids = self._transform(image, sample.panoptic.astype(np.int32), rng)
        t = build_targets(ids, self.taxonomy, [s.id for s in sample.segments if s.iscrowd])
        return {"image": self.normalize(image), "semantic": torch.from_numpy(t["semantic"].astype(np.int64)),
                "center_offsets": torch.from_numpy(t["center_offsets"]),
                "center_mask": torch.from_numpy(t["center_mask"]), "boxes": torch.from_numpy(t["boxes"]),
                "labels": torch.from_numpy(t["labels"]), "index": index}


def collate(items: list[dict]) -> dict:
    """Stack the dense fields, keep boxes / labels as lists."""
    out = {k: torch.stack([it[k] for it in items]) for k in ("image", "semantic", "center_offsets", "center_mask")}
    out["boxes"] = [it["boxes"] for it in items]
    out["labels"] = [it["labels"] for it in items]
    out["index"] = [it["index"] for it in items]
    return out
