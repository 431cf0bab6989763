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


class _FixedPredictor:
    """A predictor whose labels are known: road below the horizon row, sky above, one car standing on the road
    and one car wholly inside the bottom rows (where the ego mask of the test lies)."""

    def __init__(self, taxonomy):
        from panoptic_ros.panoptic import PanopticResult, segments_from_ids, semantic_from_ids

        self.taxonomy = taxonomy
        ids = np.full((H, W), 23000, np.int32)  # sky
        ids[36:] = 7000  # road
        ids[30:50, 10:30] = 26001  # a car whose contact (row 49) is above the mask
        ids[40:58, 60:80] = 26002  # a car whose lowest row (57) touches the mask's first row (58)
        ids[58:, 40:50] = 26003  # a car wholly in the masked rows
        self.result = PanopticResult(ids, semantic_from_ids(ids, taxonomy), segments_from_ids(ids, taxonomy))

    def predict(self, rgb):
        from copy import deepcopy

        return deepcopy(self.result)


def test_ego_mask_pixels_are_void_everywhere_and_never_on_the_grid(predictor, config, tmp_path):
    import cv2

    from panoptic_ros.bev import OCCUPIED, UNKNOWN
    from panoptic_ros.ros.messages import from_panoptic_segmentation

    fixed = _FixedPredictor(predictor.taxonomy)
    mask = np.zeros((H, W), np.uint8)
    mask[58:] = 255  # the hood: the bottom 6 rows
    path = tmp_path / "ego.png"
    cv2.imwrite(str(path), mask)
    rng = np.random.default_rng(5)
    rgb, msg = image(rng)
    values = {"grid.resolution": 0.25, "camera.pitch": 0.1, "camera.x": 0.0}
    plain = FramePipeline.from_config(fixed, NodeConfig.from_values(values)).process(msg, camera_info(), OUTPUTS)
    masked_pipeline = FramePipeline.from_config(fixed, NodeConfig.from_values(dict(values, ego_mask=str(path))))
    out = masked_pipeline.process(msg, camera_info(), OUTPUTS)
    body = mask > 0

    ids = image_to_numpy(out.messages["panoptic_ids"])
    assert (ids[body] == 0).all() and np.array_equal(ids[~body], fixed.result.panoptic[~body])
    assert (image_to_numpy(out.messages["semantic"])[body] == 255).all()
    masked_ids = np.where(body, 0, fixed.result.panoptic)
    assert np.array_equal(image_to_numpy(out.messages["overlay"]), colorize(masked_ids, fixed.taxonomy, rgb))
    _, segments, _ = from_panoptic_segmentation(out.messages["panoptic"])
    areas = {s.id: s.area for s in segments}
    assert 26003 not in areas  # wholly under the mask
    assert areas[7000] == int(((masked_ids == 7000)).sum()) and areas[26002] == 18 * 20

    # The grid: cells seen through masked pixels are unknown (they were free without the mask); the car that
    # only met the masked rows has no visible contact any more, the other keeps its footprint.
    lookup = masked_pipeline.projector_for(camera_info(), W, H).lookup
    grid = np.asarray(out.messages["grid"].data, np.int8)
    before = np.asarray(plain.messages["grid"].data, np.int8)
    through_mask = lookup.cell_index[body.reshape(-1)[lookup.cell_pixel]]
    assert through_mask.size > 0 and (grid[through_mask] == UNKNOWN).all()
    assert (before[through_mask] != UNKNOWN).any()
    assert np.count_nonzero(grid == OCCUPIED) < np.count_nonzero(before == OCCUPIED)
    car2_cells = lookup.cell_index[(plain_ids := fixed.result.panoptic.reshape(-1))[lookup.cell_pixel] == 26002]
    assert (before[car2_cells] == OCCUPIED).any() and not (grid[car2_cells] == OCCUPIED).any()
    car1_cells = lookup.cell_index[plain_ids[lookup.cell_pixel] == 26001]
    assert (grid[car1_cells] == OCCUPIED).any()

    # A mask of another size is resized with nearest neighbour (said once); a missing file is refused.
    small = tmp_path / "ego_small.png"
    cv2.imwrite(str(small), mask[::2, ::2])
    half = FramePipeline.from_config(fixed, NodeConfig.from_values(dict(values, ego_mask=str(small))))
    out_half = half.process(msg, camera_info(), {"panoptic_ids"})
    assert np.array_equal(image_to_numpy(out_half.messages["panoptic_ids"]), ids)
    assert any(key == "ego_mask_size" for _, key, _ in out_half.events)
    with pytest.raises(ValueError, match="does not exist"):
        FramePipeline.from_config(fixed, NodeConfig.from_values(dict(values, ego_mask=str(tmp_path / "no.png"))))


def test_footprint_depth_parameters_reach_the_projector(predictor, config):
    """The node's footprint_depth.<class> parameters (defaults: bev.DEFAULT_FOOTPRINT_DEPTHS) set how deep a car
    on the grid is: 0 leaves its contact cells, the default covers its length behind them."""
    from panoptic_ros.bev import DEFAULT_FOOTPRINT_DEPTHS, OCCUPIED

    fixed = _FixedPredictor(predictor.taxonomy)
    rng = np.random.default_rng(6)
    _, msg = image(rng)
    values = {"grid.resolution": 0.1, "camera.pitch": 0.1, "camera.x": 0.0, "camera.z": 3.0}
    occupied = {}
    for depth in (0.0, None, 2.0):
        cfg = NodeConfig.from_values(values if depth is None else dict(values, **{"footprint_depth.car": depth}))
        pipeline = FramePipeline.from_config(fixed, cfg)
        out = pipeline.process(msg, camera_info(), {"grid"})
        projector = pipeline.projector_for(camera_info(), W, H)
        expected = DEFAULT_FOOTPRINT_DEPTHS["car"] if depth is None else depth
        assert projector.footprint_depth["car"] == expected
        assert projector.footprint_depth["traffic light"] == DEFAULT_FOOTPRINT_DEPTHS["traffic light"]
        occupied[depth] = np.count_nonzero(np.asarray(out.messages["grid"].data) == OCCUPIED)
    assert occupied[0.0] < occupied[2.0] < occupied[None]
