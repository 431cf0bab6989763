"""panoptic_node over real DDS: the node and a camera/recorder driver (test/_ros_driver.py) run as separate
processes on a private ROS domain; the outputs are compared here with the Predictor and the GroundProjector
run on the same frames."""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) is not installed")
pytest.importorskip("panoptic_ros.msg", reason="messages not generated: run bash tools/build_msgs.sh .venv")

from panoptic_ros.bev import GroundProjector  # noqa: E402
from panoptic_ros.geometry import CameraModel, GridSpec, Pose  # noqa: E402
from panoptic_ros.panoptic import colorize  # noqa: E402

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).with_name("_ros_driver.py")
GRID_RESOLUTION = 0.5


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A small random-weight model, saved the way training saves one."""
    import torch

    from panoptic_ros.model.checkpoint import build_metadata, save_checkpoint
    from panoptic_ros.model.network import PanopticNet
    from panoptic_ros.taxonomy import Taxonomy

    taxonomy = Taxonomy.cityscapes()
    torch.manual_seed(0)
    model = PanopticNet.from_config(taxonomy=taxonomy, backbone="resnet18", fpn_channels=32, head_channels=16)
    metadata = build_metadata(model, taxonomy, (64, 96), {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)})
    return save_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt", model, metadata)


def ros_env(tmp_path: Path, offset: int) -> dict:
    """A private DDS domain per test (and per pytest process), large-data transports, one CPU thread."""
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(20 + (os.getpid() * 7 + offset * 31) % 200), FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA",
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               ROS_LOG_DIR=str(tmp_path / "ros_log"), RCUTILS_COLORIZED_OUTPUT="0",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def start_node(checkpoint: Path, env: dict, log: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "panoptic_ros.node", "--ros-args",
           "--params-file", str(ROOT / "config" / "panoptic.yaml"),
           "-p", f"model_path:={checkpoint}", "-p", "backend:=cpu", "-p", "threads:=1",
           "-p", f"grid.resolution:={GRID_RESOLUTION}", "-p", "diagnostics_period:=0.5",
           "-r", "image:=/camera/image_raw", "-r", "camera_info:=/camera/camera_info", *extra]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)


def run_driver(scenario: str, env: dict, out: Path, *extra: str, timeout: float = 600) -> dict:
    # Generous timeouts: on a loaded machine importing torch alone can take a minute.
    proc = subprocess.run([sys.executable, str(DRIVER), scenario, "--out", str(out), "--timeout", "300", *extra],
                          env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"driver failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    with out.open("rb") as f:
        return pickle.load(f)


def stop(node: subprocess.Popen, sig: int, log: Path) -> str:
    node.send_signal(sig)
    try:
        code = node.wait(timeout=60)
    except subprocess.TimeoutExpired:
        node.kill()
        pytest.fail(f"node ignored signal {sig}:\n{log.read_text()}")
    text = log.read_text()
    assert code == 0, f"node exited with {code} after signal {sig}:\n{text}"
    assert "Traceback" not in text, text
    return text


def expected_projector(taxonomy, width: int, height: int, pose: Pose = Pose(1.5, 0.0, 1.5, 0.0, 0.0, 0.0)
                       ) -> GroundProjector:
    """What the node must build from the driver's CameraInfo and config/panoptic.yaml (+ the test's overrides);
    the default pose is the camera.* parameters'."""
    f = width / 2.0
    camera = CameraModel.from_camera_info(width, height, [f, 0, width / 2.0, 0, f, height / 2.0, 0, 0, 1],
                                          [0.0] * 5, pose=pose,
                                          parent_frame="base_link")
    return GroundProjector(camera, GridSpec(GRID_RESOLUTION, 0.0, 40.0, -20.0, 20.0, "base_link"), taxonomy,
                           max_range=40.0)


@pytest.fixture(scope="module")
def road_checkpoint(tmp_path_factory) -> Path:
    """A random-weight model whose semantic branch says road (train id 0) everywhere: every ground cell the
    camera sees is free, so the grid shows exactly where the camera looks."""
    import torch

    from panoptic_ros.model.checkpoint import build_metadata, save_checkpoint
    from panoptic_ros.model.network import PanopticNet
    from panoptic_ros.taxonomy import Taxonomy

    taxonomy = Taxonomy.cityscapes()
    torch.manual_seed(0)
    model = PanopticNet.from_config(taxonomy=taxonomy, backbone="resnet18", fpn_channels=32, head_channels=16)
    with torch.no_grad():
        model.semantic_branch.predictor.weight.zero_()
        model.semantic_branch.predictor.bias.zero_()
        model.semantic_branch.predictor.bias[0] = 10.0
    metadata = build_metadata(model, taxonomy, (64, 96), {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)})
    return save_checkpoint(tmp_path_factory.mktemp("road_model") / "road.pt", model, metadata)


@pytest.mark.timeout(900)
def test_camera_pose_from_tf_static_without_tf2_ros(road_checkpoint, tmp_path):
    """No pose parameters and no tf2_ros: the node's grid is the one of the pose on /tf_static, and moving that
    pose +2 m in x moves the free cells +2 m."""
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tf2_ros is installed here; this test checks the node's built-in TF buffer")
    from panoptic_ros.taxonomy import Taxonomy

    env = ros_env(tmp_path, 3)
    log = tmp_path / "node.log"
    node = start_node(road_checkpoint, env, log)
    try:
        rec = run_driver("tf", env, tmp_path / "out.pkl", "--pose", "0.5", "0.3", "1.8", "0.02", "0.12", "-0.03")
    finally:
        text = stop(node, signal.SIGINT, log)
    assert "built-in buffer of /tf and /tf_static" in text, text
    grids = []
    for _, stamp, pose in [e for e in rec["events"] if e[0] == "pose"]:
        got = rec["received"].get(stamp)
        assert got is not None and {"grid", "panoptic_ids"} <= set(got), f"{stamp}: {sorted(got or {})}\n{text}"
        ids = got["panoptic_ids"]["array"]
        h, w = ids.shape
        expected = expected_projector(Taxonomy.cityscapes(), w, h, Pose(*pose)).project(ids).occupancy_data()
        assert np.array_equal(got["grid"]["data"], expected), f"grid of {pose} differs\n{text}"
        grids.append(got["grid"]["data"].reshape(80, 80))
    assert not np.array_equal(grids[0], expected_projector(Taxonomy.cityscapes(), w, h).project(ids).occupancy_data()
                              .reshape(80, 80)), "the pose must differ from the camera.* parameters' one"
    shift = int(round(2.0 / GRID_RESOLUTION))
    first_free, moved = grids[0][:, :-shift] == 0, grids[1][:, shift:] == 0
    assert first_free.sum() > 200
    assert (first_free == moved).mean() > 0.995  # the same free cells, 2 m further forward
    assert not np.array_equal(grids[0] == 0, grids[1] == 0)
    assert "camera pose from the camera.* parameters" not in text, text


@pytest.mark.timeout(900)
def test_node_outputs_match_the_core(checkpoint, tmp_path):
    import torch

    from panoptic_ros.predictor import Predictor

    env = ros_env(tmp_path, 1)
    log = tmp_path / "node.log"
    node = start_node(checkpoint, env, log)
    try:
        rec = run_driver("outputs", env, tmp_path / "out.pkl", "--frames", "3")
    finally:
        text = stop(node, signal.SIGINT, log)
    assert "ready: model" in text

    threads = torch.get_num_threads()
    try:
        predictor = Predictor.from_checkpoint(checkpoint, backend="cpu", threads=1)
        taxonomy = predictor.taxonomy
        for stamp, rgb in rec["sent"]:
            got = rec["received"].get(stamp)
            assert got is not None and set(got) == {"panoptic", "panoptic_ids", "semantic", "overlay", "grid",
                                                    "markers"}, f"outputs for {stamp}: {sorted(got or {})}\n{text}"
            result = predictor.predict(rgb)
            ids = got["panoptic_ids"]["array"]
            assert got["panoptic_ids"]["encoding"] == "32SC1" and np.array_equal(ids, result.panoptic)
            assert got["semantic"]["encoding"] == "mono8"
            assert np.array_equal(got["semantic"]["array"], result.semantic)
            assert np.array_equal(got["overlay"]["array"], colorize(result.panoptic, taxonomy, rgb))
            assert np.array_equal(got["panoptic"]["ids"], result.panoptic)
            assert [(s["id"], s["area"], s["bbox"]) for s in got["panoptic"]["segments"]] == \
                [(s.id, s.area, tuple(s.bbox)) for s in result.segments]
            assert got["panoptic"]["n_categories"] == len(taxonomy)
            for name in ("panoptic", "panoptic_ids", "semantic", "overlay"):
                assert got[name]["frame_id"] == "camera_optical_frame", name

            bev = expected_projector(taxonomy, rgb.shape[1], rgb.shape[0]).project(result.panoptic)
            grid = got["grid"]
            assert grid["frame_id"] == "base_link"
            assert grid["info"] == (GRID_RESOLUTION, 80, 80, 0.0, -20.0)
            assert np.array_equal(grid["data"], bev.occupancy_data())
            markers = got["markers"]
            assert set(markers["frame_id"]) == {"base_link"} and markers["actions"][0] == 3  # DELETEALL
            assert len(markers["actions"]) == 1 + 2 * len(bev.footprints)
    finally:
        torch.set_num_threads(threads)

    # The malformed frame: a clear log line, an ERROR diagnostic, no output, and the node carried on.
    bad = rec["events"][0][1]
    assert bad not in rec["received"]
    assert f"frame {bad[0]}.{bad[1]:09d}" in text and "cannot read image" in text and "step" in text
    errors = [d for d in rec["diagnostics"] if d["level"] == 2]
    assert errors and "step" in errors[0]["message"]
    assert rec["diagnostics"][-1]["values"]["backend"] == "cpu"
    assert "incompatible QoS on /panoptic_node/grid" in text and "DURABILITY" in text


@pytest.mark.timeout(900)
def test_node_drops_stale_frames_and_skips_unwatched_outputs(checkpoint, tmp_path):
    env = ros_env(tmp_path, 2)
    log = tmp_path / "node.log"
    node = start_node(checkpoint, env, log, "-p", "image_transport:=compressed", "-p", "input_qos:=reliable")
    try:
        rec = run_driver("realtime", env, tmp_path / "out.pkl", "--frames", "12", "--compressed", "--reliable")
    finally:
        text = stop(node, signal.SIGTERM, log)
    sent = [s for s, _ in rec["sent"]]
    got = sorted(rec["received"])
    assert (10, 0) not in rec["received"], "a frame nobody listened to was published"
    assert got and set(got) <= set(sent)
    assert got[-1] == sent[-1], "the newest frame must always be processed"
    assert all(set(v) == {"panoptic_ids"} for v in rec["received"].values()), "unwatched outputs were published"
    values = rec["diagnostics"][-1]["values"]
    received, processed = int(values["frames received"]), int(values["frames processed"])
    dropped, idle = int(values["frames dropped (stale)"]), int(values["frames skipped (no subscribers)"])
    # DDS may already drop some of the burst (input depth 1); what arrives is processed, dropped or skipped.
    assert idle == 1 and received <= len(sent) + 1
    assert processed == len(got) and processed + dropped + idle == received
    assert dropped > 0, f"a back-to-back burst of {len(sent)} frames must outrun CPU inference:\n{values}"
    assert "listening on /camera/image_raw/compressed (compressed, reliable QoS)" in text


@pytest.mark.timeout(900)
def test_ego_mask_is_void_in_the_node_outputs_and_off_the_grid(road_checkpoint, tmp_path):
    """A real node with ego_mask: the masked pixels are void (id 0, train id 255) in ids, semantic and the
    segment list, and the grid is the projection of the masked ids (the hood's cells stay unknown)."""
    import cv2

    from panoptic_ros.ego_mask import apply_ego_mask
    from panoptic_ros.predictor import Predictor

    h, w = 96, 128
    mask = np.zeros((h, w), np.uint8)
    mask[76:] = 1  # the hood
    mask[40:, :12] = 1  # a mirror
    png = tmp_path / "ego.png"
    cv2.imwrite(str(png), mask)
    env = ros_env(tmp_path, 4)
    log = tmp_path / "node.log"
    node = start_node(road_checkpoint, env, log, "-p", f"ego_mask:={png}")
    try:
        rec = run_driver("outputs", env, tmp_path / "out.pkl", "--frames", "2", "--height", str(h), "--width", str(w))
    finally:
        text = stop(node, signal.SIGINT, log)
    predictor = Predictor.from_checkpoint(road_checkpoint, backend="cpu", threads=1)
    body = mask > 0
    for stamp, rgb in rec["sent"]:
        got = rec["received"].get(stamp)
        assert got is not None and {"panoptic_ids", "semantic", "panoptic", "grid"} <= set(got), text
        expected = apply_ego_mask(predictor.predict(rgb), body, predictor.taxonomy)
        ids = got["panoptic_ids"]["array"]
        assert (ids[body] == 0).all() and (ids[~body] != 0).any()
        assert np.array_equal(ids, expected.panoptic)
        assert (got["semantic"]["array"][body] == 255).all()
        assert [(s["id"], s["area"]) for s in got["panoptic"]["segments"]] == [(s.id, s.area) for s in expected.segments]
        projector = expected_projector(predictor.taxonomy, w, h)
        assert np.array_equal(got["grid"]["data"], projector.project(expected.panoptic).occupancy_data())
        unmasked = projector.project(predictor.predict(rgb).panoptic).occupancy_data()
        assert np.count_nonzero(got["grid"]["data"] == 0) < np.count_nonzero(unmasked == 0)  # hood cells not free
