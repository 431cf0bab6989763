"""The hand-written PNG path (panoptic_ros.evaluation.id_png) against plain decoders, bit for bit.

Pillow writes panoptic PNGs with Up rows for repeats and mostly Paeth rows otherwise; the fast path
unfilters those through OpenCV on only the columns that change (and all images of a batch at once), and
reads runs from the non-zero bytes of the Sub rows. Every test here compares with OpenCV / Pillow decoding
the whole file, on random ids, odd sizes and every row filter.
"""
from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from panoptic_ros.evaluation.id_png import (batch_distinct_rows, batch_runs, decode_id_png, ids_from_rows,
                                            png_distinct_rows, png_rows)
from panoptic_ros.evaluation.matching import id_runs

FILTERS = range(5)  # None, Sub, Up, Average, Paeth


def rgb_of(ids: np.ndarray) -> np.ndarray:
    return np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], axis=-1).astype(np.uint8)


def pillow_png(ids: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb_of(ids)).save(buffer, format="PNG")
    return buffer.getvalue()


def filtered_png(ids: np.ndarray, filters) -> bytes:
    """An 8-bit RGB PNG whose row r is filtered with ``filters[r]`` (the PNG specification's filters)."""
    rgb = rgb_of(ids).astype(np.int64)
    height, width, _ = rgb.shape
    lines, prior = [], np.zeros(3 * width, np.int64)
    for r in range(height):
        line = rgb[r].reshape(-1)
        left = np.concatenate([np.zeros(3, np.int64), line[:-3]])
        upper_left = np.concatenate([np.zeros(3, np.int64), prior[:-3]])
        predictor = [np.zeros_like(line), left, prior, (left + prior) // 2, None][filters[r]]
        if filters[r] == 4:
            p = left + prior - upper_left
            pa, pb, pc = np.abs(p - left), np.abs(p - prior), np.abs(p - upper_left)
            predictor = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prior, upper_left))
        lines.append(bytes([filters[r]]) + ((line - predictor) % 256).astype(np.uint8).tobytes())
        prior = line

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(lines)))
            + chunk(b"IEND", b""))


def plain_ids(data: bytes) -> np.ndarray:
    """Ids of a PNG decoded in full by OpenCV, checked against Pillow."""
    rgb = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)[..., ::-1].astype(np.uint32)
    np.testing.assert_array_equal(rgb, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    return rgb[..., 0] | rgb[..., 1] << 8 | rgb[..., 2] << 16


def panoptic_like(rng, height: int, width: int, segments: int = 6, noise: float = 0.0) -> np.ndarray:
    """Random ids in axis-aligned boxes and slanted bands (repeated rows, vertical and diagonal edges),
    random 24-bit ids, optionally with a fraction of pixels set to random ids."""
    ids = np.full((height, width), rng.integers(0, 1 << 24), dtype=np.int64)
    rows, cols = np.mgrid[:height, :width]
    for _ in range(segments):
        top, left = rng.integers(0, height), rng.integers(0, width)
        bottom, right = rng.integers(top, height + 1), rng.integers(left, width + 1)
        ids[top:bottom, left:right] = rng.integers(0, 1 << 24)
        slope = rng.uniform(-2, 2)
        ids[cols > slope * (rows - top) + left + width // 3] = rng.integers(0, 1 << 24)
    spots = rng.random((height, width)) < noise
    ids[spots] = rng.integers(0, 1 << 24, spots.sum())
    return ids


def assert_decodes(data: bytes, ids: np.ndarray) -> None:
    np.testing.assert_array_equal(plain_ids(data), ids)  # the test's own encoding is right
    image = png_distinct_rows(data)
    assert image is not None
    assert image.rows.shape[0] <= ids.shape[0] and image.source[-1] == len(image.rows) - 1
    np.testing.assert_array_equal(ids_from_rows(image), ids)
    np.testing.assert_array_equal(ids_from_rows(png_rows(data)), ids)
    np.testing.assert_array_equal(decode_id_png(data), ids)


@pytest.mark.parametrize("height, width", [(1, 1), (1, 7), (9, 1), (13, 31), (40, 65), (33, 128)])
def test_pillow_written_pngs_decode_like_opencv(height, width):
    rng = np.random.default_rng(height * 1000 + width)
    seen_filters = set()
    for noise in (0.0, 0.002, 0.3):
        ids = panoptic_like(rng, height, width, noise=noise)
        data = pillow_png(ids)
        seen_filters |= set(png_rows(data)[:, 0].tolist())
        assert_decodes(data, ids)
    if height * width >= 40 * 65:
        assert {2, 4} <= seen_filters  # Up and Paeth rows, as Pillow writes panoptic images


def test_every_filter_sequence_decodes_like_opencv():
    rng = np.random.default_rng(5)
    for height, width in ((17, 23), (30, 41)):
        ids = panoptic_like(rng, height, width, noise=0.01)
        for filters in ([0] * height, [1] * height, [2] * height, [3] * height, [4] * height,
                        rng.integers(0, 5, height).tolist(), [4, 2] * (height // 2) + [3] * (height % 2),
                        [3] + rng.choice([2, 4], height - 1).tolist()):
            assert_decodes(filtered_png(ids, filters), ids)
    # A change in the last pixel only, in the first only, one column of noise, all pixels different.
    for change in ((5, -1), (6, 0)):
        ids = np.full((9, 11), 0x0A0B0C)
        ids[change[0]:, change[1]] = 0x0A0B0D
        for filters in ([4] * 9, [2] * 9, [0] + [4] * 8, [3] * 9):
            assert_decodes(filtered_png(ids, filters), ids)
    ids = np.full((12, 15), 7)
    ids[:, 9] = rng.integers(0, 1 << 24, 12)
    assert_decodes(pillow_png(ids), ids)
    ids = rng.integers(0, 1 << 24, (10, 13))
    for filters in ([4] * 10, rng.integers(0, 5, 10).tolist()):
        assert_decodes(filtered_png(ids, filters), ids)
    # An Average row changes pixels where its stored bytes are all zero: such an image keeps every column.
    ids = np.array([[0, 100, 100, 100, 100], [0, 50, 75, 87, 93]])
    data = filtered_png(ids, [1, 3])
    assert not png_rows(data)[1, 1:].any()
    assert_decodes(data, ids)


def test_a_batch_decodes_each_image_like_alone():
    """Images of several widths, with and without Average rows, OpenCV-style all-Sub rows and a None
    (not a PNG for the fast path) in one call: each result equals the image decoded alone."""
    rng = np.random.default_rng(8)
    images = []
    for k in range(14):
        height, width = int(rng.integers(1, 30)), (21, 33)[k % 2]
        ids = panoptic_like(rng, height, width, noise=0.005 * (k % 3))
        filters = ([1] * height if k % 5 == 0 else rng.integers(0, 5, height).tolist() if k % 5 == 1
                   else [2 if r and k % 2 else 4 for r in range(height)])
        data = filtered_png(ids, filters) if k % 4 else pillow_png(ids)
        images.append((data, ids))
    for _ in range(2):  # one image the same as the one before it: their rows are distinct per image
        ids = np.full((3, 21), 0x123456)
        images.append((filtered_png(ids, [4, 4, 4]), ids))
    rows = [png_rows(data) for data, _ in images] + [None]
    decoded = batch_distinct_rows(iter(rows))  # a generator works too
    assert len(decoded) == len(rows) and decoded[-1] is None
    for (data, ids), image in zip(images, decoded):
        alone = png_distinct_rows(data)
        np.testing.assert_array_equal(image.rows, alone.rows)
        np.testing.assert_array_equal(image.source, alone.source)
        np.testing.assert_array_equal(ids_from_rows(image), ids)


def pair_counts(runs) -> dict:
    frame = np.zeros(len(runs.length), np.int64) if runs.frame is None else runs.frame
    keys, inverse = np.unique(np.stack([frame, runs.gt, runs.pred]).astype(np.int64), axis=1, return_inverse=True)
    counts = np.bincount(inverse.reshape(-1), weights=runs.length).astype(np.int64)
    return {tuple(k): int(c) for k, c in zip(keys.T.tolist(), counts)}


def test_runs_of_pillow_pngs_count_every_pixel_pair():
    rng = np.random.default_rng(11)
    width = 37
    frames = []
    for k in range(6):
        height = int(rng.integers(1, 26))
        gt = panoptic_like(rng, height, width, noise=0.003 * (k % 2))
        pred = gt.copy() if k == 2 else panoptic_like(rng, height, width)  # identical rows in one frame
        frames.append((gt, pred))
    images = batch_distinct_rows(png_rows(pillow_png(ids)) for pair in frames for ids in pair)
    runs = batch_runs(list(zip(images[0::2], images[1::2])))
    expected = {}
    for frame, (gt, pred) in enumerate(frames):
        for (_, g, p), n in pair_counts(id_runs(gt, pred)).items():
            expected[(frame, g, p)] = n
    assert pair_counts(runs) == expected
    assert len(runs.length) < sum(gt.size for gt, _ in frames)  # runs, not pixels
