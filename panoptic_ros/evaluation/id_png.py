"""Decode COCO-panoptic PNGs (RGB, id = R + 256 G + 256^2 B) to id maps, or straight to the runs of
(ground truth, prediction) pairs without building pixel maps.

Written by hand because OpenCV, Pillow and libspng all inflate with the system zlib, which is slow on
these run-heavy images (about 1 ms for 256 x 512, 20x zlib-ng), and then unfilter every pixel, while a
panoptic image changes value at a few hundred. The fast path inflates with zlib-ng and unfilters into
runs with numba-compiled kernels (:mod:`.png_runs`); it covers 8-bit RGB non-interlaced PNGs with any
row filters. Anything else (palettes, 16 bit, interlace, a missing ``zlib-ng`` or ``numba``) is decoded
by OpenCV in full.
"""
from __future__ import annotations

import functools
import struct
from pathlib import Path
from typing import NamedTuple, Sequence

import cv2
import numpy as np

from .matching import IdRuns, concat_runs, id_runs

try:  # optional: without it every file takes the OpenCV path
    from zlib_ng import zlib_ng as _inflater
except ImportError:  # pragma: no cover - depends on the environment
    _inflater = None

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
    if header is None or (header.bit_depth, header.color_type, header.interlace) != (8, 2, 0) \
            or header.width == 0 or header.height == 0:  # the kernels need a pixel (PNG forbids none)
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


@functools.cache
def kernels():
    """The compiled kernels (:mod:`.png_runs`), or None without numba. Imported on first use: numba's
    import (~0.6 s) and loading the cached machine code (~0.25 s) are paid only by evaluations."""
    try:
        from . import png_runs
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    # numba loads (or compiles) a kernel's machine code at its first call, not at import: do it here for
    # the pair kernel every evaluation uses, so that processes forked after this call inherit it.
    one_pixel = np.frombuffer(bytes(4), np.uint8)
    png_runs.pair_runs(one_pixel, one_pixel, 1, 1)
    return png_runs


def ids_from_rows(rows: np.ndarray) -> np.ndarray | None:
    """(H, W) uint32 ids of :func:`png_rows`; None for an invalid filter byte or without numba."""
    compiled = kernels()
    if compiled is None:
        return None
    height, stride = rows.shape
    ids, ok = compiled.decode_ids(_flat(rows), height, (stride - 1) // 3)
    return ids if ok else None


def _flat(rows: np.ndarray) -> np.ndarray:
    """Rows as the kernels take them: flat, C-contiguous and read-only (one compiled variant)."""
    flat = np.ascontiguousarray(rows).reshape(-1)
    if flat.flags.writeable:
        flat = np.frombuffer(flat.tobytes(), np.uint8)
    return flat


def pair_runs(gt_png: bytes, pred_png: bytes, gt_source: str = "ground-truth PNG",
              pred_source: str = "predicted PNG") -> IdRuns:
    """:class:`IdRuns` (``frame`` None) of a pair of PNG files: from their rows when the fast path
    applies to both, else from id maps decoded by OpenCV (ValueError for undecodable files or sizes that
    differ)."""
    gt_rows, pred_rows = png_rows(gt_png), png_rows(pred_png)
    compiled = kernels()
    if compiled is not None and gt_rows is not None and pred_rows is not None and gt_rows.shape == pred_rows.shape:
        height, stride = gt_rows.shape
        gt, pred, length, ok = compiled.pair_runs(_flat(gt_rows), _flat(pred_rows), height, (stride - 1) // 3)
        if ok:
            return IdRuns(gt, pred, length)
    return id_runs(decode_id_png(gt_png, gt_source, gt_rows), decode_id_png(pred_png, pred_source, pred_rows))


def batch_runs(pngs: Sequence[tuple[bytes, bytes]], sources: Sequence[tuple[str, str]] | None = None) -> IdRuns:
    """:func:`pair_runs` of several (ground truth, prediction) PNG pairs as one batch (``frame`` = index);
    ``sources`` names the files in error messages."""
    sources = sources or [("ground-truth PNG", "predicted PNG")] * len(pngs)
    return concat_runs([pair_runs(gt, pred, *names) for (gt, pred), names in zip(pngs, sources)])


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
