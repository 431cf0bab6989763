"""Issue 9, reliability: bad input, model faults and backend faults against a PanopticNode running in this process.

Each bad-input case must give a clear log line (stderr, naming the frame's stamp), a /diagnostics status,
no output for that frame (or a documented fallback whose output is checked) and a node that still processes
the next good frame. The node is driven through its subscriptions' callbacks (found by topic name, as DDS
would call them) and observed through its topics, /diagnostics and its log; no DDS between processes here
(test_ros_node.py and bench/*.py do that).

Known gaps of the node are strict xfails whose reason says what is missing (none at the moment).
"""
from __future__ import annotations

import array
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) is not installed")
pytest.importorskip("panoptic_ros.msg", reason="messages not generated: run bash tools/build_msgs.sh .venv")

import rclpy  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from nav_msgs.msg import OccupancyGrid  # noqa: E402
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from panoptic_ros.ros.image_conversion import image_to_numpy, numpy_to_image  # noqa: E402
from panoptic_ros.ros.messages import header  # noqa: E402

pytestmark = pytest.mark.ros
HEIGHT, WIDTH = 96, 128
THROTTLE = 1.05  # the node throttles its per-frame error line to one a second
ERROR, WARN = 2, 1


# -- fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A small random-weight model at 64x96, saved the way training saves one."""
    import torch

    from panoptic_ros.model.checkpoint import build_metadata, save_checkpoint
    from panoptic_ros.model.network import PanopticNet
    from panoptic_ros.taxonomy import Taxonomy

    taxonomy = Taxonomy.cityscapes()
    torch.manual_seed(0)
    model = PanopticNet.from_config({"backbone": "resnet18", "fpn_channels": 64, "head_channels": 64},
                                    taxonomy=taxonomy)
    metadata = build_metadata(model, taxonomy, (64, 96), {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)})
    return save_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt", model, metadata)


@pytest.fixture(scope="module")
def ros_env(tmp_path_factory):
    """Process-wide DDS settings of this module: a private domain, localhost discovery, large-data transports."""
    keys = ("ROS_DOMAIN_ID", "FASTDDS_BUILTIN_TRANSPORTS", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOG_DIR",
            "RCUTILS_COLORIZED_OUTPUT", "PANOPTIC_ROS_CACHE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(ROS_DOMAIN_ID=str(20 + (os.getpid() * 13 + 5) % 200), FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA",
                      ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", RCUTILS_COLORIZED_OUTPUT="0",
                      ROS_LOG_DIR=str(tmp_path_factory.mktemp("ros_log")),
                      PANOPTIC_ROS_CACHE=str(tmp_path_factory.mktemp("cache")))
    yield int(os.environ["ROS_DOMAIN_ID"])
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def thread_errors():
    """Exceptions that escaped any thread (the node's worker included) while this module ran."""
    errors: list = []
    previous = threading.excepthook
    threading.excepthook = lambda args: errors.append(args)
    yield errors
    threading.excepthook = previous


class Harness:
    """A PanopticNode in its own rclpy context plus a listener node recording outputs and diagnostics."""

    OUTPUTS = {"panoptic_ids": Image, "semantic": Image, "grid": OccupancyGrid}

    def __init__(self, checkpoint: Path, domain: int, **params):
        from panoptic_ros.node import PanopticNode

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        values = {"model_path": str(checkpoint), "backend": "cpu", "threads": 1, "diagnostics_period": 0.2,
                  "grid.resolution": 0.5, "camera_pose_source": "parameters", **params}
        overrides = [Parameter(k, value=v) for k, v in values.items()]
        try:
            self.node = PanopticNode(context=self.context, parameter_overrides=overrides)
        except BaseException:
            rclpy.try_shutdown(context=self.context)
            raise
        self.listener = rclpy.create_node("reliability_listener", context=self.context)
        self.outputs: dict[tuple, dict] = {}
        self.diagnostics: list[dict] = []
        prefix = self.node.get_fully_qualified_name()
        for name, cls in self.OUTPUTS.items():
            self.listener.create_subscription(cls, f"{prefix}/{name}", lambda m, n=name: self._on_output(n, m),
                                              QoSProfile(depth=50))
        self.listener.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.listener)
        subs = {s.topic_name: s for s in self.node.subscriptions}
        self.image_callback = subs[self.node.image_topic].callback
        self.info_callback = subs[self.node.camera_info_topic].callback
        pubs = [p for p in self.node.publishers if p.topic_name.startswith(prefix + "/")]
        assert self.spin_until(lambda: all(p.get_subscription_count() > 0 for p in pubs
                                           if p.topic_name.rsplit("/", 1)[1] in self.OUTPUTS), 20.0)
        self.next_sec = 1000

    def close(self) -> None:
        self.executor.shutdown()
        self.listener.destroy_node()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    # outputs
    def _on_output(self, name, msg) -> None:
        data = image_to_numpy(msg) if isinstance(msg, Image) else np.asarray(msg.data, dtype=np.int8)
        self.outputs.setdefault((msg.header.stamp.sec, msg.header.stamp.nanosec), {})[name] = data

    def _on_diagnostics(self, msg) -> None:
        for s in msg.status:
            if s.name.startswith("panoptic_node"):
                level = s.level[0] if isinstance(s.level, bytes) else int(s.level)
                self.diagnostics.append({"level": level, "message": s.message, "t": time.monotonic(),
                                         "values": {kv.key: kv.value for kv in s.values}})

    def spin_until(self, condition, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if condition():
                return True
            if not self.context.ok():  # the node shut its context down (max_consecutive_failures)
                time.sleep(0.02)
                continue
            try:
                self.executor.spin_once(timeout_sec=0.02)
            except ExternalShutdownException:
                pass
        return condition()

    def counts(self) -> dict:
        """The node's frame counters (the totals /diagnostics reports)."""
        _, _, values = self.node.diagnostic_values()
        return {k: int(values[k]) for k in ("frames received", "frames processed", "frames dropped (stale)",
                                            "frames with bad input", "frames skipped (no subscribers)")}

    def settled(self) -> bool:
        c = self.counts()
        return c["frames received"] == (c["frames processed"] + c["frames dropped (stale)"]
                                        + c["frames with bad input"] + c["frames skipped (no subscribers)"])

    # inputs
    def stamp(self) -> Time:
        self.next_sec += 1
        return Time(sec=self.next_sec, nanosec=123)

    def send_info(self, width=WIDTH, height=HEIGHT, k=None, stamp=None, **fields) -> None:
        f = width / 2.0
        k = [f, 0.0, width / 2.0, 0.0, f, height / 2.0, 0.0, 0.0, 1.0] if k is None else k
        msg = CameraInfo(header=header(stamp or Time(), "camera_optical_frame"), width=width, height=height,
                         distortion_model="plumb_bob", d=[0.0] * 5, k=[float(v) for v in k], **fields)
        self.info_callback(msg)

    def send_image(self, msg: Image, stamp: Time | None = None, wait: float = 30.0) -> tuple:
        msg.header = header(stamp or self.stamp(), "camera_optical_frame")
        before = self.counts()["frames received"]
        self.image_callback(msg)
        assert self.counts()["frames received"] == before + 1
        assert self.spin_until(self.settled, wait), f"the node did not finish frame {msg.header.stamp}"
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        return key

    def wait_outputs(self, key, names=("panoptic_ids", "semantic"), timeout=10.0) -> dict:
        self.spin_until(lambda: set(names) <= set(self.outputs.get(key, {})), timeout)
        return self.outputs.get(key, {})

    def diagnostic_after(self, t0: float, level: int, text: str, timeout: float = 5.0) -> dict | None:
        def find():
            return next((d for d in self.diagnostics if d["t"] >= t0 and d["level"] == level and text in d["message"]),
                        None)
        self.spin_until(lambda: find() is not None, timeout)
        return find()


@pytest.fixture(scope="module")
def harness(checkpoint, ros_env, thread_errors):
    h = Harness(checkpoint, ros_env)
    h.send_info()
    yield h
    h.close()
    assert not thread_errors, f"exceptions escaped threads: {[(e.exc_type, e.exc_value) for e in thread_errors]}"


def street(height=HEIGHT, width=WIDTH, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    img = np.kron(small, np.ones((8, 8, 1), np.uint8))
    img[height // 2:] = img[height // 2:] // 4 + np.array([96, 48, 96], np.uint8)
    return img


def rgb8(img: np.ndarray) -> Image:
    return numpy_to_image(img, "rgb8")


def frame_text(key) -> str:
    return f"frame {key[0]}.{key[1]:09d}"


_last_bad = [0.0]


def expect_rejected(harness: Harness, capfd, msg: Image, fragment: str, counted: bool = True) -> None:
    """msg must be rejected: one log line naming its stamp and ``fragment``, an ERROR diagnostic, no output;
    then a good frame must still come out."""
    time.sleep(max(0.0, _last_bad[0] + THROTTLE - time.monotonic()))
    capfd.readouterr()
    bad_before = harness.counts()["frames with bad input"]
    t0 = time.monotonic()
    key = harness.send_image(msg)
    _last_bad[0] = time.monotonic()
    assert harness.counts()["frames with bad input"] == bad_before + int(counted)
    diag = harness.diagnostic_after(t0, ERROR, frame_text(key))
    assert diag is not None and fragment in diag["message"], \
        f"no ERROR diagnostic about {fragment!r}: {harness.diagnostics[-3:]}"
    lines = [ln for ln in capfd.readouterr().err.splitlines() if frame_text(key) in ln]
    assert len(lines) == 1 and "ERROR" in lines[0] and fragment in lines[0], lines
    good = harness.send_image(rgb8(street()))
    assert harness.wait_outputs(good), "the node stopped producing output after a bad frame"
    assert key not in harness.outputs, f"the rejected frame was published: {sorted(harness.outputs[key])}"


# -- bad images: rejected -----------------------------------------------------------------------------------------
def _with(msg: Image, **fields) -> Image:
    for k, v in fields.items():
        setattr(msg, k, v)
    return msg


BAD_IMAGES = {
    # name: (message factory, text the log line and diagnostic must contain)
    "misspelled encoding": (lambda: _with(rgb8(street()), encoding="rgb_8"), "did you mean 'rgb8'"),
    "wrong-case encoding": (lambda: _with(rgb8(street()), encoding="RGB8"), "did you mean 'rgb8'"),
    "unknown encoding": (lambda: _with(rgb8(street()), encoding="h264"), "unknown image encoding 'h264'"),
    "non-colour encoding": (lambda: numpy_to_image(np.zeros((HEIGHT, WIDTH), np.float32), "32FC1"),
                            "not a colour encoding"),
    "step shorter than a row": (lambda: _with(rgb8(street()), step=WIDTH * 3 - 1), "step"),
    "is_bigendian out of range": (lambda: _with(rgb8(street()), is_bigendian=7), "is_bigendian"),
    "zero size (empty image)": (lambda: Image(height=0, width=0, encoding="rgb8", step=0), "size must be positive"),
    "zero height": (lambda: _with(rgb8(street()), height=0, data=array.array("B")), "size must be positive"),
    "empty data": (lambda: _with(rgb8(street()), data=array.array("B")), "data has 0 bytes"),
    "huge size": (lambda: _with(rgb8(street()), height=1 << 20, width=1 << 20, step=3 << 20), "max_pixels"),
    "data shorter than declared": (lambda: _with(rgb8(street()), data=array.array("B", bytes(WIDTH * 3 * 50))),
                                   "data has"),
    "too small to segment": (lambda: rgb8(np.full((4, 4, 3), 128, np.uint8)), "too small"),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_bad_image_is_rejected_and_reported(harness, capfd, case):
    factory, fragment = BAD_IMAGES[case]
    expect_rejected(harness, capfd, factory(), fragment)


# -- unusual but valid images: a documented fallback, exact output --------------------------------------------------
def test_padded_step_and_byte_order_give_the_same_output(harness):
    """Row padding, 16-bit data (high byte kept) and big-endian 16-bit data are read, not rejected: the outputs
    equal those of the plain rgb8 frame."""
    img = street(seed=3)
    reference = harness.wait_outputs(harness.send_image(rgb8(img)))["panoptic_ids"]
    padded = rgb8(img)
    rows = np.frombuffer(bytes(padded.data), np.uint8).reshape(HEIGHT, WIDTH * 3)
    padded.step = WIDTH * 3 + 13
    padded.data = array.array("B", np.pad(rows, ((0, 0), (0, 13)), constant_values=255).tobytes())
    big8 = _with(rgb8(img), is_bigendian=1)  # byte order is meaningless for 8-bit data
    wide = img.astype(np.uint16) << 8 | 0x5A
    little16 = numpy_to_image(wide, "rgb16")
    big16 = numpy_to_image(wide.byteswap(), "rgb16")
    big16.is_bigendian = 1
    for name, msg in (("padded step", padded), ("rgb8 is_bigendian=1", big8), ("rgb16", little16),
                      ("rgb16 big-endian", big16)):
        got = harness.wait_outputs(harness.send_image(msg))
        assert "panoptic_ids" in got, f"{name}: no output"
        assert np.array_equal(got["panoptic_ids"], reference), f"{name}: output differs from the plain rgb8 frame"


# -- camera calibration ------------------------------------------------------------------------------------------
def _grid_rejected(harness: Harness, capfd, fragment: str, **info) -> None:
    """With this CameraInfo the grid cannot be built: the image outputs still come out (fallback), the grid does
    not, and the log and an ERROR diagnostic say why."""
    time.sleep(max(0.0, _last_bad[0] + THROTTLE - time.monotonic()))
    capfd.readouterr()
    harness.send_info(**info)
    t0 = time.monotonic()
    key = harness.send_image(rgb8(street()))
    _last_bad[0] = time.monotonic()
    got = harness.wait_outputs(key)
    assert {"panoptic_ids", "semantic"} <= set(got), "image outputs must not depend on the calibration"
    diag = harness.diagnostic_after(t0, ERROR, fragment)
    assert diag is not None, f"no ERROR diagnostic about {fragment!r}: {harness.diagnostics[-3:]}"
    lines = [ln for ln in capfd.readouterr().err.splitlines() if frame_text(key) in ln]
    assert len(lines) == 1 and fragment in lines[0], lines
    harness.spin_until(lambda: False, 0.3)
    assert "grid" not in harness.outputs[key], "a grid was published from an unusable CameraInfo"
    harness.send_info()  # a good calibration brings the grid back
    good = harness.send_image(rgb8(street()))
    assert "grid" in harness.wait_outputs(good, names=("panoptic_ids", "grid"))


def test_all_zero_k(harness, capfd):
    _grid_rejected(harness, capfd, "not a valid camera matrix", k=[0.0] * 9)


def test_camera_info_of_another_resolution(harness, capfd):
    _grid_rejected(harness, capfd, "CameraInfo describes a 640x480 image but the images are 128x96",
                   width=640, height=480)


def test_k_of_another_resolution_with_matching_size(harness, capfd):
    f = 640 / 2.0
    _grid_rejected(harness, capfd, "principal point", k=[f, 0.0, 640.0, 0.0, f, 480.0, 0.0, 0.0, 1.0])


def test_resolution_change_mid_stream(harness, capfd):
    """Images switch to 96x64 before their CameraInfo does: the image outputs follow at once (at the new size),
    the grid pauses with an error naming both sizes, and comes back when CameraInfo catches up."""
    time.sleep(max(0.0, _last_bad[0] + THROTTLE - time.monotonic()))
    harness.send_info()
    assert "grid" in harness.wait_outputs(harness.send_image(rgb8(street())), names=("panoptic_ids", "grid"))
    capfd.readouterr()
    t0 = time.monotonic()
    key = harness.send_image(rgb8(street(64, 96)))
    _last_bad[0] = time.monotonic()
    got = harness.wait_outputs(key)
    assert got["panoptic_ids"].shape == (64, 96) and got["semantic"].shape == (64, 96)
    assert harness.diagnostic_after(t0, ERROR, "describes a 128x96 image but the images are 96x64") is not None
    assert "but the images are 96x64" in capfd.readouterr().err
    harness.spin_until(lambda: False, 0.3)
    assert "grid" not in harness.outputs[key]
    harness.send_info(96, 64)
    key = harness.send_image(rgb8(street(64, 96)))
    assert "grid" in harness.wait_outputs(key, names=("panoptic_ids", "grid"))
    assert "ground lookup for a 96x64 camera built" in capfd.readouterr().err
    harness.send_info()


@pytest.fixture()
def fresh(checkpoint, ros_env, thread_errors):
    """A node of its own (for tests that need a state the module's node has left behind)."""
    made = []

    def make(**params) -> Harness:
        made.append(Harness(checkpoint, ros_env, **params))
        return made[-1]

    yield make
    for h in made:
        h.close()


def test_missing_camera_info_keeps_the_image_outputs(fresh, capfd):
    h = fresh()
    key = h.send_image(rgb8(street()))
    got = h.wait_outputs(key)
    assert {"panoptic_ids", "semantic"} <= set(got)
    h.spin_until(lambda: False, 0.3)
    assert "grid" not in h.outputs[key]
    assert "no CameraInfo received on /camera_info yet" in capfd.readouterr().err


def test_head_stride_parameter_reaches_the_predictor_and_outputs_keep_the_image_size(fresh):
    h = fresh(head_stride=2)
    assert h.node.predictor.head_stride == 2
    h.send_info()
    key = h.send_image(rgb8(street()))
    got = h.wait_outputs(key, names=("panoptic_ids", "semantic"))
    assert got["panoptic_ids"].shape == got["semantic"].shape == (HEIGHT, WIDTH)


def test_missing_camera_info_is_a_diagnostics_warning(fresh):
    """Without CameraInfo /diagnostics says WARN (naming CameraInfo) and there is no grid; once CameraInfo
    arrives the grid comes out and the status is back to OK."""
    h = fresh()
    t0 = time.monotonic()
    key = h.send_image(rgb8(street()))
    h.wait_outputs(key)
    assert h.diagnostic_after(t0, WARN, "CameraInfo") is not None, h.diagnostics[-1:]
    h.spin_until(lambda: False, 0.3)
    assert "grid" not in h.outputs[key]
    h.send_info()
    t1 = time.monotonic()
    assert "grid" in h.wait_outputs(h.send_image(rgb8(street())), names=("panoptic_ids", "grid"))
    assert h.diagnostic_after(t1, 0, "running") is not None, h.diagnostics[-2:]
    assert not any("CameraInfo" in d["message"] for d in h.diagnostics if d["t"] > t1 + 0.3)


def test_each_kind_of_bad_input_gets_its_own_log_line(harness, capfd):
    """Log lines are throttled per kind of problem: a second kind within the second is logged, the first kind
    again within the second is not, and a period later it is, with the count it held back."""
    time.sleep(max(0.0, _last_bad[0] + THROTTLE - time.monotonic()))
    capfd.readouterr()
    t0 = time.monotonic()
    first = harness.send_image(_with(rgb8(street()), encoding="rgb_8"))
    other = harness.send_image(_with(rgb8(street()), step=WIDTH * 3 - 1))
    again = harness.send_image(_with(rgb8(street()), encoding="rgb_8"))
    assert time.monotonic() - t0 < 1.0, "too slow to test a 1 s throttle"
    time.sleep(THROTTLE)
    later = harness.send_image(_with(rgb8(street()), encoding="rgb_8"))
    _last_bad[0] = time.monotonic()
    err = capfd.readouterr().err.splitlines()

    def lines(key):
        return [ln for ln in err if frame_text(key) in ln]

    assert len(lines(first)) == 1 and "did you mean 'rgb8'" in lines(first)[0], err[-5:]
    assert len(lines(other)) == 1 and "step" in lines(other)[0], "a second kind of problem was not logged"
    assert lines(again) == [], "the same problem within a second must stay throttled"
    assert len(lines(later)) == 1 and "(1 more like this since the last such line)" in lines(later)[0]


def test_timestamps_going_backwards_are_reported(harness, capfd):
    time.sleep(max(0.0, _last_bad[0] + 2.1 - time.monotonic()))  # past the ERROR window of earlier faults
    capfd.readouterr()
    later = harness.send_image(rgb8(street()), Time(sec=5000, nanosec=0))
    t0 = time.monotonic()
    earlier = harness.send_image(rgb8(street()), Time(sec=4000, nanosec=0))
    # Fallback: the frame after the jump is still processed, stamped with its own stamp.
    assert harness.wait_outputs(later) and harness.wait_outputs(earlier)
    err = capfd.readouterr().err
    assert re.search(r"(backwards|back in time|jumped back)", err), err[-2000:]
    assert harness.diagnostic_after(t0, WARN, "back") is not None


# -- network and backend faults mid-run --------------------------------------------------------------------------
class FaultyRun:
    """Wraps the node's backend ``run``: for ``times`` calls, either raise ``error`` or return NaN / inf outputs."""

    def __init__(self, backend, times: int, error: Exception | None = None, value: float = float("nan")):
        self.backend, self.original, self.left = backend, backend.run, times
        self.error, self.value = error, value
        backend.run = self

    def __call__(self, images):
        out = self.original(images)
        if self.left <= 0:
            return out
        self.left -= 1
        if self.error is not None:
            raise self.error
        out = dict(out)
        out["semantic"] = out["semantic"].clone()
        out["semantic"][..., 0, 0] = self.value
        return out

    def restore(self):
        self.backend.run = self.original


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_or_inf_network_output_is_not_published(harness, capfd, value):
    fault = FaultyRun(harness.node.predictor.backend, times=1, value=value)
    try:
        expect_rejected(harness, capfd, rgb8(street()), "NaN or inf")
    finally:
        fault.restore()


def test_backend_failure_mid_run_is_reported_and_recovers(harness, capfd):
    """Three frames hit a failing backend: each is counted as bad and not published, the log and an ERROR
    diagnostic carry the backend's message, and the node recovers by itself once the backend works again."""
    time.sleep(max(0.0, _last_bad[0] + THROTTLE - time.monotonic()))
    capfd.readouterr()
    bad_before = harness.counts()["frames with bad input"]
    fault = FaultyRun(harness.node.predictor.backend, times=3, error=RuntimeError("CUDA error: an illegal memory access"))
    try:
        t0 = time.monotonic()
        keys = [harness.send_image(rgb8(street())) for _ in range(3)]
        _last_bad[0] = time.monotonic()
        assert fault.left == 0 and harness.counts()["frames with bad input"] == bad_before + 3
        diag = harness.diagnostic_after(t0, ERROR, "processing failed: RuntimeError: CUDA error: an illegal memory")
        assert diag is not None, harness.diagnostics[-3:]
        err = capfd.readouterr().err
        assert f"{frame_text(keys[0])} on /image: processing failed: RuntimeError: CUDA error" in err, err[-2000:]
        good = harness.send_image(rgb8(street()))
        assert harness.wait_outputs(good), "the node did not recover"
        assert not set(keys) & set(harness.outputs), "a frame that failed in the backend was published"
    finally:
        fault.restore()


def test_backend_failure_mid_run_stops_cleanly_when_configured(fresh, capfd):
    h = fresh(max_consecutive_failures=3)
    h.send_info()
    fault = FaultyRun(h.node.predictor.backend, times=100, error=RuntimeError("device lost"))
    try:
        for _ in range(3):
            h.send_image(rgb8(street()))
        assert h.spin_until(lambda: not h.context.ok(), 5.0), "the node did not stop"
        err = capfd.readouterr().err
        assert "FATAL" in err and "device lost" in err and "3 consecutive" in err
    finally:
        fault.restore()


# -- model faults at start: one clear FATAL line, exit code 1, no traceback ------------------------------------------
def _run_main(args: list[str], capfd) -> tuple[int, str]:
    from panoptic_ros import node as node_module

    previous = signal.getsignal(signal.SIGTERM)
    capfd.readouterr()
    try:
        code = node_module.main(["--ros-args", "-p", "threads:=1", *args])
    finally:
        signal.signal(signal.SIGTERM, previous)
    out = capfd.readouterr()
    return code, out.out + out.err


@pytest.fixture(scope="module")
def bad_checkpoints(checkpoint, tmp_path_factory) -> dict:
    import torch

    from panoptic_ros.model.checkpoint import build_metadata, save_checkpoint
    from panoptic_ros.model.network import PanopticNet
    from panoptic_ros.taxonomy import Taxonomy

    root = tmp_path_factory.mktemp("bad_models")
    data = checkpoint.read_bytes()
    (root / "truncated.pt").write_bytes(data[: len(data) // 2])
    torch.save({"state_dict": {"w": torch.zeros(3)}}, root / "foreign.pt")  # a torch file, not ours
    (root / "text.pt").write_text("not a checkpoint\n")
    cityscapes = Taxonomy.cityscapes()
    model = PanopticNet.from_config({"backbone": "resnet18", "fpn_channels": 64, "head_channels": 64},
                                    taxonomy=cityscapes)
    norm = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    metadata = build_metadata(model, cityscapes, (64, 96), norm)
    fewer = cityscapes.to_dict()
    fewer["categories"] = fewer["categories"][:-1]  # the class list lost a class the weights still have
    metadata["taxonomy"] = fewer
    save_checkpoint(root / "class_mismatch.pt", model, metadata)
    return {"missing": (root / "missing.pt", "does not exist"),
            "truncated": (root / "truncated.pt", "corrupt or not a torch file"),
            "not a torch file": (root / "text.pt", "corrupt or not a torch file"),
            "foreign": (root / "foreign.pt", "is not a panoptic_ros.checkpoint/1 checkpoint"),
            "class list mismatch": (root / "class_mismatch.pt", "")}


@pytest.mark.parametrize("case", ["missing", "truncated", "not a torch file", "foreign", "class list mismatch"])
def test_bad_checkpoint_stops_the_node_with_one_clear_line(bad_checkpoints, ros_env, capfd, case):
    path, fragment = bad_checkpoints[case]
    code, text = _run_main(["-p", f"model_path:={path}", "-p", "backend:=cpu"], capfd)
    assert code == 1, text
    fatal = [ln for ln in text.splitlines() if "FATAL" in ln]
    assert len(fatal) == 1 and "CheckpointError" in fatal[0] and str(path) in fatal[0] and fragment in fatal[0], text
    assert "Traceback" not in text, text


def test_misspelled_class_in_the_grid_classes_fails_at_start(checkpoint, ros_env):
    with pytest.raises(ValueError, match="rood"):
        Harness(checkpoint, ros_env, free_classes=["rood", "sidewalk"]).close()


def test_unavailable_backend_requested_explicitly_fails_at_start(checkpoint, ros_env, capfd):
    code, text = _run_main(["-p", f"model_path:={checkpoint}", "-p", "backend:=tensorrt"], capfd)
    assert code == 1 and "Traceback" not in text, text
    fatal = [ln for ln in text.splitlines() if "FATAL" in ln]
    assert len(fatal) == 1 and "BackendUnavailable" in fatal[0] and "CUDA is not available" in fatal[0], text


def _camera_thread(domain: int, stop: threading.Event, sent: list) -> None:
    """Another participant in this process: publishes rgb8 frames on /image and subscribes to the node's ids
    output (so the node does not skip frames for want of subscribers)."""
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    try:
        node = rclpy.create_node("fake_camera", context=context)
        pub = node.create_publisher(Image, "/image", 1)
        node.create_subscription(Image, "/panoptic_node/panoptic_ids", lambda m: None, 1)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        end = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < end:
            msg = rgb8(street())
            msg.header = header(Time(sec=len(sent) + 1, nanosec=0), "camera_optical_frame")
            pub.publish(msg)
            sent.append(msg.header.stamp.sec)
            executor.spin_once(timeout_sec=0.2)
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_panoptic_node_exits_1_after_max_consecutive_failures(checkpoint, ros_env, capfd, monkeypatch):
    """main() end to end: the backend fails on every frame after the warm-up; with max_consecutive_failures:=2
    the node logs one FATAL line with the reason and main returns exit code 1, without a traceback."""
    from panoptic_ros.predictor import Predictor

    original, calls = Predictor.predict, [0]

    def failing_after_warmup(self, image):
        calls[0] += 1
        if calls[0] == 1:
            return original(self, image)
        raise RuntimeError("device lost")

    monkeypatch.setattr(Predictor, "predict", failing_after_warmup)
    # A domain of their own: the module's harness node also subscribes /image and must not get these frames.
    domain = ros_env + 1
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    stop, sent = threading.Event(), []
    camera = threading.Thread(target=_camera_thread, args=(domain, stop, sent), daemon=True)
    camera.start()
    try:
        code, text = _run_main(["-p", f"model_path:={checkpoint}", "-p", "backend:=cpu",
                                "-p", "max_consecutive_failures:=2"], capfd)
    finally:
        stop.set()
        camera.join(timeout=30)
    assert code == 1, text
    fatal = [ln for ln in text.splitlines() if "FATAL" in ln]
    assert len(fatal) == 1 and "2 consecutive frames failed in the backend" in fatal[0] \
        and "RuntimeError: device lost" in fatal[0], text
    assert "Traceback" not in text and calls[0] == 3, (calls, text)


# -- camera pose from TF (issue 6), with a stand-in tf2_ros module (the real one is not installable here) -------------
class FakeTfBuffer:
    """Duck-types tf2_ros.Buffer.lookup_transform; returns geometry_msgs/TransformStamped or raises."""

    def __init__(self):
        self.transforms, self.calls = {}, []

    def lookup_transform(self, target_frame, source_frame, time, timeout=None):
        self.calls.append((target_frame, source_frame))
        if (target_frame, source_frame) not in self.transforms:
            raise LookupError(f'"{source_frame}" passed to lookupTransform argument source_frame does not exist')
        return self.transforms[(target_frame, source_frame)]


@pytest.fixture()
def fake_tf2_ros(monkeypatch):
    import types

    module = types.ModuleType("tf2_ros")
    module.buffer = FakeTfBuffer()
    module.listeners = []
    module.Buffer = lambda: module.buffer
    module.TransformListener = lambda buffer, node: module.listeners.append((buffer, node))
    monkeypatch.setitem(sys.modules, "tf2_ros", module)
    return module


def _transform(pose, parent="base_link", child="camera_optical_frame"):
    from geometry_msgs.msg import TransformStamped

    from panoptic_ros.geometry import optical_transform_from_pose

    msg = TransformStamped()
    msg.header.frame_id, msg.child_frame_id = parent, child
    t, q = optical_transform_from_pose(pose)
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = t
    msg.transform.rotation.x, msg.transform.rotation.y, msg.transform.rotation.z, msg.transform.rotation.w = q
    return msg


def _expected_grid(ids: np.ndarray, pose) -> np.ndarray:
    from panoptic_ros.bev import GroundProjector
    from panoptic_ros.geometry import CameraModel, GridSpec
    from panoptic_ros.taxonomy import Taxonomy

    f = WIDTH / 2.0
    camera = CameraModel.from_camera_info(WIDTH, HEIGHT, [f, 0, WIDTH / 2.0, 0, f, HEIGHT / 2.0, 0, 0, 1], [0.0] * 5,
                                          pose=pose)
    projector = GroundProjector(camera, GridSpec(0.5, 0.0, 40.0, -20.0, 20.0, "base_link"), Taxonomy.cityscapes(),
                                max_range=40.0)
    return projector.project(ids).occupancy_data()


def road_below_building(backend) -> None:
    """Make the backend's semantic logits say building above the image's middle row and road below it."""
    import torch

    original = backend.run

    def run(images):
        out = dict(original(images))
        logits = torch.zeros_like(out["semantic"])
        rows = logits.shape[-2]
        logits[:, 2, : rows // 2] = 20.0  # train id 2: building
        logits[:, 0, rows // 2:] = 20.0  # train id 0: road
        out["semantic"] = logits
        return out

    backend.run = run


def test_camera_pose_from_tf(fresh, fake_tf2_ros, capfd):
    """camera_pose_source tf with tf2_ros importable: the node says it uses TF; a frame whose transform is
    missing gets its image outputs but no grid, a throttled warning and a WARN diagnostic; once TF has the
    transform, the grid is the one the core computes for that pose (not for the camera.* parameters)."""
    from panoptic_ros.geometry import Pose

    h = fresh(camera_pose_source="tf")
    err = capfd.readouterr().err
    assert "camera pose from TF: base_link <- the image's header.frame_id" in err
    assert "(camera_pose_source is tf and tf2_ros is importable)" in err
    assert fake_tf2_ros.listeners == [(fake_tf2_ros.buffer, h.node)]
    h.send_info()
    t0 = time.monotonic()
    missing = h.send_image(rgb8(street()))
    got = h.wait_outputs(missing)
    assert {"panoptic_ids", "semantic"} <= set(got)
    diag = h.diagnostic_after(t0, WARN, "no transform base_link <- camera_optical_frame")
    assert diag is not None and diag["values"]["camera pose source"] == "tf", h.diagnostics[-2:]
    h.spin_until(lambda: False, 0.3)
    assert "grid" not in h.outputs[missing]
    err = capfd.readouterr().err
    assert f"{frame_text(missing)} on /image: no camera pose, ~/grid and ~/markers not published" in err
    h.send_image(rgb8(street()))  # the same problem again within the second: no second line
    assert "no camera pose" not in capfd.readouterr().err

    pose = Pose(1.2, 0.3, 1.6, 0.02, 0.12, -0.05)
    fake_tf2_ros.buffer.transforms[("base_link", "camera_optical_frame")] = _transform(pose)
    road_below_building(h.node.predictor.backend)  # the random model labels everything void: no grid to compare
    t1 = time.monotonic()
    key = h.send_image(rgb8(street()))
    got = h.wait_outputs(key, names=("panoptic_ids", "grid"))
    assert "grid" in got
    expected = _expected_grid(got["panoptic_ids"], pose)
    assert (expected == 0).sum() > 100, "the road should give free cells"
    assert np.array_equal(got["grid"], expected)
    assert not np.array_equal(expected, _expected_grid(got["panoptic_ids"], Pose(1.5, 0.0, 1.5, 0.0, 0.0, 0.0))), \
        "test needs a pose whose grid differs from the parameters' grid"
    assert h.diagnostic_after(t1 + 0.05, 0, "running") is not None, h.diagnostics[-2:]
    assert fake_tf2_ros.buffer.calls[-1] == ("base_link", "camera_optical_frame")


def test_builtin_tf_buffer_and_the_auto_fallback(fresh, capfd):
    """No tf2_ros: the node subscribes /tf_static itself. Under auto, a frame before any transform gets the
    camera.* grid with a warning and a WARN diagnostic; a transform on /tf_static (real DDS, transient local)
    then gives the grid of that pose and diagnostics OK."""
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tf2_ros is installed here; this test checks the built-in buffer")
    from tf2_msgs.msg import TFMessage

    from panoptic_ros.geometry import Pose
    from panoptic_ros.ros.tf_listener import TF_STATIC_QOS

    h = fresh(camera_pose_source="auto")
    err = capfd.readouterr().err
    assert "camera pose from TF (built-in buffer of /tf and /tf_static)" in err and "tf2_ros cannot be imported" in err
    road_below_building(h.node.predictor.backend)
    h.send_info()
    t0 = time.monotonic()
    key = h.send_image(rgb8(street()))
    got = h.wait_outputs(key, names=("panoptic_ids", "grid"))
    params = Pose(1.5, 0.0, 1.5, 0.0, 0.0, 0.0)
    assert np.array_equal(got["grid"], _expected_grid(got["panoptic_ids"], params))
    diag = h.diagnostic_after(t0, WARN, "camera pose from the camera.* parameters")
    assert diag is not None and diag["values"]["camera pose source"] == "tf (built-in buffer)", h.diagnostics[-2:]
    assert "not TF: no transform base_link <- camera_optical_frame" in capfd.readouterr().err
    bad = rgb8(street())
    bad.step -= 1  # an error line after the fallback's warning line (one rclpy call site cannot log at both)
    h.send_image(bad)
    assert "cannot read image" in capfd.readouterr().err

    pose = Pose(0.7, -0.4, 1.9, 0.03, 0.1, 0.04)
    pub = h.listener.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
    pub.publish(TFMessage(transforms=[_transform(pose)]))
    assert h.spin_until(lambda: "camera_optical_frame" in h.node._tf_buffer.frames(), 10.0)
    t1 = time.monotonic()
    key = h.send_image(rgb8(street()))
    got = h.wait_outputs(key, names=("panoptic_ids", "grid"))
    expected = _expected_grid(got["panoptic_ids"], pose)
    assert (expected == 0).sum() > 100 and not np.array_equal(expected, _expected_grid(got["panoptic_ids"], params))
    assert np.array_equal(got["grid"], expected)
    assert h.diagnostic_after(t1 + 0.05, 0, "running") is not None, h.diagnostics[-2:]


@pytest.mark.slow
def test_auto_backend_falls_back_by_its_rules(fresh):
    """No TensorRT / CUDA here: auto must skip them, probe the CPU candidates (runtime.auto) and run on the
    fastest correct one, with a reason for every other."""
    from panoptic_ros.runtime.auto import CPU_CANDIDATES

    h = fresh(backend="auto")
    backend = h.node.predictor.backend
    chosen = f"{backend.name}/{backend.describe()['precision']}"
    assert chosen in {f"{n}/{p}" for n, p in CPU_CANDIDATES}
    assert set(backend.skipped) == {"tensorrt", "cuda"} | {f"{n}/{p}" for n, p in CPU_CANDIDATES} - {chosen}
    assert h.wait_outputs(h.send_image(rgb8(street())))


@pytest.mark.slow
def test_auto_backend_fallback_says_why(fresh, capfd):
    h = fresh(backend="auto")
    err = capfd.readouterr().err
    assert f"backend {h.node.predictor.backend_name} in use" in err
    assert re.search(r"tensorrt.*(cannot be imported|CUDA is not available)", err), err[-3000:]
    t0 = time.monotonic()
    h.wait_outputs(h.send_image(rgb8(street())))
    h.spin_until(lambda: any(d["t"] > t0 for d in h.diagnostics), 3.0)
    assert any("tensorrt" in " ".join(d["values"].values()) for d in h.diagnostics if d["t"] > t0)


# -- fuzz: random malformed Image messages through conversion, callback and worker --------------------------------
FUZZ_ENCODINGS = ["rgb8", "bgr8", "mono8", "rgba8", "bgra8", "rgb16", "bgr16", "mono16", "bayer_rggb8", "yuv422",
                  "yuv422_yuy2", "8UC3", "16UC1", "32FC1", "64FC3", "32SC1", "rgb_8", "RGB8", "bgr 8", "", "jpeg",
                  "yuv420", "rgb8\x00", "nv21", "bayer_rggb"]


COLOUR_ENCODINGS = ["rgb8", "bgr8", "mono8", "rgba8", "bgra8", "rgb16", "bgr16", "mono16", "bayer_rggb8",
                    "bayer_gbrg8", "yuv422", "yuv422_yuy2"]


def _fuzz_images():
    """Image messages with a random set of faults (none, one or several): wrong encoding, sizes, step, byte
    order or data length; an empty fault set gives a valid image, so the network path is exercised too."""
    from hypothesis import strategies as st

    from panoptic_ros.imaging import ENCODINGS

    @st.composite
    def images(draw):
        faults = draw(st.sets(st.sampled_from(["encoding", "size", "huge", "step", "bigendian", "data"]), max_size=3))
        if "encoding" in faults:
            encoding = draw(st.one_of(st.sampled_from(FUZZ_ENCODINGS), st.text(max_size=8)))
        else:
            encoding = draw(st.sampled_from(COLOUR_ENCODINGS))
        if "huge" in faults:
            h, w = (draw(st.sampled_from([1 << 16, 1 << 31, (1 << 32) - 1, 5])) for _ in range(2))
        elif "size" in faults:
            h, w = draw(st.integers(0, 7)), draw(st.integers(0, 24))
        else:
            h, w = draw(st.integers(8, 24)), draw(st.integers(8, 24))
        pixel_bytes = ENCODINGS[encoding].pixel_bytes if encoding in ENCODINGS else draw(st.integers(1, 8))
        row = w * pixel_bytes
        step = min(draw(st.one_of(st.integers(0, row + 16), st.integers(0, (1 << 32) - 1))), (1 << 32) - 1) \
            if "step" in faults else row
        big = draw(st.integers(1, 255)) if "bigendian" in faults else draw(st.sampled_from([0, 0, 0, 1]))
        exact = step * h if step * h <= 1 << 16 else 0
        nbytes = draw(st.one_of(st.integers(max(0, exact - 8), exact + 8), st.integers(0, 4096))) \
            if "data" in faults else exact
        seed = draw(st.integers(0, 2**32 - 1))
        data = np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8).tobytes()
        msg = Image(height=h, width=w, encoding=encoding, is_bigendian=big, step=step)
        msg.data = array.array("B", data)
        return msg

    return images()


@pytest.mark.parametrize("encoding", ["yuv422", "yuv422_yuy2"])
def test_yuv422_with_odd_width_is_a_value_error(encoding):
    from panoptic_ros.ros.image_conversion import image_to_rgb

    msg = numpy_to_image(np.zeros((4, 5, 2), np.uint8), encoding)
    with pytest.raises(ValueError, match="width"):
        image_to_rgb(msg)


def test_fuzz_malformed_images_never_escape(harness):
    """>= 1,000 random, mostly malformed Image messages, each through the conversion (image_to_rgb) and through
    the node's image callback and worker (conversion, network when the image is valid, error path). The
    conversion raises only ValueError (apart from one known, xfailed fault); the node counts every frame as
    processed or bad, publishes only frames the conversion accepts, never lets an exception escape a thread and still processes a good frame after."""
    from hypothesis import HealthCheck, given, settings

    from panoptic_ros.ros.image_conversion import image_to_rgb

    seen = {"examples": 0, "valid": 0, "processed": 0}
    valid_keys, stamp = set(), [0]

    @settings(max_examples=1000, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(_fuzz_images())
    def run(msg):
        seen["examples"] += 1
        try:
            rgb = image_to_rgb(msg)
            ok = True
            assert rgb.dtype == np.uint8 and rgb.shape == (msg.height, msg.width, 3)
        except ValueError as exc:
            ok = False
            assert str(exc)  # a reason, never an empty message
        except Exception as exc:  # noqa: BLE001 - the fuzz's finding: anything but ValueError is a bug
            raise AssertionError(f"{type(exc).__name__} escaped image_to_rgb: {exc}") from exc
        before = harness.counts()
        stamp[0] += 1
        msg.header = header(Time(sec=100_000 + stamp[0], nanosec=7), "camera_optical_frame")
        harness.image_callback(msg)
        end = time.monotonic() + 30.0
        while not harness.settled() and time.monotonic() < end:
            time.sleep(0.0005)
        after = harness.counts()
        assert after["frames received"] == before["frames received"] + 1
        processed = after["frames processed"] - before["frames processed"]
        bad = after["frames with bad input"] - before["frames with bad input"]
        assert processed + bad == 1, (before, after, msg.encoding, msg.height, msg.width)
        if not ok:
            assert bad == 1, f"the node processed a frame the conversion rejects: {msg.encoding} {msg.width}x{msg.height}"
        seen["valid"] += ok
        seen["processed"] += processed
        if processed:
            valid_keys.add((msg.header.stamp.sec, msg.header.stamp.nanosec))
        if seen["examples"] % 50 == 0:
            harness.spin_until(lambda: False, 0.05)  # drain the listener

    before_outputs = set(harness.outputs)
    run()
    harness.spin_until(lambda: False, 0.5)
    assert seen["examples"] >= 1000, seen
    assert 0 < seen["processed"] < seen["examples"], f"the fuzz must hit both paths: {seen}"
    published = {k for k in set(harness.outputs) - before_outputs if k[0] >= 100_000}
    assert published <= valid_keys, f"frames published that were not processed: {sorted(published - valid_keys)[:5]}"
    assert harness.node.context.ok()
    assert harness.wait_outputs(harness.send_image(rgb8(street()))), "the node no longer works after the fuzz"
    print(f"fuzz: {seen}")


def test_diagnostics_counters_add_up_in_every_snapshot(harness):
    """received = processed + dropped + bad + skipped + in flight in every /diagnostics snapshot, taken while a
    burst of frames arrives faster than the worker runs (the overload bench once saw 948 received against
    302 processed + 647 dropped: counters read while a frame was between its output and its count)."""
    parts = ("frames processed", "frames dropped (stale)", "frames with bad input", "frames skipped (no subscribers)",
             "frames in flight")
    snapshots, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            snapshots.append(harness.node.diagnostic_values()[2])

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        image = rgb8(street())
        for _ in range(40):
            image.header = header(harness.stamp(), "camera_optical_frame")
            harness.image_callback(image)
            time.sleep(0.002)
        assert harness.spin_until(lambda: harness.counts()["frames received"] ==
                                  sum(int(harness.node.diagnostic_values()[2][k]) for k in parts[:-1]), 60.0)
    finally:
        stop.set()
        watcher.join()
    assert len(snapshots) > 50
    busy = [v for v in snapshots if int(v["frames in flight"]) > 0]
    assert busy, "no snapshot caught a frame in flight: the test did not exercise the race"
    for values in snapshots:
        assert int(values["frames received"]) == sum(int(values[k]) for k in parts), values
        assert 0 <= int(values["frames in flight"]) <= 2  # the pending frame and the one being processed
