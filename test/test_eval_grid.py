"""Grid metrics of panoptic-eval bag: the node's pipeline grid (pose from the bag's /tf_static, layout of the
bag's truth) against the bird's-eye truth, with ground-truth labels (--labels truth) and with a model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) is not installed")
pytest.importorskip("panoptic_ros.msg", reason="messages not generated: run bash tools/build_msgs.sh .venv")

from panoptic_ros.bev import GroundProjector  # noqa: E402
from panoptic_ros.data.bag import GRID_TOPIC, read_bag, read_raw, typestore  # noqa: E402
from panoptic_ros.evaluation.cli import main as eval_main  # noqa: E402
from panoptic_ros.ros.record import panoptic_typestore  # noqa: E402
from panoptic_ros.taxonomy import Taxonomy  # noqa: E402

H, W = 96, 128


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    from panoptic_ros.data.cli import main as world_main

    path = tmp_path_factory.mktemp("grid") / "drive"
    assert world_main(["bag", "--out", str(path), "--frames", "4", "--fps", "10", "--width", str(W),
                       "--height", str(H), "--quiet"]) == 0
    return path


def grids(path: Path, topic: str, store) -> dict:
    out = {}
    for raw in read_raw(path, [topic]):
        g = store.deserialize_cdr(raw.data, raw.msgtype)
        out[g.header.stamp.sec * 1_000_000_000 + g.header.stamp.nanosec] = np.asarray(g.data, np.int8).reshape(
            g.info.height, g.info.width)
    return out


def test_truth_labels_grid_is_the_projection_of_the_bag_labels_with_its_tf_pose(bag, tmp_path):
    """--labels truth: every written grid equals GroundProjector on the bag's own labels, camera posed by the
    bag's /tf_static (not the camera.* defaults, which differ here), and the report's figures are those cells'."""
    out_bag, report = tmp_path / "outputs", tmp_path / "report"
    assert eval_main(["bag", str(bag), "--labels", "truth", "--out", str(report), "--write-bag", str(out_bag)]) == 0
    grid = json.loads((report / "report.json").read_text())["grid"]
    assert set(grid["free_iou"]) == {"0-10", "10-20", "20-40"} and grid["frames"] == 4
    assert grid["free_iou"]["0-10"] >= 0.9 and grid["occupied_precision"] >= 0.8
    assert (report / "grid_worst_frame.png").stat().st_size > 0 and "Bird's-eye grid" in (report / "report.md").read_text()

    predicted = grids(out_bag, "/panoptic_node/grid", panoptic_typestore())
    truth = grids(bag, GRID_TOPIC, typestore())
    frames = list(read_bag(bag))
    assert len(predicted) == len(frames) == 4
    taxonomy = Taxonomy.cityscapes()
    tp = union = 0
    for frame in frames:
        assert frame.camera_pose_from_tf and frame.camera.pose.x != 1.5  # the bag's mount, not the defaults
        spec = frame.grid_spec
        expected = GroundProjector(frame.camera, spec, taxonomy, max_range=40.0).project(frame.panoptic)
        np.testing.assert_array_equal(predicted[frame.stamp_ns], expected.occupancy)
        # free IoU 0-10 m by hand: cell centres within 10 m of the camera's ground point
        xs, ys = spec.cell_centers()
        near = np.hypot(xs - frame.camera.pose.x, ys - frame.camera.pose.y) < 10
        pred_free, true_free = predicted[frame.stamp_ns] == 0, truth[frame.stamp_ns] == 0
        tp += np.count_nonzero(near & pred_free & true_free)
        union += np.count_nonzero(near & (pred_free | true_free))
    assert grid["free_iou"]["0-10"] == pytest.approx(tp / union)


def test_model_report_has_grid_metrics(bag, tmp_path):
    """panoptic-eval bag --model (no --write-bag): PQ as before plus the grid object from the node's pipeline."""
    import torch

    from panoptic_ros.model.checkpoint import build_metadata, save_checkpoint
    from panoptic_ros.model.network import PanopticNet

    taxonomy = Taxonomy.cityscapes()
    torch.manual_seed(0)
    model = PanopticNet.from_config(taxonomy=taxonomy, backbone="resnet18", fpn_channels=32, head_channels=16)
    metadata = build_metadata(model, taxonomy, (64, 96), {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)})
    ckpt = save_checkpoint(tmp_path / "tiny.pt", model, metadata)
    report = tmp_path / "report"
    assert eval_main(["bag", str(bag), "--model", str(ckpt), "--backend", "cpu", "--out", str(report)]) == 0
    data = json.loads((report / "report.json").read_text())
    assert "pq" in json.dumps(data).lower() and data["grid"]["frames"] == 4
    for key in ("occupied_recall", "occupied_precision"):
        assert key in data["grid"]
    assert eval_main(["bag", str(bag), "--labels", "truth", "--model", str(ckpt), "--out", str(report)]) == 2  # a usage error: one line, exit 2
