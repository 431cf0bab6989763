"""PanopticNet: shapes, targets, losses that learn, equivalence with torchvision's RetinaNet, checkpoints, export."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_iou

from model_samples import street_samples
from panoptic_ros.model.backbone import level_sizes
from panoptic_ros.model.checkpoint import CheckpointError, build_metadata, load_checkpoint, save_checkpoint
from panoptic_ros.model.network import PanopticNet
from panoptic_ros.model.targets import PanopticDataset, build_targets, collate
from panoptic_ros.taxonomy import VOID_TRAIN_ID, Taxonomy

TAXONOMY = Taxonomy.cityscapes()
THINGS = [int(t) for t in TAXONOMY.thing_train_ids]
SMALL = dict(backbone="resnet18", fpn_channels=32, head_channels=32)


def small_net(**kw) -> PanopticNet:
    torch.manual_seed(0)
    return PanopticNet.from_config(dict(SMALL, **kw), taxonomy=TAXONOMY)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50", "mobilenet_v3_large"])
def test_output_shapes(backbone):
    model = PanopticNet(19, THINGS, backbone=backbone, fpn_channels=32, head_channels=32).eval()
    h, w = 64, 160  # not a multiple of 128: sizes round up per level
    with torch.no_grad():
        out = model(torch.randn(2, 3, h, w))
    anchors = sum(a * b for a, b in level_sizes((h, w), (3, 4, 5, 6, 7))) * 9
    assert out["semantic"].shape == (2, 19, h // 4, w // 4)
    assert out["centers"].shape == (2, 2, h // 4, w // 4)
    assert out["cls_logits"].shape == (2, anchors, len(THINGS))
    assert out["bbox_regression"].shape == (2, anchors, 4)
    det = model.detect(out, (h, w), score_threshold=0.0, max_detections=7)
    assert det["boxes"].shape == (2, 7, 4) and det["valid"].dtype == torch.bool
    assert set(det["labels"][det["valid"]].tolist()) <= set(THINGS)  # train ids, not class indices
    assert (det["boxes"][..., 2] <= w).all() and (det["boxes"][..., 3] <= h).all()
    with pytest.raises(ValueError, match="image_size"):
        model.detect(out, (h * 2, w), 0.5, 10)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="unknown backbone"):
        PanopticNet(19, THINGS, backbone="vgg")
    with pytest.raises(ValueError, match="thing_train_ids"):
        PanopticNet(19, [3, 19])
    with pytest.raises(ValueError, match="unknown PanopticNet config"):
        PanopticNet.from_config({"fpn_width": 64}, taxonomy=TAXONOMY)


def test_targets_boxes_offsets_and_crowd():
    ids = np.full((20, 30), 7000, np.int32)  # road
    ids[2:6, 3:13] = 26001  # car: box x 3..13, y 2..6 -> centre (8, 4)
    ids[10:20, 20:22] = 24005  # person crowd
    ids[0, 0] = 0
    t = build_targets(ids, TAXONOMY, crowd_ids=[24005])
    np.testing.assert_array_equal(t["boxes"], [[3, 2, 13, 6]])
    assert t["labels"].tolist() == [TAXONOMY.train_id("car")]
    assert t["semantic"][10, 20] == VOID_TRAIN_ID and t["semantic"][0, 0] == VOID_TRAIN_ID
    assert t["semantic"][3, 3] == TAXONOMY.train_id("car") and t["semantic"][19, 0] == TAXONOMY.train_id("road")
    assert t["center_mask"].sum() == 40
    # pixel (row 2, col 3) has centre (3.5, 2.5): offset to (8, 4) is (4.5, 1.5)
    assert tuple(t["center_offsets"][:, 2, 3]) == (4.5, 1.5)
    assert (t["center_offsets"][:, ~t["center_mask"]] == 0).all()


def test_dataset_flip_scale_crop_keeps_targets_consistent():
    samples = street_samples(2, 96, 192, seed=3)
    ds = PanopticDataset(samples, TAXONOMY, (64, 96), augment=True, scale_range=(0.8, 1.5))
    torch.manual_seed(1)
    batch = collate([ds[0], ds[1], ds[0]])
    assert batch["image"].shape == (3, 3, 64, 96) and batch["semantic"].shape == (3, 64, 96)
    for b in range(3):
        mask = batch["center_mask"][b]
        # every thing pixel points inside one of the boxes
        ys, xs = torch.nonzero(mask, as_tuple=True)
        cx = xs + 0.5 + batch["center_offsets"][b, 0, ys, xs]
        cy = ys + 0.5 + batch["center_offsets"][b, 1, ys, xs]
        centres = (batch["boxes"][b][:, :2] + batch["boxes"][b][:, 2:]) / 2
        dist = torch.cdist(torch.stack([cx, cy], 1), centres).min(1).values
        assert dist.max() < 1e-4
    plain = PanopticDataset(samples, TAXONOMY, (48, 96), augment=False)
    item = plain[0]
    # no augmentation: 96x192 -> 48x96 exactly; the mean-padded normalised image is ~0 only where padded
    assert item["semantic"].shape == (48, 96) and item["boxes"].shape[0] >= 1


def fixed_batch(n=2, h=64, w=128):
    samples = street_samples(n, h, w, seed=5)
    ds = PanopticDataset(samples, TAXONOMY, (h, w), augment=False)
    return collate([ds[i] for i in range(n)])


def test_each_loss_goes_down_and_the_batch_is_learnt():
    model = small_net(anchor_scale=2.0).train()
    batch = fixed_batch()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    history = []
    for _ in range(60):
        losses = model.compute_loss(model(batch["image"]), batch)
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
        history.append({k: v.item() for k, v in losses.items()})
    for key in ("focal", "box", "semantic", "center", "total"):
        first, last = history[0][key], np.mean([h[key] for h in history[-3:]])
        assert last < 0.5 * first, f"{key} did not go down: {first:.3f} -> {last:.3f}"
    w, h = model.loss_weights, history[-1]
    assert h["total"] == pytest.approx(w["detection"] * (h["focal"] + h["box"]) + w["semantic"] * h["semantic"]
                                       + w["center"] * h["center"], rel=1e-5)
    # The outputs mean what the contract says: boxes in input pixels with train-id labels, semantic train ids.
    model.eval()
    with torch.no_grad():
        out = model(batch["image"])
        det = model.detect(out, tuple(batch["image"].shape[-2:]), score_threshold=0.3, max_detections=20)
    for b in range(len(batch["boxes"])):
        keep = det["valid"][b]
        iou = box_iou(batch["boxes"][b], det["boxes"][b][keep])
        same_label = batch["labels"][b][:, None] == det["labels"][b][keep][None, :]
        assert ((iou * same_label).max(1).values > 0.5).all(), iou
    semantic = torch.nn.functional.interpolate(out["semantic"], size=batch["semantic"].shape[-2:],
                                               mode="bilinear").argmax(1)
    known = batch["semantic"] != VOID_TRAIN_ID
    assert (semantic[known] == batch["semantic"][known]).float().mean() > 0.9


class _Pyramid(torch.nn.Module):
    """Hands torchvision's RetinaNet the same pyramid levels our detection branch uses."""

    def __init__(self, backbone, levels):
        super().__init__()
        self.backbone, self.levels, self.out_channels = backbone, levels, backbone.out_channels

    def forward(self, x):
        pyramid = self.backbone(x)
        return {str(lv): pyramid[lv - 2] for lv in self.levels}


def test_detection_branch_matches_torchvision_retinanet():
    model = small_net().eval()
    branch = model.detection_branch
    with torch.no_grad():  # a head with confident-ish, varied scores so many boxes pass the threshold
        branch.head.classification_head.cls_logits.bias.fill_(-1.0)
    tv = RetinaNet(_Pyramid(model.backbone, branch.levels), num_classes=branch.num_classes,
                   anchor_generator=branch.anchor_generator, head=branch.head, score_thresh=0.3, nms_thresh=0.5,
                   detections_per_img=50, topk_candidates=1000).eval()
    h, w = 128, 256  # multiple of 128: torchvision's stride estimate is exact
    images = torch.randn(2, 3, h, w)
    with torch.no_grad():
        ours = model(images)
        features = list(tv.backbone(images).values())
        head_outputs = tv.head(features)
        torch.testing.assert_close(ours["cls_logits"], head_outputs["cls_logits"])
        torch.testing.assert_close(ours["bbox_regression"], head_outputs["bbox_regression"])
        image_list = ImageList(images, [(h, w)] * 2)
        tv_anchors = tv.anchor_generator(image_list, features)
        torch.testing.assert_close(branch.anchors((h, w)), tv_anchors[0])
        counts = [f.shape[2] * f.shape[3] * branch.num_anchors_per_location for f in features]
        split = {k: list(v.split(counts, dim=1)) for k, v in head_outputs.items()}
        tv_det = tv.postprocess_detections(split, [list(a.split(counts)) for a in tv_anchors], image_list.image_sizes)
        det = model.detect(ours, (h, w), score_threshold=0.3, max_detections=50)
    for b in range(2):
        n = len(tv_det[b]["boxes"])
        assert 0 < n == int(det["valid"][b].sum())
        torch.testing.assert_close(det["boxes"][b, :n], tv_det[b]["boxes"])
        torch.testing.assert_close(det["scores"][b, :n], tv_det[b]["scores"])
        assert det["labels"][b, :n].tolist() == [THINGS[i] for i in tv_det[b]["labels"].tolist()]
    # same training loss as torchvision for the same targets (class indices)
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 60.0, 70.0], [100.0, 40.0, 140.0, 120.0]]),
                "labels": torch.tensor([0, 3])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    ours_loss = branch.compute_loss(ours, targets, (h, w))
    tv_loss = tv.compute_loss(targets, head_outputs, tv_anchors)
    for k in ("classification", "bbox_regression"):
        torch.testing.assert_close(ours_loss[k], tv_loss[k])


def metadata_for(model):
    return build_metadata(model, TAXONOMY, (64, 128), {"mean": [0.5] * 3, "std": [0.25] * 3},
                          training={"steps": 1}, dataset_hash="abc", step=3)


def test_checkpoint_round_trip(tmp_path):
    model = small_net()
    path = save_checkpoint(tmp_path / "m.pt", model, metadata_for(model))
    loaded, meta = load_checkpoint(path, expected_taxonomy=TAXONOMY)
    assert not loaded.training
    assert meta["input_size"] == [64, 128] and meta["step"] == 3 and meta["dataset_hash"] == "abc"
    assert Taxonomy.from_dict(meta["taxonomy"]) == TAXONOMY and meta["torch_version"] == torch.__version__
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        a, b = model.eval()(x), loaded(x)
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    torch.load(path, weights_only=True)  # plain tensors and containers only


def test_checkpoint_errors(tmp_path):
    model = small_net()
    meta = metadata_for(model)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    good = save_checkpoint(tmp_path / "good.pt", model, meta)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(garbage)
    # other architecture: weights of a wider FPN under the small config
    wide = small_net(fpn_channels=64)
    payload = torch.load(good, weights_only=True)
    payload["state_dict"] = wide.state_dict()
    torch.save(payload, tmp_path / "wide.pt")
    with pytest.raises(CheckpointError, match="other architecture"):
        load_checkpoint(tmp_path / "wide.pt")
    payload["state_dict"] = {k: v for k, v in model.state_dict().items() if "center_branch" not in k}
    torch.save(payload, tmp_path / "missing_keys.pt")
    with pytest.raises(CheckpointError, match="Missing key"):
        load_checkpoint(tmp_path / "missing_keys.pt")
    other = Taxonomy([c for c in TAXONOMY.categories[:-1]], "no-bicycle")
    with pytest.raises(CheckpointError, match="expected"):
        load_checkpoint(good, expected_taxonomy=other)
    assert issubclass(CheckpointError, ValueError)


def test_torch_export_strict_static_shape():
    model = small_net().eval()
    x = torch.randn(1, 3, 64, 128)
    exported = torch.export.export(model, (x,), strict=True)
    with torch.no_grad():
        expected = model(x)
    got = exported.module()(x)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k])
