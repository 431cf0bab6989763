"""Core -> ROS message conversions, without DDS (messages are built, serialized and read back in-process)."""
from __future__ import annotations

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) is not installed")
pytest.importorskip("panoptic_ros.msg", reason="messages not generated: run bash tools/build_msgs.sh .venv")

from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from nav_msgs.msg import OccupancyGrid  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402

from panoptic_ros.bev import GroundProjector  # noqa: E402
from panoptic_ros.geometry import CameraModel, GridSpec, Pose  # noqa: E402
from panoptic_ros.msg import PanopticSegmentation  # noqa: E402
from panoptic_ros.panoptic import PanopticResult, colorize, encode_id, segments_from_ids, semantic_from_ids  # noqa: E402
from panoptic_ros.ros import messages  # noqa: E402
from panoptic_ros.ros.image_conversion import (compressed_to_rgb, image_to_numpy, image_to_rgb,  # noqa: E402
                                               numpy_to_image, rgb_to_compressed)
from panoptic_ros.taxonomy import Taxonomy  # noqa: E402

TAX = Taxonomy.cityscapes()
STAMP = Time(sec=1234, nanosec=567_000_000)


def roundtrip(msg):
    return deserialize_message(serialize_message(msg), type(msg))


def street_ids(h=60, w=80) -> np.ndarray:
    """Sky over road, a car standing on the road, a person, a void hole."""
    ids = np.zeros((h, w), np.int32)
    ids[: h // 2] = encode_id(TAX.by_name["sky"].id)
    ids[h // 2:] = encode_id(TAX.by_name["road"].id)
    ids[h // 2 - 6: h // 2 + 10, 30:50] = encode_id(TAX.by_name["car"].id, 3)
    ids[h // 2 - 8: h // 2 + 8, 60:64] = encode_id(TAX.by_name["person"].id, 1)
    ids[0:4, 0:4] = 0
    return ids


@pytest.mark.parametrize("encoding,dtype,shape", [("rgb8", np.uint8, (5, 7, 3)), ("mono8", np.uint8, (5, 7)),
                                                  ("16UC1", np.uint16, (5, 7)), ("32SC1", np.int32, (5, 7)),
                                                  ("32FC1", np.float32, (4, 3))])
def test_image_roundtrip_through_serialization(encoding, dtype, shape):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal(shape) * 1000).astype(dtype) if dtype != np.uint8 else \
        rng.integers(0, 256, shape, dtype=np.uint8)
    msg = roundtrip(numpy_to_image(array, encoding, messages.header(STAMP, "cam")))
    assert (msg.encoding, msg.height, msg.width, msg.header.frame_id) == (encoding, shape[0], shape[1], "cam")
    out = image_to_numpy(msg)
    assert out.dtype == dtype and np.array_equal(out, array)


def test_image_to_rgb_handles_bgr_and_row_padding():
    rgb = np.random.default_rng(1).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    padded = np.zeros((4, 5 * 3 + 3), np.uint8)
    padded[:, :15] = rgb[..., ::-1].reshape(4, 15)
    msg = Image(height=4, width=5, encoding="bgr8", step=18, data=padded.tobytes())
    assert np.array_equal(image_to_rgb(msg), rgb)


@pytest.mark.parametrize("field,value,needle", [("step", 10, "step"), ("encoding", "rgb9", "encoding"),
                                                ("height", 5, "bytes")])
def test_malformed_image_is_a_value_error(field, value, needle):
    msg = numpy_to_image(np.zeros((4, 5, 3), np.uint8), "rgb8")
    setattr(msg, field, value)
    with pytest.raises(ValueError, match=needle):
        image_to_rgb(msg)


def test_compressed_png_is_exact_and_garbage_is_rejected():
    rgb = np.random.default_rng(2).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    msg = roundtrip(rgb_to_compressed(rgb, "png"))
    assert msg.format.startswith("rgb8; png")
    assert np.array_equal(compressed_to_rgb(msg), rgb)
    jpeg = compressed_to_rgb(rgb_to_compressed(np.full((16, 16, 3), 90, np.uint8), "jpeg"))
    assert np.abs(jpeg.astype(int) - 90).max() <= 2
    with pytest.raises(ValueError, match="cannot decode"):
        compressed_to_rgb(CompressedImage(format="jpeg", data=b"not an image at all"))


def test_panoptic_segmentation_roundtrip():
    ids = street_ids()
    scores = {int(encode_id(26, 3)): 0.75}
    result = PanopticResult(ids, semantic_from_ids(ids, TAX), segments_from_ids(ids, TAX, scores))
    msg = roundtrip(messages.panoptic_segmentation(result, TAX, messages.header(STAMP, "camera_optical_frame")))
    assert msg.header.stamp == STAMP and msg.panoptic.header.stamp == STAMP
    assert msg.panoptic.encoding == "32SC1" and msg.header.frame_id == "camera_optical_frame"
    assert PanopticSegmentation.ID_OFFSET == 1000 and PanopticSegmentation.VOID_ID == 0
    back_ids, segments, taxonomy = messages.from_panoptic_segmentation(msg)
    assert np.array_equal(back_ids, ids)
    assert taxonomy == TAX
    assert [s.to_dict() for s in segments] == [s.to_dict() for s in result.segments]
    car = next(s for s in msg.segments if s.category_name == "car")
    assert (car.bbox.x_offset, car.bbox.y_offset, car.bbox.width, car.bbox.height) == (30, 24, 20, 16)
    assert car.is_thing and car.area == 20 * 16 and car.score == pytest.approx(0.75)
    sky = next(c for c in msg.categories if c.name == "sky")
    assert list(sky.color) == [70, 130, 180] and sky.train_id == 10 and not sky.is_thing


def test_label_images_and_overlay():
    ids = street_ids()
    rgb = np.random.default_rng(3).integers(0, 256, ids.shape + (3,), dtype=np.uint8)
    hdr = messages.header(STAMP, "cam")
    sem = messages.semantic_image(semantic_from_ids(ids, TAX), hdr)
    assert sem.encoding == "mono8" and np.array_equal(image_to_numpy(sem), semantic_from_ids(ids, TAX))
    overlay = messages.overlay_image(ids, TAX, rgb, hdr)
    assert overlay.encoding == "rgb8" and np.array_equal(image_to_numpy(overlay), colorize(ids, TAX, rgb))
    with pytest.raises(ValueError, match="semantic"):
        messages.semantic_image(ids, hdr)
    with pytest.raises(ValueError, match="overlay"):
        messages.overlay_image(ids, TAX, rgb[:10], hdr)


def projected():
    ids = street_ids()
    camera = CameraModel.from_fov(80, 60, 90.0, pose=Pose(z=1.5, pitch=0.2))
    grid = GridSpec(0.5, 0.0, 30.0, -10.0, 12.0)
    return GroundProjector(camera, grid, TAX, max_range=30.0).project(ids), grid


def test_occupancy_grid_matches_the_projection_and_layout():
    bev, grid = projected()
    msg = roundtrip(messages.bev_occupancy_grid(bev, STAMP, "base_link"))
    assert isinstance(msg, OccupancyGrid) and msg.header.frame_id == "base_link" and msg.header.stamp == STAMP
    assert (msg.info.width, msg.info.height, msg.info.resolution) == (60, 44, 0.5)
    assert (msg.info.origin.position.x, msg.info.origin.position.y) == (0.0, -10.0)
    assert msg.info.origin.orientation.w == 1.0
    data = np.asarray(msg.data, dtype=np.int8)
    assert np.array_equal(data, bev.occupancy_data())
    assert {0, 100} <= set(np.unique(data).tolist())  # the road is free, the car occupies cells
    # nav_msgs layout: cell index = row * width + col, cell (row, col) centred at origin + (col+.5, row+.5) * res
    r, c = np.argwhere(bev.occupancy == 100)[0]
    x = msg.info.origin.position.x + (c + 0.5) * msg.info.resolution
    y = msg.info.origin.position.y + (r + 0.5) * msg.info.resolution
    rr, cc, inside = grid.cell_of(x, y)
    assert inside and data[rr * msg.info.width + cc] == 100
    with pytest.raises(ValueError, match="cells"):
        messages.occupancy_grid(np.zeros(5, np.int8), grid, STAMP)


def test_footprint_markers():
    bev, _ = projected()
    assert bev.footprints, "the car must leave a footprint"
    msg = messages.footprint_markers(bev.footprints, TAX, STAMP, "base_link")
    first, rest = msg.markers[0], msg.markers[1:]
    assert first.action == Marker.DELETEALL
    assert len(rest) == 2 * len(bev.footprints)
    for fp, outline, label in zip(bev.footprints, rest[0::2], rest[1::2]):
        assert outline.type == Marker.LINE_STRIP and label.type == Marker.TEXT_VIEW_FACING
        assert outline.header.frame_id == "base_link" and outline.header.stamp == STAMP
        pts = np.array([[p.x, p.y] for p in outline.points])
        assert np.allclose(pts[:-1], fp.polygon) and np.allclose(pts[0], pts[-1])  # closed outline
        color = TAX.by_id[fp.category_id].color
        assert (round(outline.color.r * 255), round(outline.color.g * 255), round(outline.color.b * 255)) == color
        assert label.text == f"{TAX.by_id[fp.category_id].name} {fp.id}"
        assert (label.pose.position.x, label.pose.position.y) == pytest.approx(fp.centroid)
        assert outline.id == label.id == fp.id and (outline.ns, label.ns) == ("footprints", "labels")
        assert outline.scale.x == pytest.approx(0.1) and label.scale.z == pytest.approx(0.8)
        assert label.header.frame_id == "base_link" and label.pose.position.z == 1.0
    # Markers are built as copies of templates: no two may share their per-footprint parts.
    for part in ("points", "color", "pose"):
        assert len({id(getattr(m, part)) for m in rest[(part == "pose")::2]}) == len(bev.footprints)
    back = roundtrip(msg)  # and the array serialises as built (colours are float32 on the wire)
    assert [(m.id, m.ns, m.text, len(m.points)) for m in back.markers] == [(m.id, m.ns, m.text, len(m.points))
                                                                      for m in msg.markers]


def test_diagnostics_message():
    msg = roundtrip(messages.diagnostics(STAMP, "node", "warn", "slow", {"rate (Hz)": 2.5, "backend": "cpu"}, "cpu"))
    assert isinstance(msg, DiagnosticArray) and msg.header.stamp == STAMP
    status = msg.status[0]
    assert status.level == DiagnosticStatus.WARN and status.message == "slow" and status.hardware_id == "cpu"
    assert {kv.key: kv.value for kv in status.values} == {"rate (Hz)": "2.500", "backend": "cpu"}
    with pytest.raises(ValueError, match="level"):
        messages.diagnostics(STAMP, "node", "fine", "", {})
