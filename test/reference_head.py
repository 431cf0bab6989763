"""Slow reference of the panoptic head, written from the text of the paper and of head.py's docstring.

Plain numpy and Python loops over pixels and detections, one image at a time, nothing clever: it builds the
Y vector of every pixel literally and takes ``np.argmax`` of it. All arithmetic is float32 like the head's,
so the two agree exactly, ties included. ``events`` counts which corner cases a run actually exercised.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

F32 = np.float32
VOID_TRAIN_ID = 255
OFFSET = 1000


def _inside(box, cx, cy) -> bool:
    x1, y1, x2, y2 = (F32(v) for v in box)
    return bool(x1 <= cx < x2 and y1 <= cy < y2)


def _pick(candidates, policy, boxes, scores, centers, i, j, cx, cy, events):
    """The winner among same-class detections holding the pixel; ties keep the lower index."""
    def better(a, b):  # is detection a strictly better than b?
        if policy == "highest_confidence":
            ka, kb = F32(scores[a]), F32(scores[b])
            if ka == kb:
                events["policy_tie"] += 1
            return ka > kb
        if policy == "smallest_first":
            ka, kb = (F32(F32(boxes[d][2]) - F32(boxes[d][0])) * F32(F32(boxes[d][3]) - F32(boxes[d][1]))
                      for d in (a, b))
            if ka == kb:
                events["policy_tie"] += 1
            return ka < kb
        voted_x = F32(cx + F32(centers[0, i, j]))
        voted_y = F32(cy + F32(centers[1, i, j]))
        dist = []
        for d in (a, b):
            x1, y1, x2, y2 = (F32(v) for v in boxes[d])
            dx = F32(voted_x - F32((x1 + x2) / F32(2)))
            dy = F32(voted_y - F32((y1 + y2) / F32(2)))
            dist.append(F32(F32(dx * dx) + F32(dy * dy)))
        if dist[0] == dist[1]:
            events["policy_tie"] += 1
        return dist[0] < dist[1]

    best = candidates[0]
    for d in candidates[1:]:
        ties_before = events["policy_tie"]
        if better(d, best):
            best = d
        elif events["policy_tie"] > ties_before and tuple(boxes[d]) != tuple(boxes[best]):
            events["policy_tie_distinct_boxes"] += 1  # a real tie, not a duplicate box
    return best


def reference_head(logits, boxes, labels, scores, valid, centers, thing_train_ids, stuff_train_ids,
                   category_ids, policy, unknown, stuff_area_threshold, events: Counter | None = None):
    """One image: logits (C, H, W) float32, boxes (K, 4), labels/scores/valid (K,), centers (2, H, W) or None.

    Returns ids (H, W) int32 and semantic (H, W) uint8 train ids (255 void).
    """
    events = Counter() if events is None else events
    num_classes, height, width = logits.shape
    things = set(int(t) for t in thing_train_ids)
    stuff = sorted(int(s) for s in stuff_train_ids)
    num_dets = len(boxes)
    # What each pixel gets after the argmax over Y: ("stuff", train id) / ("det", index) / ("void", None)
    owner = {}
    for i in range(height):
        for j in range(width):
            cx, cy = F32(F32(j) + F32(0.5)), F32(F32(i) + F32(0.5))
            by_class = {}
            for d in range(num_dets):
                if valid[d] and _inside(boxes[d], cx, cy):
                    by_class.setdefault(int(labels[d]), []).append(d)
            winners = {}
            for c, candidates in by_class.items():
                if len(candidates) > 1:
                    events["same_class_overlap"] += 1
                winners[c] = _pick(candidates, policy, boxes, scores, centers, i, j, cx, cy, events)
            y = [logits[s, i, j] for s in stuff]
            for d in range(num_dets):
                keep = valid[d] and winners.get(int(labels[d])) == d
                y.append(logits[int(labels[d]), i, j] if keep else F32(-np.inf))
            y = np.array(y, dtype=logits.dtype)
            best = int(np.argmax(y))
            if int((y == y[best]).sum()) > 1:
                events["y_tie"] += 1
            owner[i, j] = ("stuff", stuff[best]) if best < len(stuff) else ("det", best - len(stuff))
            semantic_argmax = int(np.argmax(logits[:, i, j]))
            if semantic_argmax in things:
                kind, what = owner[i, j]
                matched = kind == "det" and int(labels[what]) == semantic_argmax
                if not matched:
                    events["thing_argmax_unclaimed"] += 1
                    if kind == "det":
                        events["thing_argmax_in_other_class_det"] += 1
                    if unknown:
                        owner[i, j] = ("void", None)
    area = Counter(what for kind, what in owner.values() if kind == "stuff")
    for key, (kind, what) in owner.items():
        if kind == "stuff" and area[what] < stuff_area_threshold:
            events["small_stuff_voided"] += 1
            owner[key] = ("void", None)
    ids = np.zeros((height, width), dtype=np.int32)
    semantic = np.full((height, width), VOID_TRAIN_ID, dtype=np.uint8)
    for (i, j), (kind, what) in owner.items():
        if kind == "stuff":
            ids[i, j] = int(category_ids[what]) * OFFSET
            semantic[i, j] = what
        elif kind == "det":
            train = int(labels[what])
            ids[i, j] = int(category_ids[train]) * OFFSET + what + 1
            semantic[i, j] = train
            events["det_pixels"] += 1
        else:
            events["void_pixels"] += 1
    return ids, semantic


def reference_segments(ids, scores, thing_category_ids):
    """(id, category, is_thing, area, (x, y, w, h), score) of every non-void id, sorted by id, by loops."""
    pixels = {}
    for i in range(ids.shape[0]):
        for j in range(ids.shape[1]):
            if ids[i, j] != 0:
                pixels.setdefault(int(ids[i, j]), []).append((i, j))
    out = []
    for seg_id in sorted(pixels):
        rows = [p[0] for p in pixels[seg_id]]
        cols = [p[1] for p in pixels[seg_id]]
        category = seg_id // OFFSET
        is_thing = category in thing_category_ids
        score = float(scores[seg_id % OFFSET - 1]) if is_thing else 1.0
        bbox = (min(cols), min(rows), max(cols) - min(cols) + 1, max(rows) - min(rows) + 1)
        out.append((seg_id, category, is_thing, len(rows), bbox, score))
    return out
