"""rosbag2 drive bags: written by write_drive_bag, read back with rosbags (mcap and sqlite3)."""
import json

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from _samples import CITYSCAPES, make_frame
from panoptic_ros.data.bag import (CAMERA_INFO_TOPIC, GRID_TOPIC, IMAGE_TOPIC, PANOPTIC_TOPIC, SEGMENTS_TOPIC,
                                   SEMANTIC_TOPIC, TF_STATIC_TOPIC, bag_topics, occupancy_values, read_bag,
                                   read_raw, typestore, write_drive_bag)
from panoptic_ros.geometry import CameraModel, Pose, quaternion_from_rotation
from panoptic_ros.imaging import image_to_fields

FPS = 10.0


@pytest.fixture(scope="module")
def frames():
    return [make_frame(3, i, FPS) for i in range(4)]


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def bag(request, tmp_path_factory, frames):
    path = tmp_path_factory.mktemp(request.param) / "drive"
    assert write_drive_bag(path, iter(frames), FPS, storage=request.param, taxonomy=CITYSCAPES) == path
    files = {p.suffix for p in path.iterdir()}
    assert (".mcap" if request.param == "mcap" else ".db3") in files
    return path


def test_read_bag_round_trip(bag, frames):
    back = list(read_bag(bag))
    assert len(back) == len(frames)
    for f, b in zip(frames, back):
        np.testing.assert_array_equal(b.image, f.image)
        assert b.stamp_ns == f.stamp_ns and b.frame_id == "camera_optical_frame" and b.encoding == "rgb8"
        np.testing.assert_array_equal(b.panoptic, f.panoptic)
        assert b.panoptic.dtype == np.int32
        np.testing.assert_array_equal(b.semantic, f.semantic(CITYSCAPES))
        assert [s.to_coco() for s in b.segments] == [s.to_coco() for s in f.segments]
        assert [s.is_thing for s in b.segments] == [s.is_thing for s in f.segments]
        assert b.taxonomy() == CITYSCAPES
        np.testing.assert_array_equal(b.grid, occupancy_values(f.bev))
        assert b.grid_spec.shape == f.bev.grid.shape and b.grid_spec.frame_id == "base_link"
        assert b.grid_spec.x_min == f.bev.grid.x_min and b.grid_spec.y_min == f.bev.grid.y_min
        cam = b.camera
        assert (cam.width, cam.height, cam.frame_id, cam.parent_frame) == (64, 48, "camera_optical_frame",
                                                                           "base_link")
        np.testing.assert_allclose(cam.K, f.camera.K)
        np.testing.assert_allclose(cam.D, f.camera.D)
        assert b.camera_pose_from_tf
        np.testing.assert_allclose(cam.parent_from_optical(), f.camera.parent_from_optical(), atol=1e-12)
        np.testing.assert_allclose([cam.pose.x, cam.pose.y, cam.pose.z, cam.pose.roll, cam.pose.pitch, cam.pose.yaw],
                                   [1.2, 0.1, 1.6, 0.01, 0.08, -0.03], atol=1e-12)


def test_messages_as_rosbags_sees_them(bag, frames):
    """Check the recorded messages with rosbags alone (types, frame ids, stamps, field conventions)."""
    seen = {}
    with AnyReader([bag], default_typestore=typestore()) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types == {IMAGE_TOPIC: "sensor_msgs/msg/Image", CAMERA_INFO_TOPIC: "sensor_msgs/msg/CameraInfo",
                         TF_STATIC_TOPIC: "tf2_msgs/msg/TFMessage", PANOPTIC_TOPIC: "sensor_msgs/msg/Image",
                         SEMANTIC_TOPIC: "sensor_msgs/msg/Image", SEGMENTS_TOPIC: "std_msgs/msg/String",
                         GRID_TOPIC: "nav_msgs/msg/OccupancyGrid"}
        for conn, t, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            seen.setdefault(conn.topic, []).append((t, msg))
    stamps = [f.stamp_ns for f in frames]
    assert [t for t, _ in seen[IMAGE_TOPIC]] == stamps
    assert len(seen[TF_STATIC_TOPIC]) == 1  # the pose never changes
    tf = seen[TF_STATIC_TOPIC][0][1].transforms[0]
    assert (tf.header.frame_id, tf.child_frame_id) == ("base_link", "camera_optical_frame")
    for topic, encoding in [(IMAGE_TOPIC, "rgb8"), (PANOPTIC_TOPIC, "32SC1"), (SEMANTIC_TOPIC, "mono8")]:
        for (t, msg), stamp in zip(seen[topic], stamps):
            assert msg.encoding == encoding and msg.header.frame_id == "camera_optical_frame"
            assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == stamp == t
    img = seen[IMAGE_TOPIC][0][1]
    assert (img.height, img.width, img.step, img.is_bigendian) == (48, 64, 192, 0)
    np.testing.assert_array_equal(img.data.reshape(48, 64, 3), frames[0].image)
    info = seen[CAMERA_INFO_TOPIC][0][1]
    assert info.distortion_model == "plumb_bob" and info.header.frame_id == "camera_optical_frame"
    np.testing.assert_allclose(info.r, np.eye(3).ravel())
    # ROS pixel convention (centres at integers): the core's corner-origin principal point minus half a pixel
    ros_k = frames[0].camera.K - [[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]]
    np.testing.assert_allclose(info.k.reshape(3, 3), ros_k)
    np.testing.assert_allclose(info.p.reshape(3, 4), np.hstack([ros_k, np.zeros((3, 1))]))
    grid = seen[GRID_TOPIC][0][1]
    assert grid.header.frame_id == "base_link" and (grid.info.width, grid.info.height) == (20, 16)
    assert set(np.unique(grid.data)) == {-1, 0, 100}
    assert grid.info.origin.position.x == 0.0 and grid.info.origin.position.y == -4.0
    text = json.loads(seen[SEGMENTS_TOPIC][0][1].data)
    assert text["stamp_ns"] == stamps[0] and text["categories"] == CITYSCAPES.to_coco_categories()


def test_raw_reader_and_topics(bag, frames):
    raw = list(read_raw(bag))
    times = [m.timestamp_ns for m in raw]
    assert times == sorted(times) and len(raw) == 1 + 6 * len(frames)
    assert raw[0].topic == TF_STATIC_TOPIC and raw[0].msgtype == "tf2_msgs/msg/TFMessage"
    store = typestore()
    img = store.deserialize_cdr(next(m for m in raw if m.topic == IMAGE_TOPIC).data, "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(img.data.reshape(48, 64, 3), frames[0].image)
    only = list(read_raw(bag, [GRID_TOPIC]))
    assert len(only) == len(frames) and {m.topic for m in only} == {GRID_TOPIC}
    topics = bag_topics(bag)
    assert topics[TF_STATIC_TOPIC].latched and not topics[IMAGE_TOPIC].latched
    assert topics[IMAGE_TOPIC].count == len(frames) and topics[IMAGE_TOPIC].msgtype == "sensor_msgs/msg/Image"


def test_writer_rejects_bad_input(tmp_path, frames):
    with pytest.raises(ValueError, match="storage"):
        write_drive_bag(tmp_path / "a", frames, FPS, storage="rosbag1")
    with pytest.raises(ValueError, match="does not increase"):
        write_drive_bag(tmp_path / "b", [frames[1], frames[0]], FPS)
    with pytest.raises(ValueError, match="fps"):
        write_drive_bag(tmp_path / "c", frames, 0)


def test_read_foreign_bag(tmp_path):
    """A recording of another camera: bgr8 with padded rows, no ground truth, tf via an intermediate frame."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = typestore()
    T = store.types
    rng = np.random.default_rng(0)
    rgb = [rng.integers(0, 256, (6, 5, 3), dtype=np.uint8) for _ in range(3)]
    path = tmp_path / "foreign"

    def header(stamp, frame):
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=stamp // 10**9,
                                                                              nanosec=stamp % 10**9), frame_id=frame)

    def transform(parent, child, xyz, R):
        q = quaternion_from_rotation(R)
        return T["geometry_msgs/msg/TransformStamped"](
            header=header(0, parent), child_frame_id=child, transform=T["geometry_msgs/msg/Transform"](
                translation=T["geometry_msgs/msg/Vector3"](x=xyz[0], y=xyz[1], z=xyz[2]),
                rotation=T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3])))

    target = CameraModel.from_fov(5, 6, 60.0, Pose(0.5, 0.0, 2.0, 0.0, 0.2, 0.1), frame_id="cam_optical")
    Tbo = target.parent_from_optical()
    Tbl = np.eye(4)
    Tbl[:3, 3] = (0.3, 0.0, 0.5)  # base_link -> camera_link: a pure translation; the rest in link -> optical
    Tlo = np.linalg.inv(Tbl) @ Tbo
    with Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as w:
        tf = w.add_connection("/tf_static", "tf2_msgs/msg/TFMessage", typestore=store)
        cam = w.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=store)
        info = w.add_connection("/cam/info", "sensor_msgs/msg/CameraInfo", typestore=store)
        w.write(tf, 1, store.serialize_cdr(T["tf2_msgs/msg/TFMessage"](transforms=[
            transform("base_link", "camera_link", Tbl[:3, 3], Tbl[:3, :3]),
            transform("camera_link", "cam_optical", Tlo[:3, 3], Tlo[:3, :3])]), "tf2_msgs/msg/TFMessage"))
        for i, im in enumerate(rgb):
            f = image_to_fields(np.ascontiguousarray(im[..., ::-1]), "bgr8")
            padded = np.zeros((6, 16), np.uint8)
            padded[:, :15] = np.frombuffer(f["data"], np.uint8).reshape(6, 15)
            msg = T["sensor_msgs/msg/Image"](header=header(10**9 * (i + 1), "cam_optical"), height=6, width=5,
                                             encoding="bgr8", is_bigendian=0, step=16, data=padded.ravel())
            w.write(cam, 10**9 * (i + 1) + 5, store.serialize_cdr(msg, "sensor_msgs/msg/Image"))
            if i < 2:  # the last frame has no camera info: it is still handed out, without a camera
                K2 = target.camera_info_fields()["k"].reshape(3, 3)  # ROS convention (pixel centres at integers)
                K2[:2] *= 2  # a 10x12 sensor binned by 2 (image_geometry divides K's first two rows by 2)
                ci = T["sensor_msgs/msg/CameraInfo"](
                    header=header(10**9 * (i + 1), "cam_optical"), height=12, width=10, distortion_model="plumb_bob",
                    d=np.zeros(5), k=K2.ravel(), r=np.eye(3).ravel(), p=np.zeros(12), binning_x=2, binning_y=2,
                    roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                              do_rectify=False))
                w.write(info, 10**9 * (i + 1) + 9, store.serialize_cdr(ci, "sensor_msgs/msg/CameraInfo"))
    back = list(read_bag(path, image_topic="/cam/image", camera_info_topic="/cam/info"))
    assert [b.stamp_ns for b in back] == [10**9, 2 * 10**9, 3 * 10**9]
    for b, im in zip(back, rgb):
        np.testing.assert_array_equal(b.image, im)
        assert b.encoding == "bgr8" and b.frame_id == "cam_optical" and b.panoptic is None and b.grid is None
    assert back[2].camera is None
    for b in back[:2]:
        assert b.camera_pose_from_tf and (b.camera.width, b.camera.height) == (5, 6)
        np.testing.assert_allclose(b.camera.K, target.K, atol=1e-12)
        np.testing.assert_allclose(b.camera.parent_from_optical(), Tbo, atol=1e-12)
    with pytest.raises(ValueError, match="no topic /camera/image_raw"):
        list(read_bag(path))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_cli_bag_records_a_world_drive(tmp_path, storage):
    from panoptic_ros.data.cli import main
    from panoptic_ros.data.world import SyntheticWorld, WorldConfig

    out = tmp_path / "drive"
    args = ["bag", "--out", str(out), "--frames", "3", "--fps", "5", "--seed", "2", "--storage", storage,
            "--width", "96", "--height", "48", "--quiet"]
    assert main(args) == 0
    assert main(args) == 2  # the folder exists now: refused, not overwritten
    world = SyntheticWorld(WorldConfig(width=96, height=48), 2)
    frames = list(world.drive(3, 5.0))
    back = list(read_bag(out))
    assert [b.stamp_ns for b in back] == [f.stamp_ns for f in frames] == [0, 200_000_000, 400_000_000]
    for f, b in zip(frames, back):
        np.testing.assert_array_equal(b.image, f.image)
        np.testing.assert_array_equal(b.panoptic, f.panoptic)
        np.testing.assert_array_equal(b.grid, occupancy_values(f.bev))
        assert (b.grid == 100).any() and (b.grid == 0).any() and (b.grid == -1).any()
        np.testing.assert_allclose(b.camera.parent_from_optical(), f.camera.parent_from_optical(), atol=1e-12)


def test_read_compressed_images_with_gaps(tmp_path):
    """CompressedImage topics decode to RGB; frames whose camera info never comes are still handed out."""
    import cv2
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = typestore()
    T = store.types
    rng = np.random.default_rng(5)
    rgb = [rng.integers(0, 256, (8, 10, 3), dtype=np.uint8) for _ in range(5)]
    path = tmp_path / "compressed"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        cam = w.add_connection(IMAGE_TOPIC, "sensor_msgs/msg/CompressedImage", typestore=store)
        info = w.add_connection(CAMERA_INFO_TOPIC, "sensor_msgs/msg/CameraInfo", typestore=store)
        for i, im in enumerate(rgb):
            t = (i + 1) * 10**9
            header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=i + 1, nanosec=0),
                                              frame_id="cam")
            data = np.frombuffer(cv2.imencode(".png", im[..., ::-1])[1].tobytes(), np.uint8)
            w.write(cam, t, store.serialize_cdr(T["sensor_msgs/msg/CompressedImage"](header=header, format="png",
                                                                                    data=data),
                                                "sensor_msgs/msg/CompressedImage"))
            if i == 0:
                K = np.array([[10.0, 0, 5], [0, 10, 4], [0, 0, 1]])
                ci = T["sensor_msgs/msg/CameraInfo"](
                    header=header, height=8, width=10, distortion_model="plumb_bob", d=np.zeros(5), k=K.ravel(),
                    r=np.eye(3).ravel(), p=np.zeros(12), binning_x=0, binning_y=0,
                    roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                              do_rectify=False))
                w.write(info, t, store.serialize_cdr(ci, "sensor_msgs/msg/CameraInfo"))
    back = list(read_bag(path, max_wait_ns=10**9))
    assert [b.stamp_ns for b in back] == [(i + 1) * 10**9 for i in range(5)]
    for b, im in zip(back, rgb):
        np.testing.assert_array_equal(b.image, im)
        assert b.encoding == "png"
    assert back[0].camera is not None and not back[0].camera_pose_from_tf
    assert all(b.camera is None for b in back[1:])


def test_cli_bag_of_another_mount_carries_it_in_tf_static(tmp_path):
    """panoptic-world bag --camera-height/--pitch/--roll/--yaw/--camera-x: the pose read back from the bag's
    /tf_static through the node's TF buffer is that mount (REP 103 optical axes), and the bird's-eye truth is
    the one that camera sees: ground-truth labels projected with that pose reproduce its free cells."""
    from panoptic_ros.bev import GroundProjector
    from panoptic_ros.data.cli import main
    from panoptic_ros.geometry import pose_from_optical_transform
    from panoptic_ros.ros.tf_listener import add_tf_message
    from panoptic_ros.tf_buffer import TransformBuffer

    out = tmp_path / "mount"
    assert main(["bag", "--out", str(out), "--frames", "3", "--seed", "4", "--width", "320", "--height", "160",
                 "--camera-height", "1.9", "--pitch", "4", "--roll", "1", "--yaw", "-2", "--camera-x", "0.8",
                 "--quiet"]) == 0
    store = typestore()
    buffer = TransformBuffer()
    frames = iter(read_bag(out))
    ious = {"tf": [0, 0], "parameters": [0, 0]}
    for raw in read_raw(out, [TF_STATIC_TOPIC, IMAGE_TOPIC]):
        if raw.topic == TF_STATIC_TOPIC:
            assert add_tf_message(buffer, store.deserialize_cdr(raw.data, raw.msgtype), static=True) == []
            continue
        frame = next(frames)
        t, q = buffer.lookup("base_link", "camera_optical_frame", frame.stamp_ns)
        pose = pose_from_optical_transform(t, q)
        assert (pose.x, pose.y, pose.roll, pose.yaw) == pytest.approx((0.8, 0.0, np.radians(1), np.radians(-2)),
                                                                      abs=1e-9)
        assert pose.z == pytest.approx(1.9, abs=0.03) and pose.pitch == pytest.approx(np.radians(4), abs=np.radians(1))
        R = frame.camera.parent_from_optical()[:3, :3]
        assert R[0, 2] > 0.99 and R[1, 0] < -0.99 and R[2, 1] < -0.99  # optical z forward, x right, y down
        truth_free = frame.grid == 0
        for name, p in (("tf", pose), ("parameters", Pose(1.5, 0.0, 1.5, 0.0, 0.0, 0.0))):
            cam = frame.camera.with_pose(p)
            bev = GroundProjector(cam, frame.grid_spec, CITYSCAPES, max_range=40.0).project(frame.panoptic)
            xs, ys = frame.grid_spec.cell_centers()
            near = np.hypot(xs - pose.x, ys - pose.y) < 20
            pred_free = bev.occupancy == 0
            ious[name][0] += np.count_nonzero(near & pred_free & truth_free)
            ious[name][1] += np.count_nonzero(near & (pred_free | truth_free))
    tf_iou, param_iou = (ious[k][0] / ious[k][1] for k in ("tf", "parameters"))
    assert tf_iou > 0.97 and param_iou < tf_iou - 0.05, (tf_iou, param_iou)
