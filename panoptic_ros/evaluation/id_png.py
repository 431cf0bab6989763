"""Decode COCO-panoptic PNGs (RGB, id = R + 256 G + 256^2 B) straight to (H, W) uint32 id maps.

Written by hand because OpenCV, Pillow and libspng all inflate with the system zlib, which is slow on
these run-heavy images (about 1 ms for 256 x 512, 20x zlib-ng), and decoding dominates PQ evaluation.
The fast path (zlib-ng inflate + numpy unfiltering) covers 8-bit RGB, non-interlaced PNGs whose rows use
the None, Sub or Up filters (what OpenCV writes); anything else (Average / Paeth rows as Pillow writes,
palettes, 16 bit, a missing ``zlib-ng``) is decoded by OpenCV with the same result.
"""
from __future__ import annotations

import struct
import threading
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .matching import IdRuns

try:  # optional: without it every file takes the OpenCV path
    from zlib_ng import zlib_ng as _inflater
except ImportError:  # pragma: no cover - depends on the environment
    _inflater = None

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FILTER_NONE, FILTER_SUB, FILTER_UP = 0, 1, 2


def png_rows(data: bytes) -> np.ndarray | None:
    """The inflated (H, 1 + 3 W) filter-byte + pixel rows of an 8-bit RGB non-interlaced PNG, or None
    when the fast path does not apply."""
    if _inflater is None or data[:8] != PNG_SIGNATURE:
        return None
    pos, idat, header = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length  # length, type, body, crc
    if header is None:
        return None
    width, height, depth, color, _compression, _filter, interlace = header
    if depth != 8 or color != 2 or interlace != 0:
        return None
    try:
        raw = _inflater.decompress(b"".join(idat))
    except Exception:  # a damaged stream: let OpenCV report it
        return None
    stride = 1 + 3 * width
    if len(raw) != height * stride:
        return None
    return np.frombuffer(raw, dtype=np.uint8).reshape(height, stride)


def ids_from_rows(rows: np.ndarray) -> np.ndarray | None:
    """Id map from :func:`png_rows` when every row uses the None, Sub or Up filter; None otherwise."""
    filters = rows[:, 0]
    if filters.max(initial=0) > FILTER_UP:
        return None
    height, width = rows.shape[0], (rows.shape[1] - 1) // 3
    pixels = rows[:, 1:].reshape(height, width, 3)
    out = np.zeros((height, width, 4), dtype=np.uint8)  # R, G, B, 0 -> one little-endian uint32
    rgb = out[..., :3]
    sub = filters == FILTER_SUB
    if sub.all():
        np.cumsum(pixels, axis=1, dtype=np.uint8, out=rgb)  # Sub: each byte adds the pixel to its left
    else:
        rgb[...] = pixels
        if sub.any():
            rgb[sub] = np.cumsum(pixels[sub], axis=1, dtype=np.uint8)
        up = filters == FILTER_UP
        if up.any():
            # Up adds the row above: a running sum down the rows, restarted at every row that is not Up.
            running = np.concatenate([np.zeros((1, width, 3), np.uint8), np.cumsum(rgb, axis=0, dtype=np.uint8)])
            start = np.maximum.accumulate(np.where(up, -1, np.arange(height)))
            rgb[...] = running[1:] - running[np.maximum(start, 0)]
    return out.view("<u4")[..., 0]


_scratch_buffers = threading.local()


def _scratch(slot: int, shape: tuple[int, int], dtype) -> tuple[np.ndarray, np.ndarray]:
    """A reused per-thread buffer of ``shape`` and its flat base (one spare element at the end): fresh
    multi-megabyte arrays cost more in page faults than the work done in them."""
    buffers = _scratch_buffers.__dict__.setdefault("buffers", {})
    size = shape[0] * shape[1]
    buf = buffers.get(slot)
    if buf is None or buf.size < size + 1 or buf.dtype != np.dtype(dtype):
        buf = buffers[slot] = np.empty(size + 1, dtype=dtype)
    return buf[:size].reshape(shape), buf


_LANE = 21  # bits per colour channel in one int64 running sum: 255 * width stays below 2**21 up to width 8224


def batch_runs(pairs: Sequence[tuple[np.ndarray | None, np.ndarray | None]]) -> IdRuns | None:
    """:class:`IdRuns` (``frame`` = index in ``pairs``) of (ground-truth, prediction) :func:`png_rows`
    pairs without decoding every pixel, when all are of one size with only Sub rows (as OpenCV writes);
    None otherwise (decode them fully).

    In a Sub row every byte stores the difference to the pixel on its left, so an unchanged pixel is three
    zero bytes and each row starts with its non-zero filter byte. One pass over the bytes of all images
    finds where any changes; the ids there are the running sums of the stored bytes, taken over those few
    positions only (R, G and B summed at once in separate bit lanes of one int64). Frames are stacked as
    one tall image: runs restart at every row, so they never cross frames.
    """
    gt_list, pred_list = [], []
    for gt_rows, pred_rows in pairs:
        if gt_rows is None or pred_rows is None or gt_rows.shape != pred_rows.shape:
            return None
        if gt_list and gt_rows.shape != gt_list[0].shape:
            return None
        gt_list.append(gt_rows)
        pred_list.append(pred_rows)
    if not gt_list:
        return None
    height, stride = gt_list[0].shape
    width = (stride - 1) // 3
    if width * 255 >= 1 << _LANE:  # a row's running sum would overflow its lane
        return None
    shape = (len(gt_list) * height, stride)
    (gt_rows, gt_base), (pred_rows, pred_base), (changed, _), (hit, _) = (
        _scratch(k, shape, dtype) for k, dtype in enumerate((np.uint8, np.uint8, np.uint8, bool)))
    np.concatenate(gt_list, out=gt_rows)
    np.concatenate(pred_list, out=pred_rows)
    if (gt_rows[:, 0] != FILTER_SUB).any() or (pred_rows[:, 0] != FILTER_SUB).any():
        return None
    np.bitwise_or(gt_rows, pred_rows, out=changed)
    np.not_equal(changed, 0, out=hit)  # the filter byte (1) makes every row's first pixel a hit
    # flatnonzero of a bool array: numpy's fast path (2-D np.nonzero and non-bool inputs are far slower).
    hits = np.flatnonzero(hit)
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
    # One unaligned little-endian uint32 read per pixel gives R | G << 8 | B << 16 | next byte << 24 (the
    # base buffer has a spare byte, so the last pixel can be read the same way).
    byte = 3 * raster + row + 1  # first byte of each pixel in the row-major buffer
    steps = np.empty((len(raster), 2), dtype=np.int64)
    for k, base in enumerate((gt_base, pred_base)):
        words = np.ndarray((gt_rows.size - 2,), dtype="<u4", buffer=base, strides=(1,))
        rgb = words[byte].astype(np.int64)
        steps[:, k] = (rgb & 0xFF) | ((rgb & 0xFF00) << (_LANE - 8)) | ((rgb & 0xFF0000) << (2 * _LANE - 16))
    total = np.cumsum(steps, axis=0)  # may wrap past 2**63 on huge batches; the differences stay exact
    row_first = np.maximum.accumulate(np.where(at_row_start, np.arange(len(raster)), 0))
    total -= np.concatenate([np.zeros((1, 2), np.int64), total])[row_first]  # restart at each row
    ids = ((total & 255) | (((total >> _LANE) & 255) << 8) | (((total >> (2 * _LANE)) & 255) << 16))
    frame_pixels = height * width
    return IdRuns(ids[:, 0], ids[:, 1], np.diff(raster, append=len(gt_list) * frame_pixels),
                  raster // frame_pixels)


def pair_runs(gt_png: bytes, pred_png: bytes) -> IdRuns | None:
    """:func:`batch_runs` of one pair of PNG files (``frame`` None)."""
    runs = batch_runs([(png_rows(gt_png), png_rows(pred_png))])
    return None if runs is None else runs._replace(frame=None)


def decode_id_png(data: bytes, source: str = "PNG", rows: np.ndarray | None = None) -> np.ndarray:
    """(H, W) uint32 ids of PNG bytes (``rows``: their :func:`png_rows`, when already inflated)."""
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
