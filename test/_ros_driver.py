"""Test driver for test_ros_node.py, run as its own process: plays a camera to a running panoptic_node and
records everything the node publishes (pickled to --out). It checks nothing itself; the test does.

Scenarios:
  outputs   frames one at a time (waiting for all six outputs each), one malformed frame in the middle, and
            an extra grid subscriber with incompatible QoS (transient-local against the node's volatile).
  realtime  one frame with no output subscribed, then a subscribed burst faster than the node can process
            (stale frames must be dropped), over image/compressed when --compressed.
  tf        /tf_static base_link -> camera_optical_frame at --pose, one frame; then the pose moved +2 m in x on
            /tf_static, another frame (the node has no tf2_ros: its built-in buffer must follow).
"""
from __future__ import annotations

import argparse
import pickle
import sys
import time

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import MarkerArray

from panoptic_ros.msg import PanopticSegmentation
from panoptic_ros.ros.image_conversion import image_to_numpy, numpy_to_image, rgb_to_compressed
from panoptic_ros.ros.messages import from_panoptic_segmentation, header

NODE = "/panoptic_node"
OUTPUTS = {"panoptic": PanopticSegmentation, "panoptic_ids": Image, "semantic": Image, "overlay": Image,
           "grid": OccupancyGrid, "markers": MarkerArray}


def camera_info(width: int, height: int, stamp: Time) -> CameraInfo:
    f = width / 2.0  # 90 degree horizontal field of view
    k = [f, 0.0, width / 2.0, 0.0, f, height / 2.0, 0.0, 0.0, 1.0]
    return CameraInfo(header=header(stamp, "camera_optical_frame"), width=width, height=height,
                      distortion_model="plumb_bob", d=[0.0] * 5, k=k,
                      r=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0], p=k[:3] + [0.0] + k[3:6] + [0.0] + k[6:] + [0.0])


def summarize(name: str, msg) -> dict:
    """The parts of an output message the test compares (arrays as numpy)."""
    if name == "panoptic":
        ids, segments, _ = from_panoptic_segmentation(msg)
        return {"frame_id": msg.header.frame_id, "image_frame_id": msg.panoptic.header.frame_id, "ids": ids,
                "segments": [s.to_dict() for s in segments], "n_categories": len(msg.categories)}
    if name in ("panoptic_ids", "semantic", "overlay"):
        return {"frame_id": msg.header.frame_id, "encoding": msg.encoding, "array": image_to_numpy(msg)}
    if name == "grid":
        i = msg.info
        return {"frame_id": msg.header.frame_id, "data": np.asarray(msg.data, dtype=np.int8),
                "info": (i.resolution, i.width, i.height, i.origin.position.x, i.origin.position.y)}
    return {"frame_id": [m.header.frame_id for m in msg.markers], "actions": [m.action for m in msg.markers],
            "types": [m.type for m in msg.markers], "ids": [m.id for m in msg.markers]}


class Driver:
    def __init__(self, args):
        self.node = rclpy.create_node("panoptic_test_driver")
        self.args = args
        self.received: dict[tuple, dict] = {}  # (sec, nanosec) -> {output name: summary}
        self.diagnostics: list[dict] = []
        self.subs = {}
        reliability = ReliabilityPolicy.RELIABLE if args.reliable else ReliabilityPolicy.BEST_EFFORT
        qos = QoSProfile(depth=5, reliability=reliability)
        if args.compressed:
            self.pub_image = self.node.create_publisher(CompressedImage, "/camera/image_raw/compressed", qos)
        else:
            self.pub_image = self.node.create_publisher(Image, "/camera/image_raw", qos)
        self.pub_info = self.node.create_publisher(CameraInfo, "/camera/camera_info", qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def subscribe(self, names) -> None:
        for name in names:
            self.subs[name] = self.node.create_subscription(
                OUTPUTS[name], f"{NODE}/{name}", lambda m, n=name: self._on_output(n, m), QoSProfile(depth=10))

    def _on_output(self, name, msg) -> None:
        stamp = msg.markers[0].header.stamp if name == "markers" else msg.header.stamp
        self.received.setdefault((stamp.sec, stamp.nanosec), {})[name] = summarize(name, msg)

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith("panoptic_node"):
                self.diagnostics.append({"level": status.level[0] if isinstance(status.level, bytes)
                                         else int(status.level), "message": status.message,
                                         "values": {kv.key: kv.value for kv in status.values}})

    def value(self, key: str) -> int | None:
        """An integer value of the newest diagnostics message, None before the first."""
        return int(self.diagnostics[-1]["values"][key]) if self.diagnostics else None

    def spin_until(self, condition, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if condition():
                return True
            rclpy.spin_once(self.node, timeout_sec=0.05)
        return condition()

    def connected(self) -> bool:
        return (self.pub_image.get_subscription_count() > 0 and self.pub_info.get_subscription_count() > 0
                and all(s.get_publisher_count() > 0 for s in self.subs.values()))

    def send(self, rgb: np.ndarray, stamp: Time, bad: bool = False) -> None:
        h, w = rgb.shape[:2]
        self.pub_info.publish(camera_info(w, h, stamp))
        hdr = header(stamp, "camera_optical_frame")
        if self.args.compressed:
            self.pub_image.publish(rgb_to_compressed(rgb, "png", hdr))
            return
        msg = numpy_to_image(rgb, "rgb8", hdr)
        if bad:
            msg.step = w * 3 - 1  # shorter than a row: the node must reject the frame
        self.pub_image.publish(msg)


def frames(n: int, height: int, width: int, seed: int) -> list[np.ndarray]:
    """Blocky random street-ish images (smooth enough that a random network still sees regions)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
        img = np.kron(small, np.ones((8, 8, 1), np.uint8))
        img[height // 2:] = (img[height // 2:] // 4 + np.array([96, 48, 96], np.uint8))
        out.append(img)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["outputs", "realtime", "tf"])
    parser.add_argument("--pose", type=float, nargs=6, default=[0.5, 0.3, 1.8, 0.02, 0.12, -0.03],
                        help="x y z roll pitch yaw of the camera body in base_link (tf scenario)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--compressed", action="store_true")
    parser.add_argument("--reliable", action="store_true")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    rclpy.init()
    d = Driver(args)
    images = frames(args.frames, args.height, args.width, seed=7)
    sent, events = [], []
    if args.scenario == "outputs":
        d.subscribe(OUTPUTS)
        # Transient-local request against the node's volatile grid: incompatible, the node must say so.
        d.node.create_subscription(OccupancyGrid, f"{NODE}/grid", lambda m: None,
                                   QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        if not d.spin_until(d.connected, args.timeout):
            print("driver: node did not connect", file=sys.stderr)
            return 2
        # Seeing the node's subscription does not mean its reader has matched this writer yet: a best-effort
        # CameraInfo sent at once can be dropped, and the first frame then has no grid (seen once in CI-like
        # runs). Repeat it for a second first; the node keeps the latest.
        for _ in range(10):
            d.pub_info.publish(camera_info(args.width, args.height, Time(sec=99, nanosec=0)))
            d.spin_until(lambda: False, 0.1)
        for k, rgb in enumerate(images):
            if k == 1:  # a malformed frame between good ones
                bad_stamp = Time(sec=50, nanosec=1)
                d.send(rgb, bad_stamp, bad=True)
                events.append(("bad", (50, 1)))
                d.spin_until(lambda: any(x["level"] == 2 for x in d.diagnostics), 10.0)
            stamp = Time(sec=100 + k, nanosec=1000 * k)
            d.send(rgb, stamp)
            sent.append(((stamp.sec, stamp.nanosec), rgb))
            key = (stamp.sec, stamp.nanosec)
            d.spin_until(lambda: len(d.received.get(key, {})) == len(OUTPUTS), args.timeout)
    elif args.scenario == "tf":
        from dataclasses import astuple

        from geometry_msgs.msg import TransformStamped
        from tf2_msgs.msg import TFMessage

        from panoptic_ros.geometry import Pose, optical_transform_from_pose
        from panoptic_ros.ros.tf_listener import TF_STATIC_QOS

        def static_tf(pose: Pose) -> TFMessage:
            (x, y, z), (qx, qy, qz, qw) = optical_transform_from_pose(pose)
            tf = TransformStamped()
            tf.header = header(Time(sec=1, nanosec=0), "base_link")
            tf.child_frame_id = "camera_optical_frame"
            tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = x, y, z
            r = tf.transform.rotation
            r.x, r.y, r.z, r.w = qx, qy, qz, qw
            return TFMessage(transforms=[tf])

        d.subscribe(["panoptic_ids", "grid"])
        pub_tf = d.node.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
        if not d.spin_until(d.connected, args.timeout):
            print("driver: node did not connect", file=sys.stderr)
            return 2
        for _ in range(10):  # as in "outputs": the first best-effort CameraInfo may precede the match
            d.pub_info.publish(camera_info(args.width, args.height, Time(sec=99, nanosec=0)))
            d.spin_until(lambda: False, 0.1)
        first = Pose(*args.pose)
        for k, pose in enumerate((first, Pose(first.x + 2.0, *args.pose[1:]))):
            pub_tf.publish(static_tf(pose))
            d.spin_until(lambda: False, 1.0)  # reliable + transient local: delivered well within this
            stamp = Time(sec=100 + k, nanosec=0)
            d.send(images[0], stamp)
            sent.append(((stamp.sec, 0), images[0]))
            events.append(("pose", (stamp.sec, 0), astuple(pose)))
            d.spin_until(lambda: {"panoptic_ids", "grid"} <= set(d.received.get((stamp.sec, 0), {})), args.timeout)
    else:
        if not d.spin_until(lambda: d.pub_image.get_subscription_count() > 0 and d.diagnostics, args.timeout):
            return 2
        idle_stamp = Time(sec=10, nanosec=0)
        d.send(images[0], idle_stamp)  # nobody listens to any output: the node must skip it
        d.spin_until(lambda: d.value("frames skipped (no subscribers)") == 1, args.timeout)
        d.subscribe(["panoptic_ids"])
        if not d.spin_until(d.connected, args.timeout):
            return 2
        # Bursts much faster than inference. Paced, not back to back: a back-to-back burst is mostly overwritten
        # inside DDS's depth-1 reader queue before the node's callback sees it, so the node itself would have
        # nothing stale to drop. On a loaded machine few frames of a burst may reach the node at all, so up to
        # three bursts, each paced more slowly, until the node reports a dropped frame.
        for burst, pace in enumerate((0.004, 0.015, 0.04)):
            for k, rgb in enumerate(images):
                stamp = Time(sec=200 + 100 * burst + k, nanosec=0)
                d.send(rgb, stamp)
                sent.append(((stamp.sec, 0), rgb))
                time.sleep(pace)
            last = sent[-1][0]
            d.spin_until(lambda: last in d.received, args.timeout)
            d.spin_until(lambda: d.value("frames processed") == len(d.received), args.timeout)
            if d.value("frames dropped (stale)"):
                break
    with open(args.out, "wb") as f:
        pickle.dump({"sent": sent, "received": d.received, "diagnostics": d.diagnostics, "events": events}, f)
    d.node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
