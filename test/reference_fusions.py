"""Slow references of the deterministic fusions, written from the papers' text (and the fusion docstrings).

Plain numpy scalars and Python loops over pixels and detections, one image at a time.

- ``reference_heuristic``: detectron2's combine_semantic_and_instance_outputs as Panoptic FPN describes it,
  with this package's instance mask (box pixel centre rule + semantic argmax = the detection's class).
- ``reference_center_vote``: Panoptic-DeepLab's grouping (votes, NMS peaks, nearest centre, majority class).
"""
from __future__ import annotations

import math

import numpy as np

F32 = np.float32
VOID = 255
OFFSET = 1000


def _argmax(logits, i, j) -> int:
    """First maximum over the classes at pixel (i, j)."""
    best, best_c = None, 0
    for c in range(logits.shape[0]):
        if best is None or logits[c, i, j] > best:
            best, best_c = logits[c, i, j], c
    return best_c


def _inside(box, i, j) -> bool:
    x1, y1, x2, y2 = (F32(v) for v in box)
    cx, cy = F32(F32(j) + F32(0.5)), F32(F32(i) + F32(0.5))
    return bool(x1 <= cx < x2 and y1 <= cy < y2)


def _finish(owner, category_ids, stuff_area_threshold):
    """owner[(i, j)] = ("thing", train, instance) / ("stuff", train) / None -> ids, semantic."""
    area = {}
    for value in owner.values():
        if value is not None and value[0] == "stuff":
            area[value[1]] = area.get(value[1], 0) + 1
    h = max(i for i, _ in owner) + 1
    w = max(j for _, j in owner) + 1
    ids = np.zeros((h, w), np.int32)
    semantic = np.full((h, w), VOID, np.uint8)
    for (i, j), value in owner.items():
        if value is None:
            continue
        if value[0] == "stuff":
            if area[value[1]] < stuff_area_threshold:
                continue
            ids[i, j] = int(category_ids[value[1]]) * OFFSET
        else:
            ids[i, j] = int(category_ids[value[1]]) * OFFSET + value[2]
        semantic[i, j] = value[1]
    return ids, semantic


def reference_heuristic(logits, boxes, labels, scores, valid, things, category_ids, overlap_threshold,
                        score_threshold, stuff_area_threshold):
    """One image: logits (C, H, W); boxes (K, 4); labels, scores, valid (K,)."""
    _, h, w = logits.shape
    argmax = {(i, j): _argmax(logits, i, j) for i in range(h) for j in range(w)}
    panoptic = {(i, j): 0 for i in range(h) for j in range(w)}  # detection index + 1
    order = sorted((d for d in range(len(boxes)) if valid[d]), key=lambda d: (-float(scores[d]), d))
    for d in order:
        if float(scores[d]) < score_threshold:
            break
        mask = [p for p in panoptic if _inside(boxes[d], *p) and argmax[p] == int(labels[d])]
        if not mask:
            continue
        intersect = sum(1 for p in mask if panoptic[p] > 0)
        if intersect * 1.0 / len(mask) > overlap_threshold:
            continue
        for p in mask:
            if panoptic[p] == 0:
                panoptic[p] = d + 1
    owner = {}
    for p, d in panoptic.items():
        if d > 0:
            owner[p] = ("thing", int(labels[d - 1]), d)
        elif argmax[p] not in things:
            owner[p] = ("stuff", argmax[p])
        else:
            owner[p] = None
    return _finish(owner, category_ids, stuff_area_threshold)


def reference_center_vote(logits, centers, things, category_ids, vote_window, nms_kernel, min_votes, top_k,
                          stuff_area_threshold):
    """One image: logits (C, H, W), centers (2, H, W)."""
    _, h, w = logits.shape
    argmax = {(i, j): _argmax(logits, i, j) for i in range(h) for j in range(w)}
    voted = {}
    counts = np.zeros((h, w), np.int64)
    for (i, j), a in argmax.items():
        if a in things:
            x = F32(F32(F32(j) + F32(0.5)) + F32(centers[0, i, j]))
            y = F32(F32(F32(i) + F32(0.5)) + F32(centers[1, i, j]))
            voted[i, j] = (x, y)
            cx, cy = math.floor(x), math.floor(y)
            if 0 <= cx < w and 0 <= cy < h:
                counts[cy, cx] += 1
    r = vote_window // 2
    votes = {(i, j): sum(int(counts[a, b]) for a in range(i - r, i + r + 1) for b in range(j - r, j + r + 1)
                         if 0 <= a < h and 0 <= b < w) for i in range(h) for j in range(w)}

    def rank_key(p):  # higher votes first, then lower row-major index
        return (votes[p], -(p[0] * w + p[1]))
    n = nms_kernel // 2
    peaks = []
    for (i, j), v in votes.items():
        window = [(a, b) for a in range(i - n, i + n + 1) for b in range(j - n, j + n + 1) if 0 <= a < h and 0 <= b < w]
        if v >= min_votes and all(rank_key((i, j)) >= rank_key(q) for q in window):
            peaks.append((i, j))
    centres = sorted(peaks, key=rank_key, reverse=True)[:top_k]
    members = {}
    for p, (x, y) in voted.items():
        if not centres:
            break
        best, best_d = None, None
        for rank, (ci, cj) in enumerate(centres):
            dx = F32(x - F32(F32(cj) + F32(0.5)))
            dy = F32(y - F32(F32(ci) + F32(0.5)))
            d = F32(F32(dx * dx) + F32(dy * dy))
            if best_d is None or d < best_d:
                best, best_d = rank, d
        members.setdefault(best, []).append(p)
    owner = {p: (None if a in things else ("stuff", a)) for p, a in argmax.items()}
    for rank, pixels in members.items():
        tally = {}
        for p in pixels:
            tally[argmax[p]] = tally.get(argmax[p], 0) + 1
        cls = min(tally, key=lambda c: (-tally[c], c))
        for p in pixels:
            owner[p] = ("thing", cls, rank + 1)
    return _finish(owner, category_ids, stuff_area_threshold)
