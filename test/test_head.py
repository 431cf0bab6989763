"""PanopticHead against the loop reference (test/reference_head.py), hand-made cases, export, segment tables."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from panoptic_ros.head import (COCO_REFERENCE_AREA, POLICIES, PanopticHead, coco_segments_info,
                               scale_stuff_area_threshold, segments_from_output)
from panoptic_ros.panoptic import semantic_from_ids
from panoptic_ros.taxonomy import Category, Taxonomy

from reference_head import reference_head, reference_segments

CITYSCAPES = Taxonomy.cityscapes()
# Small taxonomy with interleaved thing train ids and non-contiguous category ids: few classes, many ties.
SMALL = Taxonomy([Category(7, 0, "road", (1, 1, 1), False), Category(24, 1, "person", (2, 2, 2), True),
                  Category(8, 2, "sidewalk", (3, 3, 3), False), Category(26, 3, "car", (4, 4, 4), True),
                  Category(27, 4, "truck", (5, 5, 5), True), Category(23, 5, "sky", (6, 6, 6), False)], "small")
ROAD, SIDEWALK, SKY, PERSON, CAR = (CITYSCAPES.train_id(n) for n in ("road", "sidewalk", "sky", "person", "car"))
pytestmark = pytest.mark.filterwarnings("ignore:index_reduce")  # beta-API notice, see head.py
CASES_PER_SETTING = 55  # x 6 (policy, unknown) settings = 330 random cases


def random_case(seed: int) -> dict:
    """Small random inputs built to hit ties, borders, duplicates, empty and garbage padding often."""
    rng = np.random.default_rng(seed)
    tax = SMALL if rng.random() < 0.7 else CITYSCAPES
    b, h, w = int(rng.integers(1, 3)), int(rng.integers(3, 10)), int(rng.integers(3, 13))
    k = int(rng.choice([0, 1, 2, 3, 4, 6, 8]))
    c = tax.num_classes
    if rng.random() < 0.6:
        logits = rng.integers(0, 3, (b, c, h, w)).astype(np.float32)  # exact ties everywhere
    else:
        logits = rng.normal(size=(b, c, h, w)).astype(np.float32)
    things = tax.thing_train_ids
    classes = things if rng.random() < 0.6 else things[:1]  # one class only: many same-class overlaps
    boxes = np.zeros((b, k, 4), np.float32)
    labels = rng.choice(classes, (b, k)).astype(np.int64)
    grid = rng.choice([1, 2])
    events = Counter()
    for bi in range(b):
        for d in range(k):
            mode = rng.choice(["random", "random", "copy", "shifted", "image", "degenerate", "nested"])
            source = rng.integers(0, max(d, 1))
            if mode in ("copy", "shifted") and d > 0 and rng.random() < 0.7:
                labels[bi, d] = labels[bi, source]
            if mode == "copy" and d > 0:
                boxes[bi, d] = boxes[bi, source]
            elif mode == "shifted" and d > 0:  # same area, other centre: area and distance ties
                shift = rng.choice([-4, -2, -1, 1, 2, 4])
                boxes[bi, d] = boxes[bi, source] + ([shift, 0] * 2 if rng.random() < 0.5 else [0, shift] * 2)
            elif mode == "image":
                boxes[bi, d] = [0, 0, w, h] if rng.random() < 0.5 else [-1.5, -2, w + 2, h + 0.5]
            elif mode == "degenerate":
                x, y = rng.integers(0, 2 * w) / 2, rng.integers(0, 2 * h) / 2
                boxes[bi, d] = [x, y, x - rng.integers(0, 3) / 2, y + 1]
            elif mode == "nested" and d > 0:
                x1, y1, x2, y2 = boxes[bi, rng.integers(0, d)]
                boxes[bi, d] = [x1 + 0.5, y1, max(x1 + 0.5, x2 - 1), y2]
            else:  # half-pixel grid: edges often fall exactly on pixel centres; integer grid: distance ties
                xs = np.sort(rng.integers(-6, 2 * w + 6, 2)) / grid
                ys = np.sort(rng.integers(-6, 2 * h + 6, 2)) / grid
                boxes[bi, d] = [xs[0], ys[0], xs[1], ys[1]]
    scores = rng.choice(np.array([0.25, 0.5, 0.5, 0.75, 0.9], np.float32), (b, k))
    valid = rng.random((b, k)) < 0.8
    if rng.random() < 0.1:
        valid[:] = False
    if rng.random() < 0.5:  # detected class often (not always) strong in its box, as from a trained net
        for bi, d in zip(*np.nonzero(valid)):
            x1, y1, x2, y2 = np.clip(np.round(boxes[bi, d]).astype(int), 0, [w, h, w, h])
            logits[bi, labels[bi, d], y1:y2, x1:x2] += 1
    logits[rng.random(logits.shape) < 0.02] = -np.inf
    # Garbage in the padding must not matter.
    labels[~valid] = rng.choice([-1, 0, 2, 999], int((~valid).sum()))
    boxes[~valid] = np.where(rng.random((int((~valid).sum()), 4)) < 0.5, np.nan, 1e9)
    scores[~valid] = np.nan
    # Offsets on a coarse grid, often zero: equal distances to different box centres happen.
    centers = (rng.integers(-4, 5, (b, 2, h, w)) / rng.choice([1, 2])).astype(np.float32)
    centers *= rng.random() < 0.7
    x1, y1, x2, y2 = np.moveaxis(boxes, -1, 0)
    events["border_box"] += int((valid & ((x1 < 0) | (y1 < 0) | (x2 > w) | (y2 > h))).sum())
    events["no_valid_detection"] += int((~valid.any(1)).sum())
    for bi in range(b):
        vb = [tuple(boxes[bi, d]) + (labels[bi, d],) for d in range(k) if valid[bi, d]]
        events["identical_same_class_boxes"] += len(vb) - len(set(vb))
    return dict(tax=tax, logits=logits, boxes=boxes, labels=labels, scores=scores, valid=valid,
                centers=centers, threshold=int(rng.choice([0, 0, 1, 4, 12])), events=events)


def run_fast(head: PanopticHead, case: dict):
    ids, sem = head(torch.from_numpy(case["logits"]), torch.from_numpy(case["boxes"]),
                    torch.from_numpy(case["labels"]), torch.from_numpy(case["scores"]),
                    torch.from_numpy(case["valid"]), torch.from_numpy(case["centers"]))
    return ids.numpy(), sem.numpy()


@pytest.fixture(scope="module")
def random_results():
    """Every (policy, unknown) setting on its own random cases: mismatches per setting and the events."""
    mismatches = {}
    events = {policy: Counter() for policy in POLICIES}
    for s, (policy, unknown) in enumerate((p, u) for p in POLICIES for u in (True, False)):
        bad = []
        for n in range(CASES_PER_SETTING):
            seed = 1000 * s + n
            case = random_case(seed)
            tax = case["tax"]
            events[policy].update(case["events"])
            head = PanopticHead.from_taxonomy(tax, policy=policy, unknown=unknown,
                                              stuff_area_threshold=case["threshold"])
            ids, sem = run_fast(head, case)
            thing_cats = set(tax.ids[tax.thing_train_ids].tolist())
            for bi in range(len(ids)):
                ref_ids, ref_sem = reference_head(
                    case["logits"][bi], case["boxes"][bi], case["labels"][bi], case["scores"][bi],
                    case["valid"][bi], case["centers"][bi], tax.thing_train_ids, tax.stuff_train_ids, tax.ids,
                    policy, unknown, case["threshold"], events[policy])
                fast_segments = [(g.id, g.category_id, g.is_thing, g.area, g.bbox, g.score)
                                 for g in segments_from_output(ids[bi], case["scores"][bi], tax)]
                ref_segments = reference_segments(ref_ids, case["scores"][bi], thing_cats)
                if not (np.array_equal(ids[bi], ref_ids) and np.array_equal(sem[bi], ref_sem)
                        and np.array_equal(sem[bi], semantic_from_ids(ids[bi], tax))
                        and fast_segments == ref_segments):
                    bad.append((seed, bi))
                events[policy]["images"] += 1
        mismatches[policy, unknown] = bad
    return mismatches, events


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("unknown", [True, False])
def test_fast_head_equals_reference_on_random_cases(random_results, policy, unknown):
    mismatches, _ = random_results
    assert mismatches[policy, unknown] == [], f"(seed, image) differing from the reference: {mismatches}"


def test_random_cases_cover_the_corner_cases(random_results):
    _, events = random_results
    total = sum(events.values(), Counter())
    print({policy: dict(e) for policy, e in events.items()})
    assert total["images"] >= 300
    for name, minimum in [("border_box", 100), ("no_valid_detection", 20), ("identical_same_class_boxes", 20),
                          ("y_tie", 500), ("thing_argmax_unclaimed", 200), ("thing_argmax_in_other_class_det", 20),
                          ("small_stuff_voided", 50), ("det_pixels", 1000), ("void_pixels", 500)]:
        assert total[name] >= minimum, f"only {total[name]} {name} events"
    for policy in POLICIES:  # equal scores / equal areas / equal distances between competing boxes
        assert events[policy]["same_class_overlap"] >= 300 and events[policy]["policy_tie_distinct_boxes"] >= 20, \
            events[policy]


@pytest.mark.parametrize("policy", POLICIES)
def test_torch_ops_path_equals_the_numpy_path(monkeypatch, policy):
    """Eager CPU inference compares through numpy (numpy_ops); traced, compiled and GPU runs keep the torch
    ops. Both give the same ids and semantic on the random cases (ties, -inf, garbage padding)."""
    import panoptic_ros.head as head_module
    import panoptic_ros.numpy_ops as numpy_ops

    cases = [random_case(7000 + n) for n in range(40)]
    heads = [PanopticHead.from_taxonomy(c["tax"], policy=policy, unknown=n % 2 == 0, stuff_area_threshold=c["threshold"])
             for n, c in enumerate(cases)]
    with_numpy = [run_fast(head, case) for head, case in zip(heads, cases)]
    for module in (head_module, numpy_ops):
        monkeypatch.setattr(module, "eager_cpu", lambda *tensors: False)
    for head, case, (ids, sem) in zip(heads, cases, with_numpy):
        torch_ids, torch_sem = run_fast(head, case)
        assert np.array_equal(ids, torch_ids) and np.array_equal(sem, torch_sem)


@pytest.mark.parametrize("policy", POLICIES)
def test_fast_head_equals_reference_on_larger_images(policy):
    """Images with more pixel lines than 2K + 1 take the cut-at-box-edges path with many cells per axis."""
    for seed in range(1):
        rng = np.random.default_rng(seed)
        h, w, k = 24, 40, 10
        centre = rng.uniform([-4, -4], [w + 4, h + 4], (1, k, 2))
        half = rng.uniform(2, 14, (1, k, 2))
        boxes = np.round(np.concatenate([centre - half, centre + half], -1) * 2).astype(np.float32) / 2
        boxes[0, 5:7] = boxes[0, 3]  # duplicates
        labels = rng.choice(CITYSCAPES.thing_train_ids[:2], (1, k))
        logits = rng.integers(0, 4, (1, CITYSCAPES.num_classes, h, w)).astype(np.float32)
        scores = rng.choice(np.array([0.5, 0.8], np.float32), (1, k))
        valid = rng.random((1, k)) < 0.9
        for d in range(k):  # the detected class is strong in its box, as from a trained network
            x1, y1, x2, y2 = np.clip(np.round(boxes[0, d]).astype(int), 0, [w, h, w, h])
            logits[0, labels[0, d], y1:y2, x1:x2] += 2
        centers = (rng.integers(-6, 7, (1, 2, h, w)) / 2).astype(np.float32)
        for unknown in (True, False):
            head = PanopticHead.from_taxonomy(CITYSCAPES, policy=policy, unknown=unknown, stuff_area_threshold=30)
            ids, sem = run_fast(head, dict(logits=logits, boxes=boxes, labels=labels, scores=scores, valid=valid,
                                           centers=centers))
            ref_ids, ref_sem = reference_head(logits[0], boxes[0], labels[0], scores[0], valid[0], centers[0],
                                              CITYSCAPES.thing_train_ids, CITYSCAPES.stuff_train_ids, CITYSCAPES.ids,
                                              policy, unknown, 30)
            assert np.array_equal(ids[0], ref_ids) and np.array_equal(sem[0], ref_sem), (seed, unknown)
            assert len(np.unique(ids[0] % 1000)) > 3  # several detections kept pixels


# -- hand-made cases -------------------------------------------------------------------------------------
def scene(h=4, w=12, **channel_values):
    """Cityscapes logits (1, 19, h, w): 0 everywhere, given channels set to constants."""
    logits = torch.zeros(1, CITYSCAPES.num_classes, h, w)
    for name, value in channel_values.items():
        logits[0, CITYSCAPES.train_id(name.replace("_", " "))] = value
    return logits


def dets(boxes, labels, scores):
    k = len(boxes)
    return (torch.tensor([boxes], dtype=torch.float32).reshape(1, k, 4), torch.tensor([labels]).reshape(1, k),
            torch.tensor([scores], dtype=torch.float32).reshape(1, k), torch.ones(1, k, dtype=torch.bool))


def instance_columns(ids):
    """Instance number of each column of row 0."""
    return (ids[0, 0] % 1000).tolist()


# Two cars: detection 0 is larger and more confident, detection 1 smaller; they overlap in columns 5..8.
TWO_CARS = dets([[0, 0, 9, 4], [5, 0, 12, 4]], [CAR, CAR], [0.9, 0.6])


@pytest.mark.parametrize("policy, expected", [
    ("highest_confidence", [1] * 9 + [2] * 3),
    ("smallest_first", [1] * 5 + [2] * 7),
    # Zero offsets: the box centres are x = 4.5 and 8.5; column 6 (centre 6.5) is a tie -> lower index.
    ("closest_center", [1] * 7 + [2] * 5),
])
def test_same_class_overlap_follows_the_policy(policy, expected):
    head = PanopticHead.from_taxonomy(CITYSCAPES, policy=policy, stuff_area_threshold=0)
    ids, sem = head(scene(car=5.0, road=1.0), *TWO_CARS, centers=torch.zeros(1, 2, 4, 12))
    assert instance_columns(ids) == expected
    assert (ids // 1000 == 26).all() and (sem == CAR).all()


def test_closest_center_follows_the_predicted_offsets():
    # Every pixel of the overlap votes for the centre of detection 1 (x = 8.5): the overlap goes to it.
    centers = torch.zeros(1, 2, 4, 12)
    centers[0, 0, :, 5:9] = 8.5 - (torch.arange(5, 9) + 0.5)
    head = PanopticHead.from_taxonomy(CITYSCAPES, policy="closest_center", stuff_area_threshold=0)
    ids, _ = head(scene(car=5.0, road=1.0), *TWO_CARS, centers=centers)
    assert instance_columns(ids) == [1] * 5 + [2] * 7


@pytest.mark.parametrize("unknown", [True, False])
def test_false_detection_with_low_thing_logits_disappears(unknown):
    logits = scene(road=3.0, car=1.0)
    logits[0, CAR, :, 8:] = 6.0  # a real car on the right
    boxes, labels, scores, valid = dets([[1, 0, 6, 4], [8, 0, 12, 4]], [CAR, CAR], [0.99, 0.5])
    head = PanopticHead.from_taxonomy(CITYSCAPES, unknown=unknown, stuff_area_threshold=0)
    ids, _ = head(logits, boxes, labels, scores, valid, torch.zeros(1, 2, 4, 12))
    assert (ids[0, :, :8] == 7000).all()  # the confident false detection lost every pixel to road
    assert (ids[0, :, 8:] == 26002).all()
    segments = segments_from_output(ids[0], scores[0], CITYSCAPES)
    assert [(s.id, s.area, s.score) for s in segments] == [(7000, 32, 1.0), (26002, 16, 0.5)]


@pytest.mark.parametrize("unknown, expected", [(True, 0), (False, 7000)])
def test_thing_region_without_detection_is_unknown(unknown, expected):
    logits = scene(road=2.0, sidewalk=1.0)
    logits[0, CAR, :, :4] = 5.0
    boxes, labels, scores, _ = dets([[0, 0, 4, 4]], [CAR], [0.9])
    head = PanopticHead.from_taxonomy(CITYSCAPES, unknown=unknown, stuff_area_threshold=0)
    ids, sem = head(logits, boxes, labels, scores, torch.zeros(1, 1, dtype=torch.bool), torch.zeros(1, 2, 4, 12))
    assert (ids[0, :, :4] == expected).all() and (ids[0, :, 4:] == 7000).all()
    assert (sem[0, :, :4] == (255 if unknown else ROAD)).all()


@pytest.mark.parametrize("unknown, expected", [(True, 0), (False, 26001)])
def test_thing_pixel_taken_by_a_detection_of_another_class(unknown, expected):
    # Semantic says person everywhere (5 > car 4 > road 2), the only box is a car: Y's argmax is the car.
    logits = scene(road=2.0, car=4.0, person=5.0)
    head = PanopticHead.from_taxonomy(CITYSCAPES, unknown=unknown, stuff_area_threshold=0)
    ids, _ = head(logits, *dets([[0, 0, 12, 4]], [CAR], [0.9]), torch.zeros(1, 2, 4, 12))
    assert (ids == expected).all()


@pytest.mark.parametrize("threshold, sky_id", [(3, 0), (2, 23000)])
def test_small_stuff_becomes_void(threshold, sky_id):
    logits = scene(road=1.0)
    logits[0, SKY, 0, :2] = 2.0  # two sky pixels
    head = PanopticHead.from_taxonomy(CITYSCAPES, stuff_area_threshold=threshold)
    ids, sem = head(logits, torch.zeros(1, 0, 4), torch.zeros(1, 0, dtype=torch.int64), torch.zeros(1, 0),
                    torch.zeros(1, 0, dtype=torch.bool), torch.zeros(1, 2, 4, 12))  # K = 0 detections
    assert ids[0, 0, :2].tolist() == [sky_id] * 2 and (ids[0, 1:] == 7000).all()
    assert sem[0, 0, 0] == (255 if sky_id == 0 else SKY)


# -- export ----------------------------------------------------------------------------------------------
def random_inputs(seed, k=6, h=16, w=24):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(1, k, 2, generator=g) * torch.tensor([w, h])
    wh = torch.rand(1, k, 2, generator=g) * torch.tensor([w, h]) / 2 + 1
    boxes = torch.cat([xy - wh / 2, xy + wh / 2], -1)
    labels = torch.tensor(CITYSCAPES.thing_train_ids)[torch.randint(0, 3, (1, k), generator=g)]
    return (torch.randn(1, CITYSCAPES.num_classes, h, w, generator=g), boxes, labels, torch.rand(1, k, generator=g),
            torch.rand(1, k, generator=g) < 0.8, torch.randn(1, 2, h, w, generator=g) * 3)


@pytest.mark.parametrize("policy", POLICIES)
def test_strict_export_matches_eager(policy):
    head = PanopticHead.from_taxonomy(CITYSCAPES, policy=policy, stuff_area_threshold=20).eval()
    program = torch.export.export(head, random_inputs(0), strict=True)  # strict: fails on any graph break
    for seed in (1, 2, 3):  # other data, other pair counts, same shapes
        inputs = random_inputs(seed)
        for got, want in zip(program.module()(*inputs), head(*inputs)):
            assert got.dtype == want.dtype and torch.equal(got, want)


# -- API details -----------------------------------------------------------------------------------------
def test_bad_input_raises_clear_errors():
    head = PanopticHead.from_taxonomy(CITYSCAPES)
    logits, boxes, labels, scores, valid, centers = random_inputs(0)
    with pytest.raises(ValueError, match="needs the centers"):
        head(logits, boxes, labels, scores, valid)
    with pytest.raises(ValueError, match="thing train ids"):
        head(logits, boxes, torch.full_like(labels, ROAD), scores, torch.ones_like(valid), centers)
    with pytest.raises(ValueError, match="semantic_logits must be"):
        head(logits[:, :5], boxes, labels, scores, valid, centers)
    with pytest.raises(ValueError, match="NaN"):
        head(logits * float("nan"), boxes, labels, scores, valid, centers)
    with pytest.raises(ValueError, match="policy"):
        PanopticHead.from_taxonomy(CITYSCAPES, policy="largest")
    with pytest.raises(ValueError, match="split the train ids"):
        PanopticHead([11, 12], [0, 1], CITYSCAPES.ids)


def test_unchecked_values_give_the_same_output_and_shapes_are_still_checked():
    checked = PanopticHead.from_taxonomy(CITYSCAPES)
    unchecked = PanopticHead.from_taxonomy(CITYSCAPES, check_values=False)
    inputs = random_inputs(6)
    for got, want in zip(unchecked(*inputs), checked(*inputs)):
        assert torch.equal(got, want)
    logits, boxes, labels, scores, valid, centers = inputs
    unchecked(logits * float("nan"), boxes, labels, scores, valid, centers)  # the caller's job now: no error
    with pytest.raises(ValueError, match="semantic_logits must be"):
        unchecked(logits[:, :5], boxes, labels, scores, valid, centers)


def test_batch_images_are_independent():
    head = PanopticHead.from_taxonomy(CITYSCAPES, stuff_area_threshold=10)
    a, b = random_inputs(4), random_inputs(5)
    ids, sem = head(*(torch.cat([x, y]) for x, y in zip(a, b)))
    assert torch.equal(ids[1:], head(*b)[0]) and torch.equal(sem[:1], head(*a)[1])
    assert ids.dtype == torch.int32 and sem.dtype == torch.uint8


def test_segments_and_coco_segments_info():
    head = PanopticHead.from_taxonomy(CITYSCAPES, stuff_area_threshold=0)
    ids, _ = head(scene(car=5.0, road=1.0), *TWO_CARS, torch.zeros(1, 2, 4, 12))
    segments = segments_from_output(ids[0], TWO_CARS[2][0], CITYSCAPES)
    assert [(s.id, s.is_thing, s.area, s.bbox) for s in segments] == [(26001, True, 28, (0, 0, 7, 4)),
                                                                       (26002, True, 20, (7, 0, 5, 4))]
    assert [s.score for s in segments] == pytest.approx([0.9, 0.6])
    assert coco_segments_info(segments)[1] == {"id": 26002, "category_id": 26, "area": 20, "bbox": [7, 0, 5, 4],
                                                "iscrowd": 0}
    with pytest.raises(ValueError, match="no detection"):
        segments_from_output(ids[0], TWO_CARS[2][0][:1], CITYSCAPES)


def test_stuff_threshold_scales_with_image_area():
    assert scale_stuff_area_threshold(480, 640) == 4096 and COCO_REFERENCE_AREA == 640 * 480
    assert scale_stuff_area_threshold(512, 1024) == 6991
    assert scale_stuff_area_threshold(128, 256) == 437
    with pytest.raises(ValueError):
        scale_stuff_area_threshold(0, 10)


def test_signed_zero_logits_tie_between_classes_goes_to_the_lower_index():
    # Car (detection 0) at -0.0 and person (detection 1) at +0.0 compare equal: Y's first maximum is the lower
    # detection index, whatever the sign bit (the head orders logits through their bits).
    logits = torch.full((1, CITYSCAPES.num_classes, 4, 12), -1.0)
    logits[0, CAR] = -0.0
    logits[0, PERSON] = 0.0
    head = PanopticHead.from_taxonomy(CITYSCAPES, unknown=False, stuff_area_threshold=0)
    ids, _ = head(logits, *dets([[0, 0, 12, 4], [0, 0, 12, 4]], [CAR, PERSON], [0.5, 0.9]), torch.zeros(1, 2, 4, 12))
    assert (ids == 26001).all()
    ids, _ = head(logits, *dets([[0, 0, 12, 4], [0, 0, 12, 4]], [PERSON, CAR], [0.5, 0.9]), torch.zeros(1, 2, 4, 12))
    assert (ids == 24001).all()


def test_segment_table_of_unknown_categories_is_an_error():
    ids = np.full((4, 6), 7000, np.int32)
    ids[0, 0] = 5000  # category 5 is not in the Cityscapes taxonomy
    with pytest.raises(ValueError, match="unknown category"):
        segments_from_output(ids, np.zeros(0, np.float32), CITYSCAPES)
    ids[0, 0] = 0
    assert [(s.id, s.area, s.bbox) for s in segments_from_output(ids, np.zeros(0), CITYSCAPES)] == \
        [(7000, 23, (0, 0, 6, 4))]


def test_segment_table_by_counting_equals_the_general_one_on_random_maps():
    from panoptic_ros.panoptic import segments_from_ids

    rng = np.random.default_rng(5)
    for trial in range(40):
        tax = CITYSCAPES if trial % 2 else SMALL
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        cats = rng.choice(list(tax.ids) + [0], (h, w))
        is_thing = tax.is_thing[np.minimum(tax.id_to_train[cats], tax.num_classes - 1)] & (cats > 0)
        instance = rng.integers(1, 1000 if trial % 3 else 4, (h, w)) * is_thing  # things 1..999, stuff 0
        ids = np.where(cats > 0, cats * 1000 + instance, 0).astype(np.int32)
        scores = rng.random(999).astype(np.float32)
        got = segments_from_output(ids, scores, tax)
        want = segments_from_ids(ids, tax)
        assert [(s.id, s.category_id, s.is_thing, s.area, s.bbox) for s in got] == \
            [(s.id, s.category_id, s.is_thing, s.area, s.bbox) for s in want]
        assert all(s.score == pytest.approx(scores[s.id % 1000 - 1]) for s in got if s.is_thing)
    for bad in (-1, 5000, 300 * 1000, 7):  # negative, unknown category, past every category, void + instance
        ids = np.full((3, 4), 7000, np.int32)
        ids[1, 2] = bad
        with pytest.raises(ValueError):
            segments_from_output(ids, np.zeros(3, np.float32), CITYSCAPES)
