"""Unfilter the inflated rows of an 8-bit RGB PNG straight into runs of equal pixels, and pair the runs of
a ground-truth and a predicted image into (gt id, pred id, pixels) runs; compiled by numba.

Written by hand because no library decodes a PNG to runs: a per-pixel decoder (OpenCV, Pillow) spends
~1 ms on a 256 x 512 panoptic image whose value changes at a few hundred pixels. Here a row is one scan
for its non-zero stored bytes and then work only at *events*: pixel 0, pixels with a non-zero stored
byte, the pixels where the row above changes, and (for None, Up and Average rows) the pixel after one
whose value differs from what a zero byte would give there. Between events every filter type repeats
the pixel on the left: Sub and Paeth rows store zeros there and (Paeth) see equal upper and upper-left
pixels. A row whose runs equal the row above's is not paired again; the pair it repeats counts its
pixels once more.

A pixel value is packed as R | G << 8 | B << 16, which is the COCO-panoptic id.
"""
from __future__ import annotations

import numpy as np
from numba import njit

FILTER_NONE, FILTER_SUB, FILTER_UP, FILTER_AVERAGE, FILTER_PAETH = range(5)
_JIT = dict(cache=True, nogil=True, boundscheck=False)
# Inlined in numba's IR: a call with array arguments otherwise pays reference counting each time, once per
# row (57 vs 80 us per 256 x 512 pair); compiling then takes ~11 s, once, into numba's cache.
_INLINE = dict(_JIT, inline="always")


# The byte loops below cast every step back to uint8: numba otherwise widens uint8 operations to int64,
# and the loop no longer compiles to vector instructions (7x slower).
@njit(**_INLINE)
def _any_nonzero(raw, start, end):
    """Whether ``raw[start:end]`` has a non-zero byte."""
    within = raw[start:end]
    acc = np.uint8(0)
    for i in range(len(within)):  # no early exit: vector instructions
        acc = np.uint8(acc | within[i])
    return acc != 0


@njit(**_INLINE)
def _equal_bytes(raw, a, b, length):
    """Whether ``raw[a:a + length]`` equals ``raw[b:b + length]``."""
    one, other = raw[a:a + length], raw[b:b + length]
    acc = np.uint8(0)
    for i in range(length):
        acc = np.uint8(acc | np.uint8(one[i] ^ other[i]))
    return acc == 0


@njit(**_INLINE)
def _next_nonzero(raw, pos, end):
    """The first index >= ``pos`` of a non-zero byte of ``raw[:end]``, or ``end``."""
    while pos < end:  # blocks of 32 bytes, each one vector OR
        stop = min(pos + 32, end)
        block = raw[pos:stop]
        acc = np.uint8(0)
        for i in range(len(block)):
            acc = np.uint8(acc | block[i])
        if acc:
            break
        pos = stop
    while pos < end and raw[pos] == 0:
        pos += 1
    return pos


@njit(**_INLINE)
def _unfilter(kind, stored, left, above, upper_left):
    """One pixel's packed value from its stored (filtered) bytes and its left, above and upper-left
    pixels (the PNG specification's filters, per channel, modulo 256)."""
    value = 0
    for shift in (0, 8, 16):
        f = (stored >> shift) & 255
        a = (left >> shift) & 255
        b = (above >> shift) & 255
        if kind == FILTER_NONE:
            v = f
        elif kind == FILTER_SUB:
            v = f + a
        elif kind == FILTER_UP:
            v = f + b
        elif kind == FILTER_AVERAGE:
            v = f + ((a + b) >> 1)
        else:
            c = (upper_left >> shift) & 255
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            v = f + (a if pa <= pb and pa <= pc else b if pb <= pc else c)
        value |= (v & 255) << shift
    return value


SAME_AS_ABOVE, BAD_FILTER = -1, -2


@njit(**_INLINE)
def _decode_row(raw, row_start, stride, starts, values, above, out):
    """Runs of the row whose filter byte is ``raw[row_start]`` into ``starts[out, :n]`` (then the
    sentinel ``width``) and ``values[out, :n]``, given the runs of the row above in ``starts[above]``
    (ending with the sentinel) and ``values[above]``. Returns ``n``; SAME_AS_ABOVE (nothing written) for
    a row known to repeat the row above (an Up or Paeth row of zeros; a None or Sub row stored as the
    row before it); BAD_FILTER for an unknown filter type."""
    kind = raw[row_start]
    if kind > FILTER_PAETH:
        return BAD_FILTER
    width = (stride - 1) // 3
    base, end = row_start + 1, row_start + stride  # pixel x's stored bytes: base + 3 x .. base + 3 x + 2
    if (kind == FILTER_NONE or kind == FILTER_SUB) and row_start >= stride \
            and _equal_bytes(raw, row_start, row_start - stride, stride):
        return SAME_AS_ABOVE
    stored_at = width  # the next pixel with a non-zero stored byte
    # A pass with no early exit first: most rows are all zeros, and over a whole row of them it takes a
    # tenth of the time of _next_nonzero's block scan (1536 bytes: 18 vs 190 ns).
    if _any_nonzero(raw, base, end):
        stored_at = (_next_nonzero(raw, base, end) - base) // 3
    elif kind == FILTER_UP or kind == FILTER_PAETH:
        # Zero stored bytes repeat the row above: Up by definition; Paeth because, pixel by pixel from the
        # left, a left pixel equal to its upper-left one makes the predictor the pixel above.
        return SAME_AS_ABOVE
    n, k, x, left = 0, 0, 0, 0
    while x < width:
        while starts[above, k + 1] <= x:
            k += 1
        upper = values[above, k]
        upper_left = 0 if x == 0 else values[above, k - 1] if starts[above, k] == x else upper
        stored = 0
        if stored_at == x:
            at = base + 3 * x
            stored = np.int64(raw[at]) | np.int64(raw[at + 1]) << 8 | np.int64(raw[at + 2]) << 16
            stored_at = (_next_nonzero(raw, at + 3, end) - base) // 3
        value = _unfilter(kind, stored, left, upper, upper_left)
        if x == 0 or value != left:
            starts[out, n] = x
            values[out, n] = value
            n += 1
        left = value
        # The next event. Past x + 1 the stored bytes are zero and the row above is constant up to its
        # next change; a Sub or Paeth pixel there is its left neighbour, so only None, Up and Average
        # rows may change at x + 1.
        following = left
        if kind == FILTER_NONE:
            following = 0
        elif kind == FILTER_UP:
            following = upper
        elif kind == FILTER_AVERAGE:
            following = _unfilter(kind, 0, left, upper, upper)
        x = x + 1 if following != left else min(stored_at, starts[above, k + 1])
    starts[out, n] = width
    return n


@njit(**_INLINE)
def _next_row(raw, row_start, stride, starts, values, above, out, above_count):
    """:func:`_decode_row`, then SAME_AS_ABOVE also for a row decoded to the runs of the row above."""
    n = _decode_row(raw, row_start, stride, starts, values, above, out)
    if n < 0 or n != above_count:
        return n
    for i in range(n):
        if starts[out, i] != starts[above, i] or values[out, i] != values[above, i]:
            return n
    return SAME_AS_ABOVE


@njit(**_JIT)
def pair_runs(gt_raw, pred_raw, height, width):
    """(gt id, pred id, pixels) runs of two images of one size, each the inflated rows of an 8-bit RGB
    non-interlaced PNG (filter byte + 3 ``width`` bytes per row, flat, ``height`` rows); ``ok`` is False
    for an unknown filter type or a buffer of another size. A run may stand for the same span of several
    rows."""
    stride = 1 + 3 * width
    if width < 1 or len(gt_raw) != height * stride or len(pred_raw) != height * stride:  # no bounds checks
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), False
    # Runs of rows, four slots: the row above and the current row of the ground truth (slots 0, 1 at
    # first) and of the prediction (2, 3); swapped by slot number. The row above row 0: one run of zeros.
    starts, values = np.zeros((4, width + 1), np.int64), np.zeros((4, width + 1), np.int64)
    starts[:, 1] = width
    gt_above, gt_row, pred_above, pred_row = 0, 1, 2, 3
    gt_count = pred_count = 1
    capacity = 4 * width + 16
    out_gt = np.empty(capacity, np.int64)
    out_pred = np.empty(capacity, np.int64)
    out_length = np.empty(capacity, np.int64)
    count, rows = 0, 0  # rows: how many rows the runs above stand for (not yet paired)
    for y in range(height + 1):
        gt_n = pred_n = SAME_AS_ABOVE
        if y < height:
            gt_n = _next_row(gt_raw, y * stride, stride, starts, values, gt_above, gt_row, gt_count)
            pred_n = _next_row(pred_raw, y * stride, stride, starts, values, pred_above, pred_row, pred_count)
            if gt_n == BAD_FILTER or pred_n == BAD_FILTER:
                return out_gt[:0], out_pred[:0], out_length[:0], False
            if y > 0 and gt_n == SAME_AS_ABOVE and pred_n == SAME_AS_ABOVE:
                rows += 1
                continue
        if rows:  # pair the runs above, for all the rows they stand for
            if count + gt_count + pred_count > capacity:
                capacity = 2 * capacity + gt_count + pred_count
                out_gt, out_pred = _grown(out_gt, capacity), _grown(out_pred, capacity)
                out_length = _grown(out_length, capacity)
            i = j = x = 0
            while x < width:
                x_end = min(starts[gt_above, i + 1], starts[pred_above, j + 1])
                out_gt[count] = values[gt_above, i]
                out_pred[count] = values[pred_above, j]
                out_length[count] = (x_end - x) * rows
                count += 1
                if starts[gt_above, i + 1] == x_end:
                    i += 1
                if starts[pred_above, j + 1] == x_end:
                    j += 1
                x = x_end
        if gt_n != SAME_AS_ABOVE:  # the row's runs become the runs above
            gt_above, gt_row, gt_count = gt_row, gt_above, gt_n
        if pred_n != SAME_AS_ABOVE:
            pred_above, pred_row, pred_count = pred_row, pred_above, pred_n
        rows = 1
    return out_gt[:count], out_pred[:count], out_length[:count], True


@njit(**_JIT)
def _grown(array, capacity):
    out = np.empty(capacity, array.dtype)
    out[:len(array)] = array
    return out


@njit(**_JIT)
def decode_ids(raw, height, width):
    """(height, width) uint32 ids of inflated PNG rows (as :func:`pair_runs`); ``ok`` False for an unknown
    filter type or a buffer of another size."""
    stride = 1 + 3 * width
    ids = np.empty((height, width), np.uint32)
    if width < 1 or len(raw) != height * stride:  # no bounds checks below
        return ids, False
    starts, values = np.zeros((2, width + 1), np.int64), np.zeros((2, width + 1), np.int64)
    starts[:, 1] = width
    above, row, count = 0, 1, 1
    for y in range(height):
        n = _decode_row(raw, y * stride, stride, starts, values, above, row)
        if n == BAD_FILTER:
            return ids, False
        if n != SAME_AS_ABOVE:
            above, row, count = row, above, n
        for r in range(count):
            ids[y, starts[above, r]:starts[above, r + 1]] = values[above, r]
    return ids, True
