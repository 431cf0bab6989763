"""Decode COCO-panoptic PNGs (RGB, id = R + 256 G + 256^2 B) to id maps, or straight to the runs of
(ground truth, prediction) pairs without building pixel maps.

Written by hand because OpenCV, Pillow and libspng all inflate with the system zlib, which is slow on
these run-heavy images (about 1 ms for 256 x 512, 20x zlib-ng), and decoding dominates PQ evaluation.
The fast path inflates with zlib-ng, keeps each image as its distinct rows in Sub form (most rows of a
panoptic image repeat the row above) and reads ids only where they change (:func:`batch_runs`). It
covers 8-bit RGB non-interlaced PNGs with any row filters (OpenCV writes Sub rows; Pillow writes Up rows
for repeats and Paeth rows, which OpenCV unfilters for a whole batch of images at once, on only the few
pixel columns that change: :func:`batch_distinct_rows`); anything else (palettes, 16 bit, interlace, a
missing ``zlib-ng``) is decoded by OpenCV in full.
"""
from __future__ import annotations

import functools
import struct
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

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


def _png_of_rows(rows: np.ndarray) -> bytes:
    """A PNG of filtered 8-bit RGB rows, for OpenCV to unfilter; stored, not compressed, and framed by
    hand (zlib's compress at level 0 costs more than the copy for these small images)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = _inflater.crc32(body, _inflater.crc32(kind))
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    height, stride = rows.shape
    raw = rows.tobytes()
    blocks = [b"\x78\x01"]  # zlib header: deflate, 32 KiB window, no dictionary
    for start in range(0, len(raw), 0xFFFF):  # stored deflate blocks of at most 65535 bytes
        block = raw[start:start + 0xFFFF]
        blocks.append(struct.pack("<BHH", start + 0xFFFF >= len(raw), len(block), len(block) ^ 0xFFFF) + block)
    blocks.append(struct.pack(">I", _inflater.adler32(raw)))
    header = struct.pack(">IIBBBBB", (stride - 1) // 3, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(blocks)) + chunk(b"IEND", b"")


class DistinctRows:
    """An image as its distinct rows in Sub form (every row Sub-filtered: each byte minus the same byte
    of the pixel on its left, so an unchanged pixel is three zero bytes) and, for each of its rows, the
    distinct row it equals (non-decreasing).

    Made from the dense rows, or from only their non-zero pixel bytes (``nonzero``: row, byte in the
    row, value; ordered by row and pixel) and their ``shape``, as the Pillow path does; the dense rows
    are then built when first asked for (:func:`batch_runs` needs only the non-zero bytes).
    """

    __slots__ = ("_rows", "source", "_nonzero", "shape")

    def __init__(self, rows: np.ndarray | None, source: np.ndarray,
                 nonzero: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                 shape: tuple[int, int] | None = None):
        self._rows, self.source, self._nonzero = rows, source, nonzero
        self.shape = rows.shape if rows is not None else shape  # (distinct rows, 1 + 3 W)

    @property
    def rows(self) -> np.ndarray:
        """(D, 1 + 3 W) uint8, filter bytes all Sub."""
        if self._rows is None:
            rows = np.zeros(self.shape, dtype=np.uint8)
            row, byte, value = self._nonzero
            rows.reshape(-1)[row * self.shape[1] + byte] = value
            rows[:, 0] = FILTER_SUB
            self._rows = rows
        return self._rows

    @property
    def nonzero(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(row, byte, value) of the non-zero pixel bytes by row and pixel, when made from them (else None)."""
        return self._nonzero


def distinct_rows(rows: np.ndarray) -> DistinctRows | None:
    """:func:`png_rows` as :class:`DistinctRows`; None for invalid filter bytes (:func:`batch_distinct_rows`)."""
    return batch_distinct_rows([rows])[0]


def batch_distinct_rows(images: Iterable[np.ndarray | None]) -> list[DistinctRows | None]:
    """:class:`DistinctRows` of several :func:`png_rows` at once; None for None or invalid filter bytes.

    Run-heavy panoptic images repeat most rows. OpenCV writes Sub rows: a repeated row has the bytes of
    the row above. Pillow writes a repeated row as Up with all-zero bytes and most others as Paeth. Such
    images are unfiltered without their repeats by OpenCV, all images of one width in one call and each
    one reduced to the pixel columns that are not a copy of their left neighbour in every row (about 20
    of 512 in a panoptic image; :func:`_sub_rows_by_opencv`).

    ``images`` may be a generator: each image is reduced to its distinct (or not repeated) rows as it
    comes, while its bytes are still in the cache, and not held after that.
    """
    out: list[DistinctRows | None] = []
    pending: dict[tuple[int, bool], list[tuple[int, np.ndarray, np.ndarray]]] = {}
    for index, rows in enumerate(images):
        out.append(None)
        if rows is None:
            continue
        filters = np.bincount(rows[:, 0], minlength=FILTER_PAETH + 1)  # rows per filter type
        if filters[FILTER_SUB] == len(rows):  # OpenCV's encoder: only find the repeats
            out[index] = _without_repeats(rows, np.arange(len(rows)))
            continue
        if len(filters) > FILTER_PAETH + 1:
            continue
        repeat = _repeat_row(rows.shape[1])
        new = np.ones(len(rows), dtype=bool)  # row 0's "row above" is zeros, not a row
        new[1:] = rows[1:].reshape(-1).view(repeat.dtype) != repeat
        # Images with Average rows (rare) keep all their columns: decode them apart from the narrow ones.
        pending.setdefault((rows.shape[1], filters[FILTER_AVERAGE] > 0), []).append((index, rows[new], new))
    for members in pending.values():
        counts = np.array([len(kept) for _, kept, _ in members])
        starts = np.cumsum(counts) - counts
        image_of_row = np.repeat(np.arange(len(members)), counts)
        decoded = _sub_rows_by_opencv(np.concatenate([kept for _, kept, _ in members]), image_of_row, len(members))
        if decoded is None:
            continue
        (row, byte, value), number = decoded
        first = number[starts]  # each image's first distinct row in the stack's numbering
        last = np.append(first[1:], number[-1] + 1)
        entry_bounds = np.searchsorted(row, np.append(first, last[-1]))
        stride = members[0][1].shape[1]
        # Every image's row -> distinct row, and the entries' rows, renumbered from 0 per image at once;
        # the images then get views of them.
        is_new = np.concatenate([new for _, _, new in members])
        heights = np.array([len(new) for _, _, new in members])
        row_bounds = np.append(0, np.cumsum(heights))
        source = number[np.cumsum(is_new) - 1] - np.repeat(first, heights)
        row = row - np.repeat(first, np.diff(entry_bounds))
        for k, (index, _, _) in enumerate(members):
            entries = slice(entry_bounds[k], entry_bounds[k + 1])
            out[index] = DistinctRows(None, source[row_bounds[k]:row_bounds[k + 1]],
                                      (row[entries], byte[entries], value[entries]), (last[k] - first[k], stride))
    return out


@functools.lru_cache(maxsize=8)
def _repeat_row(stride: int) -> np.ndarray:
    """Pillow's repeated row (Up, all bytes zero) as one raw-byte item: numpy compares rows as such
    items with one memcmp each (3x faster than bytewise)."""
    repeat = np.zeros(stride, dtype=np.uint8)
    repeat[0] = FILTER_UP
    return repeat.view(f"V{stride}")


def _sub_rows_by_opencv(stack: np.ndarray, image_of_row: np.ndarray, images: int
                        ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None:
    """Distinct Sub rows of filtered rows (any filters) of images of one width, stacked (rows numbered
    by ``image_of_row``, ascending), each image's first row filtered against zeros, as their non-zero
    pixel bytes ((distinct row, byte, value) by row and pixel), and the distinct row of each row (a row
    equal to the row before it in its image is dropped); None when OpenCV cannot decode them.

    The images are stacked into one PNG for OpenCV, each after a None row of zeros (the "row above" of
    its first row), and each with only its changing columns (:func:`_changing_columns`), padded on the
    right with zero bytes to a common width (pixels on the right never change those on their left).
    Only non-zero bytes are copied in and out: most are zero.
    """
    height, stride = stack.shape
    flat = stack.reshape(-1)
    hits = _nonzero_bytes(flat)
    row = hits // stride
    byte = hits - row * stride
    changing = _changing_columns(stack[:, 0], image_of_row, images, (stride - 1) // 3, row, byte)
    # Narrow columns: each image's changing pixels in order; slot_of[image, pixel] = narrow pixel.
    slot_of = np.cumsum(changing, axis=1) - 1
    narrow_width = int(slot_of[:, -1].max()) + 1
    at = np.arange(height) + image_of_row + 1  # after its image's separator row (None, zeros)
    narrow = np.zeros((height + images, 1 + 3 * narrow_width), dtype=np.uint8)
    narrow[at, 0] = stack[:, 0]
    pixel_byte = np.flatnonzero(byte)  # not the filter byte
    row, byte = row[pixel_byte], byte[pixel_byte] - 1
    pixel, channel = byte // 3, byte % 3
    narrow[at[row], 1 + 3 * slot_of[image_of_row[row], pixel] + channel] = flat[hits[pixel_byte]]
    bgr = cv2.imdecode(np.frombuffer(_png_of_rows(narrow), np.uint8), cv2.IMREAD_UNCHANGED)
    if bgr is None or bgr.shape != (len(narrow), narrow_width, 3):
        return None
    # Sub form of the narrow pixels (in OpenCV's BGR order); padding pixels decode to anything: zeroed.
    bgr = bgr[at].reshape(height, -1)
    narrow_sub = bgr.copy()
    np.subtract(bgr[:, 3:], bgr[:, :-3], out=narrow_sub[:, 3:])
    narrow_sub[np.arange(3 * narrow_width) >= 3 * (slot_of[image_of_row, -1:] + 1)] = 0
    # Rows equal in narrow form are equal in full form (an image's left-out columns are the same).
    whole_rows = narrow_sub.reshape(-1).view(f"V{narrow_sub.shape[1]}")
    distinct = np.ones(height, dtype=bool)
    distinct[1:] = whole_rows[1:] != whole_rows[:-1]
    distinct[1:] |= image_of_row[1:] != image_of_row[:-1]
    narrow_sub, distinct_image = narrow_sub[distinct], image_of_row[distinct]
    # The left-out columns copy the kept column on their left: in the full rows the kept columns have
    # the narrow Sub bytes, the others zeros.
    pixel_of_slot = np.zeros((images, narrow_width), dtype=np.intp)
    image_of_column, column = np.nonzero(changing)
    pixel_of_slot[image_of_column, slot_of[image_of_column, column]] = column
    at_byte = _nonzero_bytes(narrow_sub.reshape(-1))
    row = np.floor(at_byte / (3 * narrow_width)).astype(np.int64)  # exact, see _nonzero_pixel_bytes
    narrow_byte = at_byte - row * 3 * narrow_width
    slot, channel = narrow_byte // 3, narrow_byte % 3
    full_byte = 1 + 3 * pixel_of_slot[distinct_image[row], slot] + 2 - channel  # BGR -> RGB
    value = narrow_sub.reshape(-1)[row * 3 * narrow_width + narrow_byte]
    return (row, full_byte, value), np.cumsum(distinct) - 1


def _nonzero_bytes(flat: np.ndarray) -> np.ndarray:
    """Ascending positions of the non-zero bytes of a contiguous 1-D uint8 array: non-zero 8-byte words
    first (numpy's fast path for bool flatnonzero: an eighth of the elements), then bytes inside them."""
    whole = len(flat) // 8 * 8
    words = np.flatnonzero(flat[:whole].view(np.uint64) != 0)
    in_words = np.flatnonzero(flat[:whole].reshape(-1, 8)[words] != 0)
    tail = whole + np.flatnonzero(flat[whole:])
    return np.concatenate((words[in_words >> 3] * 8 + (in_words & 7), tail))


def _changing_columns(filters: np.ndarray, image_of_row: np.ndarray, images: int, width: int, row: np.ndarray,
                      byte: np.ndarray) -> np.ndarray:
    """(images, width) bool: pixel columns of each image (its filtered rows without repeats, with
    ``filters``, numbered by ``image_of_row``, non-zero at bytes ``byte`` of rows ``row``) that may
    differ from the pixel on their left in some row; column 0 always.

    Let G be a row's bytes for Sub and Paeth rows and its bytes minus those of the pixel on the left for
    None and Up rows. Where G is zero in every row, the Sub form is zero in every row too, by induction
    down the rows: a None or Sub row's Sub form is G; an Up row's is G plus the row above's; a Paeth
    row's is G plus the row above's plus paeth(a, b, c) - (a + b - c), which is zero when b = c. Such a
    column can be left out: the pixels right of it see the same left and upper-left values. So the
    columns kept are those with a non-zero byte in some row and, for None and Up rows, the ones right of
    those. Average rows have no such G: an image with one keeps every column.
    """
    pixel_byte = byte > 0  # not the filter byte
    row, pixel = row[pixel_byte], (byte[pixel_byte] - 1) // 3
    changing = np.zeros((images, width + 1), dtype=bool)  # a spare column right of the last
    changing[image_of_row[row], pixel] = True
    shifted = np.flatnonzero((filters[row] == FILTER_NONE) | (filters[row] == FILTER_UP))
    changing[image_of_row[row[shifted]], pixel[shifted] + 1] = True
    changing = changing[:, :width]
    changing[:, 0] = True
    changing[image_of_row[filters == FILTER_AVERAGE]] = True
    return changing
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
    repeats below it (the run lengths count all their pixels). The non-zero bytes of each image's
    distinct rows are found once (one pass over them, 8 bytes at a time) and copied to every new row
    that uses that row: where either image changes along a row. The ids there are running sums of those
    bytes (R, G and B summed at once in separate bit lanes of one int64), restarted at pixel 0 of every
    row, so runs never cross rows or frames.
    """
    if not pairs:
        return None
    widths = set()
    for gt_image, pred_image in pairs:
        if gt_image is None or pred_image is None or len(gt_image.source) != len(pred_image.source):
            return None
        widths.update((gt_image.shape[1], pred_image.shape[1]))
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
    stride = 1 + 3 * width
    sources = []
    for k in range(2):
        images = [pair[k] for pair in pairs]
        counts = np.array([image.shape[0] for image in images])
        offset = np.cumsum(counts) - counts
        source = np.concatenate([image.source for image in images]) + offset[frame_of_row]
        new[1:] |= source[1:] != source[:-1]
        if all(image.nonzero is not None for image in images):  # the Pillow path: no dense rows
            entries = [image.nonzero for image in images]
            sizes = [len(row) for row, _, _ in entries]
            nonzero = (np.concatenate([row for row, _, _ in entries]) + np.repeat(offset, sizes),
                       np.concatenate([byte for _, byte, _ in entries]),
                       np.concatenate([value for _, _, value in entries]))
        else:
            nonzero = _nonzero_pixel_bytes(np.concatenate([image.rows for image in images]))
        sources.append((nonzero, counts.sum(), source))
    starts = np.flatnonzero(new)
    row_frame, row_count = frame_of_row[starts], np.diff(starts, append=len(new))
    combined = len(starts)
    row_key = np.arange(combined) * width
    # Events (row * width + pixel, step), each list ascending: every row starts at pixel 0 with a step
    # that brings the running sums back to zero, then come the non-zero bytes of the ground-truth row and
    # of the predicted row it pairs, as R, G and B in separate bit lanes of one int64.
    keys, steps = [row_key], []
    channel = np.arange(stride) - 1
    pixel_of_byte, lane_of_byte = channel // 3, _LANE * (channel % 3)
    for (image_row, byte, value), count_rows, source in sources:
        pixel, value = pixel_of_byte[byte], value.astype(np.int64) << lane_of_byte[byte]
        entries = np.bincount(image_row, minlength=count_rows)
        first_entry = np.cumsum(entries) - entries
        running = np.concatenate(([0], np.cumsum(value)))  # may wrap past 2**63; differences stay exact
        row_sum = running[first_entry + entries] - running[first_entry]
        used = source[starts]
        count = entries[used]
        at = np.repeat(first_entry[used] - (np.cumsum(count) - count), count) + np.arange(count.sum())
        keys.append(np.repeat(row_key, count) + pixel[at])
        steps.append((np.concatenate(([0], -row_sum[used][:-1])), value[at]))
    # Three ascending runs: a stable sort (timsort) merges them in linear time; row starts sort first.
    key = np.concatenate(keys)
    order = np.argsort(key, kind="stable")
    key = key[order]
    zeros = [np.zeros(len(k), dtype=np.int64) for k in keys]
    total = np.stack([np.cumsum(np.concatenate((steps[0][0], steps[0][1], zeros[2]))[order]),
                      np.cumsum(np.concatenate((steps[1][0], zeros[1], steps[1][1]))[order])])
    last = np.ones(len(key), dtype=bool)  # the last event of a pixel has all of its bytes summed
    np.not_equal(key[1:], key[:-1], out=last[:-1])
    key, total = key[last], total[:, last]
    row = np.floor(key / width).astype(np.int64)  # exact: key < 2**52, see _nonzero_pixel_bytes
    ids = ((total & 255) | (((total >> _LANE) & 255) << 8) | (((total >> (2 * _LANE)) & 255) << 16))
    length = np.diff(key, append=combined * width) * row_count[row]
    return IdRuns(ids[0], ids[1], length, row_frame[row])


def _nonzero_pixel_bytes(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, byte, value) of the non-zero pixel bytes (not filter bytes) of rows, row-major."""
    stride = rows.shape[1]
    hits = _nonzero_bytes(rows.reshape(-1))
    # Row without integer division (slow in numpy): a float quotient is exact here (hits < 2**52,
    # distance to the next integer >= 1 / stride).
    row = np.floor(hits / stride).astype(np.int64)
    byte = hits - row * stride
    pixel_byte = np.flatnonzero(byte)
    return row[pixel_byte], byte[pixel_byte], rows.reshape(-1)[hits[pixel_byte]]


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
