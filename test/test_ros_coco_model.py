"""A model with COCO-panoptic's 133 categories (trained a few steps on the world relabelled to COCO, read from a
COCO root as distributed) runs in panoptic_node with the default parameters and publishes a grid; a model whose
classes the grid does not know starts, warns once and publishes an all-unknown grid. Real rclpy, two processes."""
from __future__ import annotations

import signal

import numpy as np
import pytest
import yaml

from test_ros_node import run_driver, ros_env, start_node, stop

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture(scope="module")
def coco_checkpoint(tmp_path_factory):
    from _distributed_roots import coco_root
    from panoptic_ros.model import train

    base = tmp_path_factory.mktemp("coco_model")
    data = coco_root(base / "coco", splits=(("train2017", 2, 0),))
    cfg = {"input": {"height": 64, "width": 96},
           "model": {"backbone": "resnet18", "fpn_channels": 32, "head_channels": 16},
           "optim": {"warmup_steps": 1}, "train": {"batch_size": 2, "workers": 0, "ckpt_every": 100}}
    (base / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    assert train.main(["--config", str(base / "tiny.yaml"), "--data", str(data), "--out", str(base / "run"),
                       "--steps", "3", "--device", "cpu", "--no-val"]) == 0
    return base / "run" / "model.pt"


def _grids(rec) -> list[np.ndarray]:
    grids = []
    for stamp, _ in rec["sent"]:
        got = rec["received"].get(stamp, {})
        assert "grid" in got, f"no grid for {stamp}"
        assert got["grid"]["frame_id"] == "base_link"
        grids.append(got["grid"]["data"])
    return grids


@pytest.mark.timeout(900)
def test_coco_model_with_default_parameters(coco_checkpoint, tmp_path):
    from panoptic_ros.model.checkpoint import read_checkpoint
    from panoptic_ros.taxonomy import Taxonomy

    meta = read_checkpoint(coco_checkpoint)["metadata"]
    assert Taxonomy.from_dict(meta["taxonomy"]) == Taxonomy.coco_panoptic()
    env = ros_env(tmp_path, 7)
    log = tmp_path / "node.log"
    node = start_node(coco_checkpoint, env, log)  # config/panoptic.yaml: free_classes / obstacle_classes []
    try:
        rec = run_driver("outputs", env, tmp_path / "out.pkl", "--frames", "2")
    finally:
        text = stop(node, signal.SIGINT, log)
    assert "ready: model" in text and "FATAL" not in text
    line = next(l for l in text.splitlines() if "grid: free " in l)
    assert " road," in line and "pavement-merged" in line and "building-other-merged" in line
    assert len(_grids(rec)) == 2


@pytest.mark.timeout(900)
def test_unmapped_classes_warn_once_and_give_an_unknown_grid(tmp_path):
    import torch

    from panoptic_ros.model.checkpoint import build_metadata, save_checkpoint
    from panoptic_ros.model.network import PanopticNet
    from panoptic_ros.taxonomy import Category, Taxonomy

    taxonomy = Taxonomy([Category(1, 0, "regolith", (90, 90, 90), False),
                         Category(2, 1, "boulder", (150, 100, 50), False),
                         Category(3, 2, "rover", (200, 0, 0), True)], "mars")
    torch.manual_seed(0)
    model = PanopticNet.from_config(taxonomy=taxonomy, backbone="resnet18", fpn_channels=32, head_channels=16)
    metadata = build_metadata(model, taxonomy, (64, 96), {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)})
    checkpoint = save_checkpoint(tmp_path / "mars.pt", model, metadata)
    env = ros_env(tmp_path, 8)
    log = tmp_path / "node.log"
    node = start_node(checkpoint, env, log)
    try:
        rec = run_driver("outputs", env, tmp_path / "out.pkl", "--frames", "2")
    finally:
        text = stop(node, signal.SIGINT, log)
    assert text.count("none of the model's classes is free ground") == 1
    for grid in _grids(rec):
        assert (grid == -1).all()
