"""The deterministic fusions against their loop references (test/reference_fusions.py), hand-made cases,
export, and the fusion registry / checkpoint check."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from panoptic_ros.fusion import (FUSIONS, TRAINABLE, FusionMismatch, build_fusion, check_fusion)
from panoptic_ros.fusion.center_vote import CenterVoteFusion
from panoptic_ros.fusion.heuristic import HeuristicFusion
from panoptic_ros.head import PanopticHead
from panoptic_ros.panoptic import semantic_from_ids
from panoptic_ros.taxonomy import Category, Taxonomy

from reference_fusions import reference_center_vote, reference_heuristic

CITYSCAPES = Taxonomy.cityscapes()
SMALL = Taxonomy([Category(7, 0, "road", (1, 1, 1), False), Category(24, 1, "person", (2, 2, 2), True),
                  Category(8, 2, "sidewalk", (3, 3, 3), False), Category(26, 3, "car", (4, 4, 4), True),
                  Category(27, 4, "truck", (5, 5, 5), True), Category(23, 5, "sky", (6, 6, 6), False)], "small")
CASES = 120


def random_inputs(seed: int) -> dict:
    """Small random inputs with logit ties, overlapping / duplicate / border boxes, garbage padding, and
    offsets on a coarse grid (votes pile up in a few cells, so peaks, plateaus and distance ties happen)."""
    rng = np.random.default_rng(seed)
    tax = SMALL if rng.random() < 0.7 else CITYSCAPES
    b, h, w = int(rng.integers(1, 3)), int(rng.integers(3, 11)), int(rng.integers(3, 13))
    k = int(rng.choice([0, 1, 3, 5, 8]))
    c = tax.num_classes
    logits = (rng.integers(0, 3, (b, c, h, w)) if rng.random() < 0.5 else rng.normal(size=(b, c, h, w)))
    logits = logits.astype(np.float32)
    things = tax.thing_train_ids
    logits[:, things] += rng.random() * 1.5  # more thing pixels
    xs = np.sort(rng.integers(-4, 2 * w + 4, (b, k, 2)), -1) / 2
    ys = np.sort(rng.integers(-4, 2 * h + 4, (b, k, 2)), -1) / 2
    boxes = np.stack([xs[..., 0], ys[..., 0], xs[..., 1], ys[..., 1]], -1).astype(np.float32)
    if k > 1 and rng.random() < 0.5:
        boxes[:, 1] = boxes[:, 0]  # duplicate box
    labels = rng.choice(things if rng.random() < 0.6 else things[:1], (b, k)).astype(np.int64)
    scores = rng.choice(np.array([0.3, 0.5, 0.5, 0.75, 0.9], np.float32), (b, k))
    valid = rng.random((b, k)) < 0.8
    labels[~valid] = -7
    boxes[~valid] = np.nan
    scores[~valid] = np.nan
    centers = (rng.integers(-6, 7, (b, 2, h, w)) / 2).astype(np.float32)
    return dict(tax=tax, logits=logits, boxes=boxes, labels=labels, scores=scores, valid=valid, centers=centers)


def _torch(case):
    return (torch.from_numpy(case["logits"]), torch.from_numpy(case["boxes"]), torch.from_numpy(case["labels"]),
            torch.from_numpy(case["scores"]), torch.from_numpy(case["valid"]), torch.from_numpy(case["centers"]))


@pytest.mark.parametrize("seed", range(CASES))
def test_heuristic_matches_reference(seed):
    case = random_inputs(seed)
    rng = np.random.default_rng(seed + 10_000)
    overlap, score_thr, area = float(rng.choice([0.0, 0.5, 1.0])), float(rng.choice([0.0, 0.5])), int(rng.integers(0, 6))
    tax = case["tax"]
    fusion = HeuristicFusion(tax, overlap_threshold=overlap, score_threshold=score_thr, stuff_area_threshold=area)
    ids, semantic = fusion(*_torch(case))
    assert ids.dtype == torch.int32 and semantic.dtype == torch.uint8
    for bi in range(len(case["logits"])):
        want_ids, want_sem = reference_heuristic(
            case["logits"][bi], case["boxes"][bi], case["labels"][bi], case["scores"][bi], case["valid"][bi],
            set(tax.thing_train_ids.tolist()), tax.ids, overlap, score_thr, area)
        np.testing.assert_array_equal(ids[bi].numpy(), want_ids)
        np.testing.assert_array_equal(semantic[bi].numpy(), want_sem)
        np.testing.assert_array_equal(semantic_from_ids(ids[bi].numpy(), tax), want_sem)


@pytest.mark.parametrize("seed", range(CASES))
def test_center_vote_matches_reference(seed):
    case = random_inputs(seed)
    rng = np.random.default_rng(seed + 20_000)
    window, kernel = int(rng.choice([1, 3])), int(rng.choice([1, 3, 5]))
    min_votes, top_k, area = int(rng.integers(1, 4)), int(rng.choice([1, 2, 50])), int(rng.integers(0, 6))
    tax = case["tax"]
    fusion = CenterVoteFusion(tax, vote_window=window, nms_kernel=kernel, min_votes=min_votes, top_k=top_k,
                              stuff_area_threshold=area)
    ids, semantic = fusion(*_torch(case))
    for bi in range(len(case["logits"])):
        want_ids, want_sem = reference_center_vote(case["logits"][bi], case["centers"][bi],
                                                   set(tax.thing_train_ids.tolist()), tax.ids, window, kernel,
                                                   min_votes, top_k, area)
        np.testing.assert_array_equal(ids[bi].numpy(), want_ids)
        np.testing.assert_array_equal(semantic[bi].numpy(), want_sem)


def _one_hot_logits(classes: np.ndarray, num_classes: int) -> torch.Tensor:
    logits = np.zeros((1, num_classes, *classes.shape), np.float32)
    for c in range(num_classes):
        logits[0, c][classes == c] = 5.0
    return torch.from_numpy(logits)


def test_heuristic_hand_made_overlap_and_score_order():
    """Two cars overlap: the higher score takes the shared pixels; a third box mostly inside the first is
    dropped (overlap 6/8 > 0.5); a person box where the argmax is car gets no mask; road stays road."""
    road, car, person = CITYSCAPES.train_id("road"), CITYSCAPES.train_id("car"), CITYSCAPES.train_id("person")
    classes = np.full((4, 8), road)
    classes[:, 0:6] = car
    logits = _one_hot_logits(classes, CITYSCAPES.num_classes)
    boxes = torch.tensor([[[2, 0, 6, 4], [0, 0, 4, 4], [1, 0, 4, 4], [6, 0, 8, 4]]], dtype=torch.float32)
    labels = torch.tensor([[car, car, car, person]])
    scores = torch.tensor([[0.6, 0.9, 0.7, 0.95]])
    ids, semantic = HeuristicFusion(CITYSCAPES)(logits, boxes, labels, scores, torch.ones(1, 4, dtype=torch.bool))
    car_id, road_id = 26 * 1000, 7 * 1000
    expected = np.full((4, 8), road_id)
    expected[:, 0:4] = car_id + 2  # detection 1 (score 0.9) first
    expected[:, 4:6] = car_id + 1  # detection 0 keeps its untaken half (overlap 0.5, not > 0.5)
    np.testing.assert_array_equal(ids[0].numpy(), expected)


def test_center_vote_hand_made_two_instances():
    """Two cars side by side whose pixels point to their own centres become two instances; a person pixel
    inside the left one takes the majority class car."""
    road, car, person = CITYSCAPES.train_id("road"), CITYSCAPES.train_id("car"), CITYSCAPES.train_id("person")
    h, w = 6, 12
    classes = np.full((h, w), road)
    classes[1:5, 1:5] = car
    classes[1:5, 7:11] = car
    classes[2, 2] = person
    centers = np.zeros((1, 2, h, w), np.float32)
    for i in range(h):
        for j in range(w):
            cx = 3.0 if j < 6 else 9.0  # box centres (3, 3) and (9, 3)
            centers[0, 0, i, j], centers[0, 1, i, j] = cx - (j + 0.5), 3.0 - (i + 0.5)
    fusion = CenterVoteFusion(CITYSCAPES, vote_window=1, nms_kernel=3, min_votes=4)
    ids, _ = fusion(_one_hot_logits(classes, CITYSCAPES.num_classes), centers=torch.from_numpy(centers))
    ids = ids[0].numpy()
    assert set(np.unique(ids[1:5, 1:5])) == {26001} and set(np.unique(ids[1:5, 7:11])) == {26002}
    assert (ids[classes == road] == 7000).all()


def test_center_vote_without_centres_voids_things():
    car = CITYSCAPES.train_id("car")
    classes = np.full((4, 4), car)
    ids, semantic = CenterVoteFusion(CITYSCAPES, min_votes=100)(
        _one_hot_logits(classes, CITYSCAPES.num_classes), centers=torch.zeros(1, 2, 4, 4))
    assert (ids == 0).all() and (semantic == 255).all()


@pytest.mark.parametrize("name", ["heuristic", "center_vote"])
def test_deterministic_fusions_export(name):
    from panoptic_ros.runtime.export import head_example_inputs

    fusion = build_fusion(name, SMALL, stuff_area_threshold=3, max_instances=10)
    example = head_example_inputs(fusion, SMALL.num_classes, SMALL.thing_train_ids, (16, 24), 6)
    program = torch.export.export(fusion.eval(), example, strict=True)
    for seed in range(3):
        inputs = head_example_inputs(fusion, SMALL.num_classes, SMALL.thing_train_ids, (16, 24), 6, seed=seed + 1)
        for got, want in zip(program.module()(*inputs), fusion(*inputs)):
            assert torch.equal(got, want)


@pytest.mark.parametrize("name", ["heuristic", "center_vote"])
def test_deterministic_fusions_onnx(name, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    from panoptic_ros.runtime.export import head_example_inputs

    fusion = build_fusion(name, SMALL, stuff_area_threshold=3, max_instances=10).eval()
    example = head_example_inputs(fusion, SMALL.num_classes, SMALL.thing_train_ids, (16, 24), 6)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(fusion, example, str(path), dynamo=True,
                      input_names=["semantic", "boxes", "labels", "scores", "valid", "centers"])
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = head_example_inputs(fusion, SMALL.num_classes, SMALL.thing_train_ids, (16, 24), 6, seed=5)
    names = [i.name for i in session.get_inputs()]
    feed = {n: t.numpy() for n, t in zip(["semantic", "boxes", "labels", "scores", "valid", "centers"], inputs)
            if n in names}
    got = session.run(None, feed)
    want = fusion(*inputs)
    np.testing.assert_array_equal(got[0], want[0].numpy())
    np.testing.assert_array_equal(got[1], want[1].numpy())


def test_registry_and_checkpoint_check():
    assert isinstance(build_fusion("parameter_free", SMALL), PanopticHead)
    for name in FUSIONS:
        assert build_fusion(name, SMALL) is not None
    with pytest.raises(ValueError, match="fusion must be one of"):
        build_fusion("magic", SMALL)
    check_fusion("heuristic", {})  # a plain checkpoint runs every deterministic fusion
    check_fusion("hps", {"fusion": "hps"})
    for name in TRAINABLE:
        with pytest.raises(FusionMismatch, match=f"fusion {name!r} does not fit"):
            check_fusion(name, {})
    with pytest.raises(FusionMismatch, match="trained for fusion 'hps_isi'"):
        check_fusion("parameter_free", {"fusion": "hps_isi"})


def test_fusion_choices_agree_everywhere():
    from panoptic_ros.evaluation.cli import build_parser
    from panoptic_ros.ros.params import SPEC_BY_NAME, NodeConfig

    assert SPEC_BY_NAME["fusion"].choices == FUSIONS
    assert NodeConfig.from_values({"fusion": "center_vote"}).fusion == "center_vote"
    with pytest.raises(ValueError, match="fusion='magic': choose one of"):
        NodeConfig.from_values({"fusion": "magic"})
    assert build_parser().parse_args(["model", "m.pt", "d", "--fusion", "hps"]).fusion == "hps"
