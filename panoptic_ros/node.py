"""PanopticNode: camera images in; panoptic labels, an overlay, a bird's-eye occupancy grid and footprint
markers out. Wiring only: the per-frame work is :class:`~panoptic_ros.ros.pipeline.FramePipeline`
(decode, :class:`~panoptic_ros.predictor.Predictor`, :class:`~panoptic_ros.bev.GroundProjector`, messages).

Real-time rules: subscription callbacks only store the newest frame; one worker thread processes the newest
frame and drops (and counts) the ones it had no time for; outputs nobody subscribes to are not computed.

Topics (relative names, remap them): subscribes ``image`` (or ``image/compressed``) and ``camera_info``;
publishes ``~/panoptic``, ``~/panoptic_ids`` (32SC1), ``~/semantic`` (mono8), ``~/overlay`` (rgb8),
``~/grid`` (OccupancyGrid), ``~/markers`` (MarkerArray) and ``/diagnostics``.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSPolicyKind, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import MarkerArray

from . import resources
from .ros import messages
from .ros.camera_pose import (BufferCameraPose, CameraPoseUnavailable, ParameterCameraPose, TfCameraPose,
                               choose_source)
from .ros.log_bridge import forward_to_ros
from .ros.pipeline import OUTPUTS, BadImage, FramePipeline
from .ros.params import PARAMETERS, NodeConfig, help_text
from .ros.shutdown import EXIT_FATAL, EXIT_SIGNAL, ShutdownSignals
from .ros.throttle import ReasonThrottle, reason_code

from panoptic_ros.msg import PanopticSegmentation  # generated from msg/

NODE_NAME = "panoptic_node"
STAGES = ("wait", "decode", "preprocess", "network", "head", "postprocess", "bev", "publish", "total")
GRID_OUTPUTS = frozenset({"grid", "markers"})
LOG_PERIOD_S = 1.0  # at most one log line a second per kind of problem


@dataclass
class _Frame:
    msg: object
    compressed: bool
    received: float  # time.monotonic()


@dataclass
class _Stats:
    """Counters since start and samples of the current diagnostics window (guarded by the node's lock).

    Every received frame is in exactly one of processed, dropped, bad_input, idle or in_flight (waiting or being
    processed); each move between them happens under the lock, so any snapshot taken under it adds up:
    received == processed + dropped + bad_input + idle + in_flight.
    """

    received: int = 0
    in_flight: int = 0  # received, not yet processed, dropped, bad or skipped (the pending and the current frame)
    processed: int = 0
    dropped: int = 0  # stale: replaced by a newer frame before the worker took it
    bad_input: int = 0
    idle: int = 0  # frames skipped because no output had a subscriber
    window_received: int = 0
    window_processed: int = 0
    window_dropped: int = 0
    window_start: float = field(default_factory=time.monotonic)
    latencies: dict = field(default_factory=lambda: {s: deque(maxlen=200) for s in STAGES})
    last_error: str = ""
    last_error_time: float = -1e9
    last_input_time: float = -1e9
    last_stamp_ns: int = -1
    backwards: int = 0  # input stamps earlier than the previous one (a bag loop, a clock reset)
    last_backwards: str = ""
    last_backwards_time: float = -1e9
    consecutive_failures: int = 0  # frames in a row that failed in the backend (reset by a processed frame)
    grid_wait: tuple | None = None  # (key, why): the grid and markers are wanted but were not built


class PanopticNode(Node):
    """The ROS 2 node. The model is loaded (and warmed up) in the constructor, before 'ready' is logged."""

    def __init__(self, **node_kwargs):
        super().__init__(NODE_NAME, **node_kwargs)
        self.config = self._declare_parameters()
        cfg = self.config
        self._lock = threading.Condition()
        self._pending: _Frame | None = None
        self._camera_info: CameraInfo | None = None
        self._stop = False
        self._stats = _Stats()
        self._warned = set()
        self._throttle = ReasonThrottle(LOG_PERIOD_S)
        self.fatal_reason = ""  # set when the node stops itself (max_consecutive_failures)

        self.camera_pose = self._camera_pose_source()  # before the model: a wrong setting fails fast
        self.predictor = self._load_predictor()
        self.taxonomy = self.predictor.taxonomy

        # Outputs: reliable depth 1 (what RViz and recorders ask for; depth 1 never queues stale frames).
        out_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        grid_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                              durability=DurabilityPolicy.TRANSIENT_LOCAL if cfg.grid_transient_local
                              else DurabilityPolicy.VOLATILE)
        self.pub_panoptic = self._publisher(PanopticSegmentation, "~/panoptic", out_qos)
        self.pub_ids = self._publisher(Image, "~/panoptic_ids", out_qos)
        self.pub_semantic = self._publisher(Image, "~/semantic", out_qos)
        self.pub_overlay = self._publisher(Image, "~/overlay", out_qos)
        self.pub_grid = self._publisher(OccupancyGrid, "~/grid", grid_qos)
        self.pub_markers = self._publisher(MarkerArray, "~/markers", out_qos)
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        publishers = {"panoptic_ids": self.pub_ids, "panoptic": self.pub_panoptic, "semantic": self.pub_semantic,
                      "overlay": self.pub_overlay, "grid": self.pub_grid, "markers": self.pub_markers}
        self._outputs = {name: publishers[name] for name in OUTPUTS}  # the pipeline's order

        # Inputs: depth 1, the newest frame is the only one worth having.
        in_qos = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                            reliability=ReliabilityPolicy.BEST_EFFORT if cfg.input_qos == "sensor_data"
                            else ReliabilityPolicy.RELIABLE)
        if cfg.image_transport == "compressed":
            # image_transport names the compressed stream <base topic>/compressed, after remapping the base.
            self.image_topic = self.resolve_topic_name("image") + "/compressed"
            self.create_subscription(CompressedImage, self.image_topic, lambda m: self._on_image(m, True), in_qos,
                                     event_callbacks=self._subscription_events(self.image_topic))
        else:
            self.image_topic = self.resolve_topic_name("image")
            self.create_subscription(Image, "image", lambda m: self._on_image(m, False), in_qos,
                                     event_callbacks=self._subscription_events(self.image_topic))
        self.camera_info_topic = self.resolve_topic_name("camera_info")
        self.pipeline = FramePipeline.from_config(self.predictor, cfg, self.camera_info_topic)
        if not self.pipeline.free_classes:
            self._warn_once("free_classes", "none of the model's classes is free ground (no Cityscapes or "
                            "COCO-panoptic name; see free_classes): every grid cell will be unknown")
        else:
            self.get_logger().info(f"grid: free {', '.join(self.pipeline.free_classes)}; obstacles: things, "
                                   f"{', '.join(self.pipeline.obstacle_classes) or 'no stuff'}")
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, in_qos,
                                 event_callbacks=self._subscription_events(self.camera_info_topic))

        self._worker = threading.Thread(target=self._work, name="panoptic_worker", daemon=True)
        self._worker.start()
        self.create_timer(cfg.diagnostics_period, self._publish_diagnostics)
        h, w = self.predictor.input_size
        size = (f"{cfg.input_size[1]}x{cfg.input_size[0]}" if cfg.input_size else
                f"each image's aspect ratio at {w}x{h} pixels")
        self.get_logger().info(
            f"ready: model {self.model_path} on backend {self.predictor.backend_name}, network input {size}; "
            f"listening on {self.image_topic} ({cfg.image_transport}, {cfg.input_qos} QoS) and "
            f"{self.camera_info_topic}")

    # -- setup ---------------------------------------------------------------------------------------------
    def _declare_parameters(self) -> NodeConfig:
        values = {}
        for spec in PARAMETERS:
            descriptor = ParameterDescriptor(description=spec.description, read_only=True,
                                             additional_constraints=spec.constraints or (
                                                 f"one of: {', '.join(map(str, spec.choices))}" if spec.choices else ""))
            if spec.range is not None and isinstance(spec.default, float):
                descriptor.floating_point_range = [FloatingPointRange(
                    from_value=float(spec.range[0]), to_value=float(spec.range[1]), step=0.0)]
            elif spec.range is not None and isinstance(spec.default, int) and not isinstance(spec.default, bool):
                descriptor.integer_range = [IntegerRange(
                    from_value=int(spec.range[0]), to_value=int(spec.range[1]), step=1)]
            # An empty list default would be declared as a byte array; declare the type, unset = the default.
            default = Parameter.Type.STRING_ARRAY if spec.item_type is str and not spec.default else spec.default
            value = self.declare_parameter(spec.name, default, descriptor).value
            values[spec.name] = spec.default if value is None else value
        return NodeConfig.from_values({k: list(v) if isinstance(v, (list, tuple, np.ndarray)) else v
                                       for k, v in values.items()})

    def _camera_pose_source(self):
        """ParameterCameraPose or TfCameraPose, by camera_pose_source; the choice and why are logged once."""
        cfg = self.config
        source, why, tf2_ros = choose_source(cfg.camera_pose_source)
        if source == "tf":
            self._tf_buffer = tf2_ros.Buffer()
            self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self)  # spun by the node's executor
            provider = TfCameraPose(self._tf_buffer, cfg.output_frame, cfg.tf_timeout, cfg.camera_frame)
        elif source == "tf_builtin":
            from .ros.tf_listener import TfListener
            from .tf_buffer import TransformBuffer

            self._tf_buffer = TransformBuffer(cfg.tf_buffer_s)
            self._tf_listener = TfListener(self, self._tf_buffer, lambda text: self._log_throttled(
                "warning", reason_code("tf_message", text), f"transform refused: {text}"))
            provider = BufferCameraPose(self._tf_buffer, cfg.output_frame, 0.0, cfg.camera_frame)
        else:
            provider = ParameterCameraPose(cfg.camera_pose)
        self.get_logger().info(f"{provider.describe()} ({why})")
        return provider

    def _load_predictor(self):
        from .predictor import Predictor

        cfg = self.config
        path = Path(cfg.model_path) if cfg.model_path else resources.default_model_path()
        self.model_path = path
        kwargs = dict(backend=cfg.backend, precision=cfg.precision, score_threshold=cfg.score_threshold,
                      policy=cfg.overlap_policy, unknown=cfg.unknown, stuff_area_threshold=cfg.stuff_area_threshold,
                      head_stride=cfg.head_stride, fusion=cfg.fusion)
        kwargs["threads"] = cfg.threads  # 0 = the physical cores, for torch, ONNX Runtime and OpenVINO alike
        kwargs["input_size"] = cfg.input_size  # None: each image's aspect ratio at the checkpoint's pixel budget
        self.get_logger().info(f"loading model {path} (backend {cfg.backend})")
        forward_to_ros(self.get_logger())  # e.g. a first-run ONNX build: "building ...", "still building ..."
        t0 = time.perf_counter()
        predictor = Predictor.from_checkpoint(path, **kwargs)
        h, w = cfg.input_size or predictor.input_size
        predictor.predict(np.zeros((h, w, 3), dtype=np.uint8))  # warm-up: first-call allocations, lazy init
        self.get_logger().info(f"model loaded and warmed up in {time.perf_counter() - t0:.1f} s")
        # auto's reasons go to Python logging inside the runtime; users read the ROS log and /diagnostics.
        self.backends_skipped = dict(getattr(predictor.backend, "skipped", {}) or {})
        for name, reason in self.backends_skipped.items():
            self.get_logger().info(f"backend {name} skipped: {reason}")
        info = predictor.backend.describe()
        self.backend_values = {"precision": str(info.get("precision", "")), "threads": str(info.get("threads", ""))}
        if info.get("auto"):  # auto's decision: the probe's timings (ms) and whether it came from the cache
            auto = info["auto"]
            self.backend_values["auto decision"] = (f"{auto.get('chosen') or auto.get('rule')}; {auto.get('decision', '')}"
                                                    f"; probe ms: {auto.get('ms', {})}")
        self.get_logger().info(f"backend {predictor.backend_name} in use "
                               f"(precision {self.backend_values['precision']}, threads {self.backend_values['threads']})")
        return predictor

    def _publisher(self, msg_type, topic: str, qos: QoSProfile):
        name = self.resolve_topic_name(topic)

        def incompatible(info):
            self._warn_qos(name, "a subscriber", info.last_policy_kind, info.total_count)

        return self.create_publisher(msg_type, topic, qos,
                                     event_callbacks=PublisherEventCallbacks(incompatible_qos=incompatible))

    def _subscription_events(self, topic: str) -> SubscriptionEventCallbacks:
        def incompatible(info):
            self._warn_qos(topic, "a publisher", info.last_policy_kind, info.total_count)

        return SubscriptionEventCallbacks(incompatible_qos=incompatible)

    def _warn_qos(self, topic: str, who: str, policy, count: int) -> None:
        try:
            policy_name = QoSPolicyKind(policy).name
        except ValueError:
            policy_name = str(policy)
        hint = (" (input_qos:=reliable needs a reliable camera driver; sensor_data accepts both)"
                if policy_name == "RELIABILITY" else "")
        self.get_logger().warning(f"incompatible QoS on {topic}: {who} disagrees on {policy_name}{hint}; "
                                  f"those endpoints will not talk ({count} so far)")

    # -- callbacks (never block) ------------------------------------------------------------------------
    def _on_image(self, msg, compressed: bool) -> None:
        now = time.monotonic()
        with self._lock:
            st = self._stats
            if self._pending is not None:  # the older frame leaves as dropped, this one takes its place
                st.dropped += 1
                st.window_dropped += 1
            else:
                st.in_flight += 1
            self._pending = _Frame(msg, compressed, now)
            stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            if stamp_ns < st.last_stamp_ns:  # processed anyway, with its own stamp; said once per jump
                st.backwards += 1
                st.last_backwards_time = now
                st.last_backwards = (f"input stamps went backwards by {(st.last_stamp_ns - stamp_ns) / 1e9:.3f} s "
                                     f"(bag loop or clock reset?)")
                self.get_logger().warning(st.last_backwards)
            st.last_stamp_ns = stamp_ns
            st.received += 1
            st.window_received += 1
            st.last_input_time = now
            self._lock.notify()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        with self._lock:
            self._camera_info = msg
            if self._stats.grid_wait is not None and self._stats.grid_wait[0] == "no_info":
                self._stats.grid_wait = None

    # -- worker ------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._lock:
                while self._pending is None and not self._stop:
                    self._lock.wait()
                if self._stop:
                    return
                frame, self._pending = self._pending, None
                camera_info = self._camera_info
            try:
                self._process(frame, camera_info)
            except ValueError as exc:  # the predictor's verdict on the input (e.g. too small), not a backend fault
                self._bad_frame(frame, f"processing failed: {type(exc).__name__}: {exc}", "input")
            except Exception as exc:  # noqa: BLE001 - the node must outlive any one frame
                self._backend_failure(frame, exc)

    def _process(self, frame: _Frame, camera_info: CameraInfo | None) -> None:
        """The pipeline on one frame (only the outputs somebody subscribes to), then publish and count."""
        t_start = time.monotonic()
        wanted = {name for name, pub in self._outputs.items() if pub.get_subscription_count() > 0}
        if not wanted:
            with self._lock:
                self._stats.idle += 1
                self._stats.in_flight -= 1
            return
        grid_wanted = bool(wanted & GRID_OUTPUTS)
        pose, grid_wait = None, None
        if grid_wanted and isinstance(self.camera_pose, TfCameraPose):
            pose, grid_wait = self._pose_from_tf(frame)
            if pose is None:
                wanted = wanted - GRID_OUTPUTS
        try:
            out = self.pipeline.process(frame.msg, camera_info, wanted, pose)
        except BadImage as exc:
            self._bad_frame(frame, str(exc), "image")
            return
        for level, key, text in out.events:
            if level == "error":
                self._bad_frame(frame, text, key, count=False)
            elif level == "warning":
                self._warn_once(key, text)
                if key == "no_info":
                    grid_wait = (key, text)
            else:
                self.get_logger().info(text)
        if self._stop:  # shutting down: the publishers may be gone
            return
        t_publish = time.monotonic()
        for name, msg in out.messages.items():
            self._outputs[name].publish(msg)
        t_end = time.monotonic()

        times = {k: v for k, v in out.timings_ms.items() if k != "messages"}
        # publish = building the messages + handing them to DDS (what it meant before the pipeline existed)
        times.update(wait=1e3 * (t_start - frame.received),
                     publish=out.timings_ms.get("messages", 0.0) + 1e3 * (t_end - t_publish),
                     total=1e3 * (t_end - frame.received))
        with self._lock:
            st = self._stats
            st.processed += 1
            st.in_flight -= 1
            st.window_processed += 1
            st.consecutive_failures = 0
            st.grid_wait = grid_wait if grid_wanted else None
            for k, v in times.items():
                if k in st.latencies:
                    st.latencies[k].append(float(v))

    # -- errors and diagnostics ------------------------------------------------------------------------
    def _pose_from_tf(self, frame: _Frame) -> tuple:
        """(this frame's camera pose or None, (key, why) when there is none)."""
        header = frame.msg.header
        source = self.camera_pose.frame_of(header.frame_id)
        if source and "optical" not in source:
            self._warn_once("tf_frame", f"looking up the camera pose of {source!r} in TF as an optical frame (z "
                                        "forward, x right, y down: REP 103 for images); if it is a body frame (x "
                                        "forward), set camera_frame to its *_optical_frame child")
        try:
            return self.camera_pose.pose_for(header.frame_id, header.stamp), None
        except CameraPoseUnavailable as exc:
            if self.config.camera_pose_source == "auto":  # the documented fallback, said out loud
                p = self.config.camera_pose
                why = (f"camera pose from the camera.* parameters (x {p.x:g}, y {p.y:g}, z {p.z:g} m, pitch "
                       f"{p.pitch:g} rad), not TF: {exc}")
                self._log_throttled("warning", reason_code("tf", str(exc)), self._frame_text(frame, why))
                return p, ("tf", why)
            why = f"no camera pose, ~/grid and ~/markers not published: {exc}"
            self._log_throttled("warning", reason_code("tf", str(exc)), self._frame_text(frame, why))
            return None, ("tf", why)

    def _frame_text(self, frame: _Frame, reason: str) -> str:
        stamp = frame.msg.header.stamp
        return f"frame {stamp.sec}.{stamp.nanosec:09d} on {self.image_topic}: {reason}"

    def _log_throttled(self, level: str, key: str, text: str) -> None:
        """Log ``text`` unless a line of the same kind (``key``) went out less than LOG_PERIOD_S ago."""
        with self._lock:
            log, suppressed = self._throttle.check(key, time.monotonic())
        if log:
            more = f" ({suppressed} more like this since the last such line)" if suppressed else ""
            # one call site per severity: rclpy raises when one call site logs at two severities
            logger = self.get_logger()
            if level == "error":
                logger.error(text + more)
            else:
                logger.warning(text + more)

    def _bad_frame(self, frame: _Frame, reason: str, kind: str = "error", count: bool = True) -> None:
        """Report a frame that produced no output (or, ``count=False``, lost its grid): a log line throttled per
        kind of problem (``kind`` + the reason's wording), the ERROR diagnostic, the bad-input counter."""
        text = self._frame_text(frame, reason)
        self._log_throttled("error", reason_code(kind, reason), text)
        with self._lock:
            if count:  # the frame ends here (count=False: it goes on to be processed, without its grid)
                self._stats.bad_input += 1
                self._stats.in_flight -= 1
            self._stats.last_error = text
            self._stats.last_error_time = time.monotonic()

    def _backend_failure(self, frame: _Frame, exc: Exception) -> None:
        """A frame failed in the backend (or later): reported like bad input; max_consecutive_failures in a
        row stop the node."""
        if self._stop:  # an error caused by the shutdown itself is no news
            return
        reason = f"processing failed: {type(exc).__name__}: {exc}"
        self._bad_frame(frame, reason, "backend")
        limit = self.config.max_consecutive_failures
        with self._lock:
            self._stats.consecutive_failures += 1
            failures = self._stats.consecutive_failures
        if limit and failures >= limit:
            self._fatal(f"{failures} consecutive frames failed in the backend (max_consecutive_failures {limit}); "
                        f"last: {type(exc).__name__}: {exc}")

    def _fatal(self, reason: str) -> None:
        """Stop the node: one FATAL line, the worker ends, the node's context shuts down (main exits 1)."""
        with self._lock:
            if self.fatal_reason:
                return
            self.fatal_reason = reason
            self._stop = True
            self._lock.notify_all()
        self.get_logger().fatal(f"stopping: {reason}")
        self.context.try_shutdown()

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.get_logger().warning(text)

    def diagnostic_values(self) -> tuple[str, str, dict]:
        """(level, message, values) of the current window; resets the window."""
        now = time.monotonic()
        with self._lock:
            st = self._stats
            span = max(now - st.window_start, 1e-6)
            values = {"backend": self.predictor.backend_name, "model": str(self.model_path),
                      **self.backend_values,
                      "input rate (Hz)": st.window_received / span, "output rate (Hz)": st.window_processed / span,
                      "frames received": st.received, "frames processed": st.processed,
                      "frames dropped (stale)": st.dropped, "frames with bad input": st.bad_input,
                      "frames skipped (no subscribers)": st.idle, "frames in flight": st.in_flight, "stamps gone backwards": st.backwards,
                      "consecutive backend failures": st.consecutive_failures,
                      "camera pose source": self.camera_pose.source}
            if self.backends_skipped:
                values["backends skipped"] = "; ".join(f"{k}: {v}" for k, v in self.backends_skipped.items())
            for stage in STAGES:
                samples = st.latencies[stage]
                if samples:
                    values[f"latency {stage} (ms)"] = float(np.mean(samples))
            if st.latencies["total"]:
                values["latency total max (ms)"] = float(np.max(st.latencies["total"]))
            dropped, received = st.window_dropped, st.window_received
            recent_error = now - st.last_error_time < max(2 * self.config.diagnostics_period, 2.0)
            last_error, silent = st.last_error, now - st.last_input_time
            grid_wait = st.grid_wait
            recent_backwards = now - st.last_backwards_time < max(2 * self.config.diagnostics_period, 2.0)
            st.window_start, st.window_received, st.window_processed, st.window_dropped = now, 0, 0, 0
            for samples in st.latencies.values():
                samples.clear()
        values["last error"] = last_error
        if recent_error:
            return "error", last_error, values
        if st.received == 0 or silent > max(3 * self.config.diagnostics_period, 3.0):
            return "warn", f"no images on {self.image_topic}", values
        if grid_wait is not None:
            return "warn", grid_wait[1], values
        if recent_backwards:
            return "warn", st.last_backwards, values
        if dropped:
            return "warn", f"processing slower than input: {dropped} of {received} frames skipped", values
        return "ok", "running", values

    def _publish_diagnostics(self) -> None:
        level, message, values = self.diagnostic_values()
        self.pub_diagnostics.publish(messages.diagnostics(
            self.get_clock().now().to_msg(), f"{self.get_name()}: panoptic segmentation", level, message, values,
            hardware_id=self.predictor.backend_name))

    def destroy_node(self, join_timeout_s: float = 1.0) -> None:
        """Stop the worker (waiting up to ``join_timeout_s`` for the frame in flight), then destroy the node.
        A frame still running after that is abandoned: it publishes nothing once the node is stopping."""
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        worker = getattr(self, "_worker", None)  # absent when the constructor failed before starting it
        if worker is not None and worker.is_alive() and threading.current_thread() is not worker:
            worker.join(timeout=join_timeout_s)
        super().destroy_node()


def main(argv: list[str] | None = None) -> int:
    """``panoptic_node [--ros-args ...]``: run the node until SIGINT / SIGTERM.

    Exit codes: 0 after SIGINT / SIGTERM (in any phase: loading, engine build, running), 1 after a fatal error
    (start-up failure, max_consecutive_failures). Run as a command (``argv`` None) the process ends right after
    the cleanup (:meth:`ShutdownSignals.finish`), or by the watchdog if the cleanup hangs. Called with ``argv``
    (tests, in-process) main returns the code and never ends the process: signals then only stop a running node.
    """
    from rclpy.utilities import remove_ros_args

    exit_process = argv is None
    argv = list(sys.argv if argv is None else [sys.argv[0], *argv])
    parser = argparse.ArgumentParser(
        prog="panoptic_node", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="ROS 2 node: panoptic segmentation of a camera stream with a bird's-eye occupancy grid.\n"
                    "Topics: subscribes image (or image/compressed), camera_info; publishes ~/panoptic, "
                    "~/panoptic_ids,\n~/semantic, ~/overlay, ~/grid, ~/markers, /diagnostics.\n"
                    "CameraInfo: K / P in the ROS-OpenCV pixel convention (pixel centres at integers, as "
                    "image_geometry),\nROI + binning as image_geometry, D of plumb_bob / rational_polynomial "
                    "through OpenCV.\nCamera pose: TF (tf2_ros if importable, else the node's own buffer of /tf "
                    "and /tf_static),\nsee camera_pose_source.\n"
                    "SIGINT / SIGTERM: exit 0 within 2 s, also while the model loads; fatal errors: exit 1.\n"
                    "Example: panoptic_node --ros-args -r image:=/camera/image_raw -r camera_info:=/camera/"
                    "camera_info --params-file config/panoptic.yaml",
        epilog=help_text())
    parser.parse_args(remove_ros_args(argv)[1:])
    logger = rclpy.logging.get_logger(NODE_NAME)
    # Before rclpy.init and the model load: a signal at any moment from here on ends the process quietly.
    signals = ShutdownSignals(lambda level, text: getattr(logger, level)(text),
                              exit_process=os._exit if exit_process else _stay).install()
    try:
        code = _run(argv, signals, logger)
    finally:
        if not exit_process:
            signals.uninstall()
    if exit_process:
        signals.finish(code)
    return code


def _stay(code: int) -> None:
    """In-process main (tests): the caller owns the process; a signal or the watchdog must not end it."""


def _run(argv: list[str], signals: ShutdownSignals, logger) -> int:
    try:
        # rclpy's own handlers would shut the context down under the worker's feet; ShutdownSignals owns them.
        rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
        node = PanopticNode()
    except Exception as exc:  # noqa: BLE001 - a startup error is one clear line, not a traceback
        logger.fatal(f"{type(exc).__name__}: {exc}")
        signals.begin_cleanup(EXIT_FATAL)
        rclpy.try_shutdown()
        return EXIT_FATAL
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    signals.wake = node.create_guard_condition(lambda: None).trigger  # a signal wakes the executor at once
    signals.running()
    code = EXIT_SIGNAL
    try:
        while not signals.requested.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.5)
    except ExternalShutdownException:
        pass
    except Exception as exc:  # noqa: BLE001 - a callback failed: one clear line, then the cleanup
        logger.fatal(f"{type(exc).__name__}: {exc}")
        code = EXIT_FATAL
    if node.fatal_reason:
        code = EXIT_FATAL
    signals.begin_cleanup(code)
    signals.wake = None
    executor.remove_node(node)
    node.destroy_node(join_timeout_s=0.5)  # of the 2 s budget (ros/shutdown.py); the frame in flight may go
    executor.shutdown(timeout_sec=0.2)
    rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
