"""FramePipeline (the node's per-frame work) without DDS: its messages equal the Predictor's and the
GroundProjector's results; the projector is cached per CameraInfo; bad input raises or is reported clearly."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) is not installed")
pytest.importorskip("panoptic_ros.msg", reason="messages not generated: run bash tools/build_msgs.sh .venv")

from builtin_interfaces.msg import Time  # noqa: E402
from sensor_msgs.msg import CameraInfo  # noqa: E402

from panoptic_ros.bev import GroundProjector  # noqa: E402
from panoptic_ros.geometry import CameraModel  # noqa: E402
from panoptic_ros.panoptic import colorize  # noqa: E402
from panoptic_ros.ros.image_conversion import image_to_numpy, numpy_to_image, rgb_to_compressed  # noqa: E402
from panoptic_ros.ros.messages import from_panoptic_segmentation, header  # noqa: E402
from panoptic_ros.ros.params import NodeConfig  # noqa: E402
from panoptic_ros.ros.pipeline import OUTPUTS, BadImage, FramePipeline  # noqa: E402

H, W = 64, 96
STAMP = Time(sec=1_700_000_000, nanosec=123_456_789)


@pytest.fixture(scope="module")
def predictor():
    import torch

    from panoptic_ros.model.checkpoint import build_metadata
    from panoptic_ros.model.network import PanopticNet
    from panoptic_ros.predictor import Predictor
    from panoptic_ros.taxonomy import Taxonomy

    taxonomy = Taxonomy.cityscapes()
    torch.manual_seed(0)
    model = PanopticNet.from_config(taxonomy=taxonomy, backbone="resnet18", fpn_channels=32, head_channels=16)
    metadata = build_metadata(model, taxonomy, (H, W), {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)})
    return Predictor.from_model(model.eval(), metadata, backend="cpu", threads=1)


@pytest.fixture(scope="module")
def config():
    return NodeConfig.from_values({"grid.resolution": 0.5, "camera.pitch": 0.1})


def camera_info(width=W, height=H, f=None) -> CameraInfo:
    f = f or width / 2.0
    k = [f, 0.0, width / 2.0, 0.0, f, height / 2.0, 0.0, 0.0, 1.0]
    return CameraInfo(header=header(STAMP, "camera_optical_frame"), width=width, height=height,
                      distortion_model="plumb_bob", d=[0.0] * 5, k=k)


def image(rng, frame_id="camera_optical_frame"):
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    return rgb, numpy_to_image(rgb, "rgb8", header(STAMP, frame_id))


def test_outputs_equal_the_predictor_and_projector(predictor, config):
    rng = np.random.default_rng(0)
    rgb, msg = image(rng)
    pipeline = FramePipeline.from_config(predictor, config)
    out = pipeline.process(msg, camera_info(), OUTPUTS)
    assert tuple(out.messages) == OUTPUTS and not [e for e in out.events if e[0] != "info"]

    expected = predictor.predict(rgb)
    assert np.array_equal(image_to_numpy(out.messages["panoptic_ids"]), expected.panoptic)
    assert np.array_equal(image_to_numpy(out.messages["semantic"]), expected.semantic)
    assert np.array_equal(image_to_numpy(out.messages["overlay"]), colorize(expected.panoptic, predictor.taxonomy, rgb))
    ids, segments, taxonomy = from_panoptic_segmentation(out.messages["panoptic"])
    assert np.array_equal(ids, expected.panoptic) and len(taxonomy) == len(predictor.taxonomy)
    assert [(s.id, s.area, tuple(s.bbox)) for s in segments] == [(s.id, s.area, tuple(s.bbox))
                                                                 for s in expected.segments]
    for name in ("panoptic_ids", "panoptic", "semantic", "overlay"):
        assert out.messages[name].header.frame_id == "camera_optical_frame", name
    for name in OUTPUTS:
        msg = out.messages[name]
        for hdr in ([m.header for m in msg.markers] if name == "markers" else [msg.header]):
            assert hdr.stamp == STAMP, name

    camera = CameraModel.from_camera_info(W, H, camera_info().k, [0.0] * 5, pose=config.camera_pose,
                                          parent_frame="base_link")
    projector = GroundProjector(camera, config.grid, predictor.taxonomy, max_range=config.max_range)
    bev = projector.project(expected.panoptic)
    grid = out.messages["grid"]
    assert grid.header.frame_id == "base_link" and (grid.info.width, grid.info.height) == (80, 80)
    assert np.array_equal(np.asarray(grid.data, dtype=np.int8), bev.occupancy_data())
    markers = out.messages["markers"].markers
    assert markers[0].action == markers[0].DELETEALL and len(markers) == 1 + 2 * len(bev.footprints)
    assert set(out.timings_ms) >= {"decode", "network", "head", "bev", "messages"}
    assert out.processing_ms == pytest.approx(sum(out.timings_ms.values())) and out.processing_ms > 0


def test_only_wanted_outputs_are_built_and_camera_frame_overrides(predictor, config):
    rng = np.random.default_rng(1)
    rgb, msg = image(rng, frame_id="")
    out = FramePipeline.from_config(predictor, config).process(msg, camera_info(), {"semantic"})
    assert list(out.messages) == ["semantic"] and out.timings_ms["bev"] == 0.0
    assert ("warning", "frame_id") in [e[:2] for e in out.events]  # empty frame_id, camera_frame unset

    named = NodeConfig.from_values({"camera_frame": "front_cam"})
    out = FramePipeline.from_config(predictor, named).process(msg, None, {"panoptic"})
    assert out.messages["panoptic"].header.frame_id == "front_cam" and not out.events


def test_projector_is_built_once_per_camera(predictor, config):
    rng = np.random.default_rng(2)
    pipeline = FramePipeline.from_config(predictor, config)
    _, msg = image(rng)
    first = pipeline.process(msg, camera_info(), {"grid"})
    second = pipeline.process(msg, camera_info(), {"grid"})  # an equal CameraInfo (new message object)
    assert [e[1] for e in first.events] == ["projector"] and second.events == []
    kept = pipeline.projector_for(camera_info(), W, H)
    assert pipeline.projector_for(camera_info(f=60.0), W, H) is not kept  # a new focal length: a new lookup


def test_a_per_frame_camera_pose_is_used_and_cached(predictor, config):
    """process(..., camera_pose=) (the node's pose from TF) projects with that pose; an equal pose reuses the
    lookup, another pose builds a new one, None goes back to the configured camera.* pose."""
    from panoptic_ros.geometry import Pose

    pipeline = FramePipeline.from_config(predictor, config)
    default = pipeline.projector_for(camera_info(), W, H)
    pose = Pose(1.0, 0.5, 2.0, 0.0, 0.3, 0.1)
    moved = pipeline.projector_for(camera_info(), W, H, camera_pose=pose)
    assert moved is not default and moved.camera.pose == pose
    assert pipeline.projector_for(camera_info(), W, H, camera_pose=Pose(1.0, 0.5, 2.0, 0.0, 0.3, 0.1)) is moved
    assert pipeline.projector_for(camera_info(), W, H).camera.pose == config.camera_pose
    _, msg = image(np.random.default_rng(4))
    out = pipeline.process(msg, camera_info(), {"grid"}, camera_pose=pose)
    camera = CameraModel.from_camera_info(W, H, camera_info().k, [0.0] * 5, pose=pose, parent_frame="base_link")
    bev = GroundProjector(camera, config.grid, predictor.taxonomy, max_range=config.max_range).project(
        out.result.panoptic)
    assert np.array_equal(np.asarray(out.messages["grid"].data, dtype=np.int8), bev.occupancy_data())


def test_compressed_input_is_decoded(predictor, config):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    msg = rgb_to_compressed(rgb, "png", header(STAMP, "camera_optical_frame"))  # lossless: same pixels
    out = FramePipeline.from_config(predictor, config).process(msg, None, {"panoptic_ids"})
    assert np.array_equal(image_to_numpy(out.messages["panoptic_ids"]), predictor.predict(rgb).panoptic)


def test_bad_input_is_named(predictor, config):
    rng = np.random.default_rng(4)
    pipeline = FramePipeline.from_config(predictor, config)
    _, msg = image(rng)
    with pytest.raises(ValueError, match="unknown outputs .*'depth'"):
        pipeline.process(msg, camera_info(), {"depth"})
    msg.step = W * 3 - 1  # shorter than a row
    with pytest.raises(BadImage, match="cannot read image: .*step"):
        pipeline.process(msg, camera_info(), {"panoptic"})

    _, msg = image(rng)
    out = pipeline.process(msg, None, {"panoptic", "grid", "markers"})  # no CameraInfo yet: grid waits
    assert list(out.messages) == ["panoptic"]
    assert [e[:2] for e in out.events] == [("warning", "no_info")] and "camera_info" in out.events[0][2]

    out = pipeline.process(msg, camera_info(width=2 * W, height=2 * H), {"panoptic", "grid"})
    assert list(out.messages) == ["panoptic"]  # the other outputs still come
    (level, _, text), = out.events
    assert level == "error" and f"CameraInfo describes a {2 * W}x{2 * H} image but the images are {W}x{H}" in text

    info = camera_info()
    info.distortion_model = "equidistant"
    (level, _, text), = pipeline.process(msg, info, {"grid"}).events
    assert level == "error" and "'equidistant' is not supported" in text
