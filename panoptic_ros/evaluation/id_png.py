"""Decode COCO-panoptic PNGs (RGB, id = R + 256 G + 256^2 B) to id maps, or straight to the runs of
(ground truth, prediction) pairs without building pixel maps.

Written by hand because OpenCV, Pillow and libspng all inflate with the system zlib, which is slow on
these run-heavy images (about 1 ms for 256 x 512, 20x zlib-ng), and decoding dominates PQ evaluation.
The fast path inflates with zlib-ng, keeps each image as its distinct rows in Sub form (most rows of a
panoptic image repeat the row above) and reads ids only where they change (:func:`batch_runs`). It
covers 8-bit RGB non-interlaced PNGs with any row filters (OpenCV writes Sub rows; Pillow writes Up rows
for repeats and Paeth rows, which OpenCV unfilters); anything else (palettes, 16 bit, interlace, a
missing ``zlib-ng``) is decoded by OpenCV in full.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import NamedTuple, Sequence

import cv2
import numpy as np

from .matching import IdRuns

try:  # optional: without it every file takes the OpenCV path
    from zlib_ng import zlib_ng as _inflater
except ImportError:  # pragma: no cover - depends on the environment
    _inflater = None

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FILTER_NONE, FILTER_SUB, FILTER_UP, FILTER_AVERAGE, FILTER_PAETH = range(5)


class PngHeader(NamedTuple):
    width: int
    height: int
    bit_depth: int
    color_type: int
    interlace: int


def _chunks(data: bytes) -> tuple[PngHeader | None, bytes]:
    """IHDR and the joined IDAT bodies of PNG bytes (header None when they are not a PNG)."""
    if data[:8] != PNG_SIGNATURE:
        return None, b""
    pos, idat, header = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR" and len(body) == 13:
            width, height, depth, color, _compression, _filter, interlace = struct.unpack(">IIBBBBB", body)
            header = PngHeader(width, height, depth, color, interlace)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length  # length, type, body, crc
    return header, b"".join(idat)


def png_rows(data: bytes) -> np.ndarray | None:
    """The inflated (H, 1 + 3 W) filter-byte + pixel rows of an 8-bit RGB non-interlaced PNG, or None
    when the fast path does not apply."""
    if _inflater is None:
        return None
    header, idat = _chunks(data)
    if header is None or (header.bit_depth, header.color_type, header.interlace) != (8, 2, 0):
        return None
    stride = 1 + 3 * header.width
    # A buffer one byte over the expected size, allocated once: with an exact fit zlib-ng grows it to look
    # for more output, which makes inflating 4x slower.
    try:
        raw = _inflater.decompress(idat, 15, header.height * stride + 1)
    except Exception:  # a damaged stream: let OpenCV report it
        return None
    if len(raw) != header.height * stride:
        return None
    return np.frombuffer(raw, dtype=np.uint8).reshape(header.height, stride)


def _sub_form_of_rgb(rgb: np.ndarray) -> np.ndarray:
    """(H, 1 + 3 W) Sub rows of (H, W, 3) uint8 RGB pixels."""
    height, width, _ = rgb.shape
    pixels = rgb.reshape(height, 3 * width)
    out = np.empty((height, 1 + 3 * width), dtype=np.uint8)
    out[:, 0] = FILTER_SUB
    out[:, 1:4] = pixels[:, :3]
    np.subtract(pixels[:, 3:], pixels[:, :-3], out=out[:, 4:])  # uint8 wraps, as the PNG filter does
    return out


def _png_of_rows(rows: np.ndarray) -> bytes:
    """A PNG (stored, not compressed) of filtered 8-bit RGB rows, for OpenCV to unfilter."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = _inflater.crc32(body, _inflater.crc32(kind))
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    height, stride = rows.shape
    header = struct.pack(">IIBBBBB", (stride - 1) // 3, height, 8, 2, 0, 0, 0)
    return (PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", _inflater.compress(rows.tobytes(), 0))
            + chunk(b"IEND", b""))


class DistinctRows(NamedTuple):
    """An image as its distinct rows in Sub form (every row Sub-filtered: each byte minus the same byte
    of the pixel on its left, so an unchanged pixel is three zero bytes) and, for each of its rows, the
    distinct row it equals (non-decreasing)."""

    rows: np.ndarray  # (D, 1 + 3 W) uint8, filter bytes all Sub
    source: np.ndarray  # (H,) intp


def distinct_rows(rows: np.ndarray) -> DistinctRows | None:
    """:func:`png_rows` as :class:`DistinctRows`; None for invalid filter bytes.

    Run-heavy panoptic images repeat most rows. OpenCV writes Sub rows: a repeated row has the bytes of
    the row above. Pillow writes a repeated row as Up with all-zero bytes and most others as Paeth: the
    non-repeated rows are unfiltered in numpy (None, Sub) or, when one of them depends on the row above
    (Up, Average, Paeth), by OpenCV from a PNG of only those rows (each one then follows the row it
    depended on).
    """
    filters = rows[:, 0]
    if (filters == FILTER_SUB).all():  # OpenCV's encoder: only find the repeats
        return _without_repeats(rows, np.arange(len(rows)))
    if filters.max(initial=0) > FILTER_PAETH:
        return None
    row_item = f"V{rows.shape[1]}"  # a whole row as one raw-byte item (see _without_repeats)
    repeat = np.zeros(rows.shape[1], dtype=np.uint8)  # Up, all bytes zero
    repeat[0] = FILTER_UP
    new = np.ones(len(rows), dtype=bool)  # row 0's "row above" is zeros, not a row
    new[1:] = np.ascontiguousarray(rows[1:]).reshape(-1).view(row_item) != repeat.view(row_item)
    kept = rows[new]
    kept_filters = kept[:, 0]
    if (kept_filters <= FILTER_SUB).all():  # no kept row looks at the row above
        rgb = kept[:, 1:].reshape(len(kept), -1, 3).copy()
        sub = kept_filters == FILTER_SUB
        rgb[sub] = np.cumsum(rgb[sub], axis=1, dtype=np.uint8)
    else:
        bgr = cv2.imdecode(np.frombuffer(_png_of_rows(kept), np.uint8), cv2.IMREAD_UNCHANGED)
        if bgr is None or bgr.shape != (len(kept), (rows.shape[1] - 1) // 3, 3):
            return None
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return _without_repeats(_sub_form_of_rgb(rgb), np.cumsum(new) - 1)


def _without_repeats(rows: np.ndarray, source: np.ndarray) -> DistinctRows:
    """Sub rows that equal the row before them dropped (their bytes are the same pixels)."""
    # Rows as single raw-byte items: numpy compares them with one memcmp each (3x faster than bytewise).
    whole_rows = np.ascontiguousarray(rows).reshape(-1).view(f"V{rows.shape[1]}")
    new = np.ones(len(rows), dtype=bool)
    new[1:] = whole_rows[1:] != whole_rows[:-1]
    return DistinctRows(rows[new], (np.cumsum(new) - 1)[source])


def png_distinct_rows(data: bytes) -> DistinctRows | None:
    """:class:`DistinctRows` of PNG bytes, or None when the fast path does not apply (decode them with
    :func:`decode_id_png`)."""
    rows = png_rows(data)
    return None if rows is None else distinct_rows(rows)


def ids_from_rows(rows: np.ndarray | DistinctRows) -> np.ndarray | None:
    """Id map from :func:`png_rows` (any filters) or :class:`DistinctRows`; None when not valid."""
    image = rows if isinstance(rows, DistinctRows) else distinct_rows(rows)
    if image is None:
        return None
    count, width = image.rows.shape[0], (image.rows.shape[1] - 1) // 3
    out = np.zeros((count, width, 4), dtype=np.uint8)  # R, G, B, 0 -> one little-endian uint32
    np.cumsum(image.rows[:, 1:].reshape(count, width, 3), axis=1, dtype=np.uint8, out=out[..., :3])
    return out.view("<u4")[..., 0][image.source]


_LANE = 21  # bits per colour channel in one int64 running sum: 255 * width stays below 2**21 up to width 8224


def batch_runs(pairs: Sequence[tuple[DistinctRows | None, DistinctRows | None]]) -> IdRuns | None:
    """:class:`IdRuns` (``frame`` = index in ``pairs``) of (ground truth, prediction) images as
    :class:`DistinctRows` (:func:`png_distinct_rows`), without decoding every pixel; None when one is
    None, a pair differs in size or the frames differ in width (decode those fully).

    A row of a frame is new when either image's row is, and each new row stands for itself and the
    repeats below it (the run lengths count all their pixels). The new rows of all frames are stacked;
    one pass over the OR of both stacks, read 8 bytes at a time, finds where either image changes along
    a row; the ids there are the running sums of the stored bytes, taken over those few positions only
    (R, G and B summed at once in separate bit lanes of one int64). Each row starts with its non-zero
    filter byte, so runs restart at every row and never cross frames.
    """
    if not pairs:
        return None
    widths = set()
    for gt_image, pred_image in pairs:
        if gt_image is None or pred_image is None or len(gt_image.source) != len(pred_image.source):
            return None
        widths.update((gt_image.rows.shape[1], pred_image.rows.shape[1]))
    if len(widths) != 1 or min(len(gt.source) for gt, _ in pairs) == 0:
        return None
    width = (widths.pop() - 1) // 3
    if width == 0 or width * 255 >= 1 << _LANE:  # a row's running sum would overflow its lane
        return None
    # All frames at once: distinct rows stacked, each image's row sources shifted to index the stack.
    heights = np.array([len(gt.source) for gt, _ in pairs])
    frame_of_row = np.repeat(np.arange(len(pairs)), heights)
    new = np.zeros(heights.sum(), dtype=bool)  # a row of a frame is new when either image's is
    new[np.cumsum(heights) - heights] = True
    sources = []
    for k in range(2):
        images = [pair[k] for pair in pairs]
        offset = np.cumsum([0] + [len(image.rows) for image in images[:-1]])
        source = np.concatenate([image.source for image in images]) + offset[frame_of_row]
        new[1:] |= source[1:] != source[:-1]
        sources.append((np.concatenate([image.rows for image in images]), source))
    starts = np.flatnonzero(new)
    gt_rows, pred_rows = (rows[source[starts]] for rows, source in sources)
    row_frame, row_count = frame_of_row[starts], np.diff(starts, append=len(new))
    stride = 1 + 3 * width
    size = gt_rows.size
    changed = np.zeros(-(-size // 8) * 8, dtype=np.uint8)  # whole 8-byte words, zeros past the end
    np.bitwise_or(gt_rows.reshape(-1), pred_rows.reshape(-1), out=changed[:size])
    # Non-zero 8-byte words first (an eighth of the elements), then the non-zero bytes inside them;
    # flatnonzero of a bool array is numpy's fast path (other dtypes and 2-D nonzero are several x slower).
    words = np.flatnonzero(changed.view(np.uint64) != 0)
    in_words = np.flatnonzero(changed.reshape(-1, 8)[words] != 0)
    hits = words[in_words >> 3] * 8 + (in_words & 7)
    # Row and pixel of each changed byte without integer division (slow in numpy): a float quotient is
    # exact here (hits < 2**52, distance to the next integer >= 1 / stride), the column is a table lookup.
    row = np.floor(hits / stride).astype(np.int64)
    column = hits - row * stride
    pixel_of_byte = np.maximum(np.arange(stride) - 1, 0) // 3  # the filter byte -> the row's first pixel
    raster = row * width + pixel_of_byte[column]
    keep = np.empty(len(raster), dtype=bool)  # several changed bytes of one pixel -> one position
    keep[0] = True
    np.not_equal(raster[1:], raster[:-1], out=keep[1:])
    raster, row, at_row_start = raster[keep], row[keep], column[keep] == 0
    # One unaligned little-endian uint32 read per pixel, from the byte before it (the filter byte or the
    # previous pixel's last byte), shifted: R | G << 8 | B << 16.
    before = 3 * raster + row  # the byte before each pixel
    steps = np.empty((2, len(raster)), dtype=np.int64)
    for k, stack in enumerate((gt_rows, pred_rows)):
        words32 = np.ndarray((size - 3,), dtype="<u4", buffer=stack, strides=(1,))
        rgb = words32[before].astype(np.int64) >> 8
        steps[k] = (rgb & 0xFF) | ((rgb & 0xFF00) << (_LANE - 8)) | ((rgb & 0xFF0000) << (2 * _LANE - 16))
    total = np.cumsum(steps, axis=1)  # may wrap past 2**63 on huge batches; the differences stay exact
    row_first = np.maximum.accumulate(np.where(at_row_start, np.arange(len(raster)), 0))
    total -= np.concatenate([np.zeros((2, 1), np.int64), total], axis=1)[:, row_first]  # restart at each row
    ids = ((total & 255) | (((total >> _LANE) & 255) << 8) | (((total >> (2 * _LANE)) & 255) << 16))
    length = np.diff(raster, append=len(row_count) * width) * row_count[row]
    return IdRuns(ids[0], ids[1], length, row_frame[row])


def pair_runs(gt_png: bytes, pred_png: bytes) -> IdRuns | None:
    """:func:`batch_runs` of one pair of PNG files (``frame`` None)."""
    runs = batch_runs([(png_distinct_rows(gt_png), png_distinct_rows(pred_png))])
    return None if runs is None else runs._replace(frame=None)


def decode_id_png(data: bytes, source: str = "PNG", rows: np.ndarray | DistinctRows | None = None) -> np.ndarray:
    """(H, W) uint32 ids of PNG bytes (``rows``: their :func:`png_rows` or :func:`png_distinct_rows`,
    when already inflated)."""
    rows = png_rows(data) if rows is None else rows
    ids = None if rows is None else ids_from_rows(rows)
    if ids is not None:
        return ids
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if bgr is None:
        raise ValueError(f"cannot decode {source} as a PNG")
    if bgr.ndim != 3 or bgr.shape[2] not in (3, 4) or bgr.dtype != np.uint8:
        raise ValueError(f"{source}: a panoptic PNG is 8-bit RGB, got shape {bgr.shape} dtype {bgr.dtype}")
    # RGBA: the alpha channel is ignored, as panopticapi's rgb2id does.
    rgba = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA if bgr.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
    rgba[..., 3] = 0
    return rgba.view("<u4")[..., 0]


def read_id_png(path: str | Path) -> np.ndarray:
    """(H, W) uint32 segment ids of a COCO-panoptic PNG file."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read panoptic PNG {path}: {err.strerror}") from None
    return decode_id_png(data, str(path))
