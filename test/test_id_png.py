"""The hand-written PNG path (panoptic_ros.evaluation.id_png and its numba kernels in png_runs) against
plain decoders, bit for bit.

Pillow writes panoptic PNGs with Up rows for repeats and mostly Paeth rows otherwise, OpenCV with Sub
rows; the kernels unfilter rows into runs, working only where a row's stored bytes are non-zero or the
row above changes. Every test here compares with OpenCV / Pillow decoding the whole file, on random ids,
odd sizes and every row filter.
"""
from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from panoptic_ros.evaluation.id_png import batch_runs, decode_id_png, ids_from_rows, pair_runs, png_rows
from panoptic_ros.evaluation.matching import id_runs



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
    rows = png_rows(data)
    assert rows is not None
    decoded = ids_from_rows(rows)
    assert decoded is not None and decoded.dtype == np.uint32
    np.testing.assert_array_equal(decoded, ids)
    np.testing.assert_array_equal(decode_id_png(data), ids)
    # Runs of the image against itself and against a constant image count every pixel.
    assert pair_counts(pair_runs(data, data)) == pair_counts(id_runs(ids, ids))
    flat = np.full_like(ids, 0x010203)
    assert pair_counts(pair_runs(data, filtered_png(flat, [1] * len(ids)))) == pair_counts(id_runs(ids, flat))


def pair_counts(runs) -> dict:
    frame = np.zeros(len(runs.length), np.int64) if runs.frame is None else runs.frame
    keys, inverse = np.unique(np.stack([frame, runs.gt, runs.pred]).astype(np.int64), axis=1, return_inverse=True)
    counts = np.bincount(inverse.reshape(-1), weights=runs.length).astype(np.int64)
    return {tuple(k): int(c) for k, c in zip(keys.T.tolist(), counts)}


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
    for height, width in ((17, 23), (30, 41), (6, 8), (5, 21)):  # rows of 25, 124, 25 and 64 bytes
        ids = panoptic_like(rng, height, width, noise=0.01)
        for filters in ([0] * height, [1] * height, [2] * height, [3] * height, [4] * height,
                        rng.integers(0, 5, height).tolist(), [4, 2] * (height // 2) + [3] * (height % 2),
                        [3] + rng.choice([2, 4], height - 1).tolist()):
            assert_decodes(filtered_png(ids, filters), ids)
    # A change in the last pixel only (its bytes end the row), in the first only, one column of noise,
    # all pixels different.
    for change in ((5, -1), (6, 0)):
        for width in (11, 16, 21):
            ids = np.full((9, width), 0x0A0B0C)
            ids[change[0]:, change[1]] = 0x0A0B0D
            for filters in ([4] * 9, [2] * 9, [0] + [4] * 8, [3] * 9, [1] * 9):
                assert_decodes(filtered_png(ids, filters), ids)
    ids = np.full((12, 15), 7)
    ids[:, 9] = rng.integers(0, 1 << 24, 12)
    assert_decodes(pillow_png(ids), ids)
    ids = rng.integers(0, 1 << 24, (10, 13))
    for filters in ([4] * 10, rng.integers(0, 5, 10).tolist()):
        assert_decodes(filtered_png(ids, filters), ids)
    # An Average row changes pixels where its stored bytes are all zero.
    ids = np.array([[0, 100, 100, 100, 100], [0, 50, 75, 87, 93]])
    data = filtered_png(ids, [1, 3])
    assert not png_rows(data)[1, 1:].any()
    assert_decodes(data, ids)
    # None rows with zero pixels after non-zero ones; Paeth and Up rows of zeros under changing rows.
    ids = np.zeros((6, 9), np.int64)
    ids[1:4, 2:5] = 0x102030
    ids[2:, 7] = 0x000001
    for filters in ([0] * 6, [4] * 6, [2] * 6, [0, 4, 4, 2, 4, 3]):
        assert_decodes(filtered_png(ids, filters), ids)
    # Stored bytes equal to the row before them: a repeat for None and Sub rows, not for Up, Average, Paeth.
    ids = np.array([[5, 5, 9], [10, 10, 18], [15, 15, 27]])
    for filters in ([2, 2, 2], [4, 2, 2], [3, 3, 3], [1, 0, 0], [0, 1, 1]):
        assert_decodes(filtered_png(ids, filters), ids)


def test_random_images_and_filters_decode_and_pair_like_opencv():
    """Many small random cases: sizes 1..40 x 1..70 (every row length modulo 8 and 32), Pillow's and
    random filters, identical images, noise up to every pixel."""
    rng = np.random.default_rng(12)
    for trial in range(150):
        height, width = int(rng.integers(1, 41)), int(rng.integers(1, 71))
        gt = panoptic_like(rng, height, width, noise=(0, 0.002, 0.3)[trial % 3])
        pred = gt.copy() if trial % 7 == 0 else panoptic_like(rng, height, width, noise=0.01 * (trial % 2))
        gt_png = filtered_png(gt, rng.integers(0, 5, height).tolist()) if trial % 2 else pillow_png(gt)
        pred_png = filtered_png(pred, rng.integers(0, 5, height).tolist()) if trial % 3 else pillow_png(pred)
        np.testing.assert_array_equal(ids_from_rows(png_rows(gt_png)), gt)
        runs = pair_runs(gt_png, pred_png)
        assert runs.frame is None
        assert pair_counts(runs) == pair_counts(id_runs(gt, pred)), trial


def test_a_batch_numbers_its_frames_and_counts_every_pixel_pair():
    rng = np.random.default_rng(11)
    width = 37
    frames = []
    for k in range(6):
        height = int(rng.integers(1, 26))
        gt = panoptic_like(rng, height, width, noise=0.003 * (k % 2))
        pred = gt.copy() if k == 2 else panoptic_like(rng, height, width)  # identical rows in one frame
        frames.append((gt, pred))
    frames.append((frames[0][0][:, :20], frames[0][1][:, :20]))  # another width
    pngs = [(pillow_png(gt), filtered_png(pred, [1] * len(pred))) for gt, pred in frames]
    palette = io.BytesIO()  # a palette PNG: off the fast path, decoded by OpenCV
    Image.fromarray(rgb_of(frames[1][1])).convert("P", palette=Image.ADAPTIVE, colors=256).save(palette, "PNG")
    assert png_rows(palette.getvalue()) is None
    pngs[1] = (pngs[1][0], palette.getvalue())
    frames[1] = (frames[1][0], plain_ids(palette.getvalue()))
    runs = batch_runs(pngs)
    expected = {}
    for frame, (gt, pred) in enumerate(frames):
        for (_, g, p), n in pair_counts(id_runs(gt, pred)).items():
            expected[(frame, g, p)] = n
    assert pair_counts(runs) == expected
    assert len(runs.length) < sum(gt.size for gt, _ in frames) // 4  # runs, not pixels


def test_long_run_heavy_images_give_few_runs():
    """A 256 x 512 panoptic-like pair: the runs number about the segment edges met along the rows."""
    rng = np.random.default_rng(3)
    gt, pred = panoptic_like(rng, 256, 512, segments=8), panoptic_like(rng, 256, 512, segments=8)
    runs = pair_runs(pillow_png(gt), pillow_png(pred))
    assert pair_counts(runs) == pair_counts(id_runs(gt, pred))
    assert len(runs.length) < gt.size // 16


def test_bad_input_is_a_clear_error_or_the_opencv_path():
    ids = np.arange(12).reshape(3, 4)
    data = filtered_png(ids, [1, 1, 1])
    rows = np.array(png_rows(data))
    rows[1, 0] = 7  # no such filter type
    assert ids_from_rows(rows) is None
    from panoptic_ros.evaluation import png_runs  # the kernels refuse buffers of another size
    flat = np.frombuffer(png_rows(data).tobytes(), np.uint8)
    assert not png_runs.decode_ids(flat[:-1], 3, 4)[1] and not png_runs.decode_ids(flat, 3, 0)[1]
    assert not png_runs.pair_runs(flat, flat[:-1], 3, 4)[3] and png_runs.pair_runs(flat, flat, 3, 4)[3]
    with pytest.raises(ValueError, match="cannot decode"):
        decode_id_png(b"not a png")
    with pytest.raises(ValueError):  # sizes differ: no runs
        pair_runs(data, filtered_png(ids[:2], [1, 1]))
