"""Record topics into a rosbag2 with their receive times as log times (for measuring a live replay).

Used by ``panoptic-replay BAG --record OUT`` (records while the bag plays) or on its own:

    python -m panoptic_ros.ros.record OUT_BAG --topics /panoptic_node/panoptic /diagnostics --inputs /camera/image_raw

Messages are written as the received CDR bytes (never deserialized). Log time = when DDS delivered the message to
this process (``received_timestamp``, system clock). For latency, each image on the ``--inputs`` topic adds one
``std_msgs/msg/Header`` on :data:`INPUTS_TOPIC`: its ``stamp`` is the image's header stamp, its ``frame_id`` the
image topic, and its log time the image's *publish* time (the publisher's DDS source timestamp). End-to-end
latency of an output = its log time minus the log time of the input with the same stamp.

The module level imports no rclpy: :func:`panoptic_typestore` is used by the ROS-free evaluation.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from ..data.bag import typestore

INPUTS_TOPIC = "/panoptic_record/inputs"
INPUTS_TYPE = "std_msgs/msg/Header"
# Topics that publish on a timer whatever happens: their messages do not count as activity (wait_until_quiet).
PERIODIC_TOPICS = frozenset({"/diagnostics", "/rosout", "/parameter_events"})
PANOPTIC_MSGS = ("PanopticCategory", "PanopticSegment", "PanopticSegmentation")  # dependencies first


def msg_dir() -> Path:
    """The folder with panoptic_ros' .msg definitions (source tree or installed share/panoptic_ros/msg)."""
    from ..resources import share_dir

    candidates = [share_dir() / "msg", Path(__file__).resolve().parents[2] / "msg",
                  Path(sys.prefix) / "share" / "panoptic_ros" / "msg"]
    for folder in candidates:
        if all((folder / f"{name}.msg").exists() for name in PANOPTIC_MSGS):
            return folder
    raise FileNotFoundError(f"panoptic_ros .msg files not found in {', '.join(map(str, candidates))}")


def panoptic_typestore():
    """The rosbags type store of :func:`~panoptic_ros.data.bag.typestore` plus ``panoptic_ros/msg/*``, parsed
    from the .msg text, so bags holding PanopticSegmentation can be written and read without ROS."""
    from rosbags.typesys import get_types_from_msg

    store = typestore()
    folder = msg_dir()
    types = {}
    for name in PANOPTIC_MSGS:
        types.update(get_types_from_msg((folder / f"{name}.msg").read_text(), f"panoptic_ros/msg/{name}"))
    store.register(types)
    return store


class Recorder:
    """Subscribes to ``topics`` (name -> ``pkg/msg/Type``) on ``node`` and writes every message to a new bag.

    Args:
        node: an rclpy node whose callbacks someone spins (see :meth:`spin_in_background`).
        path: the bag folder to create (must not exist).
        topics: topic name -> message type of what to record.
        inputs: image topics (-> type, default ``sensor_msgs/msg/Image``) whose publish times to record on
            :data:`INPUTS_TOPIC` (header stamp only).
        storage: ``mcap`` or ``sqlite3``.
    """

    def __init__(self, node, path: str | Path, topics: dict[str, str], inputs: dict[str, str] | tuple = (),
                 storage: str = "mcap"):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosbags.rosbag2 import StoragePlugin, Writer

        from .replay import message_class

        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise ValueError(f"storage must be one of {sorted(plugins)}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists; the recorder writes a new bag")
        self.node = node
        self.store = panoptic_typestore()
        for topic, msgtype in topics.items():
            if msgtype not in self.store.types:
                raise ValueError(f"cannot record {topic}: type {msgtype} is unknown to the bag type store")
        self.writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=plugins[storage])
        self.writer.open()
        self._lock = threading.Lock()
        self._closed = False
        self.counts = {t: 0 for t in topics}
        self.inputs_seen = 0
        self.last_receive = time.monotonic()
        # Reliable, deep queue: a recorder must not lose what a depth-1 publisher managed to send.
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self._conns = {}
        for topic, msgtype in topics.items():
            self._conns[topic] = self.writer.add_connection(topic, msgtype, typestore=self.store)
            node.create_subscription(message_class(msgtype), topic, self._raw_callback(topic), qos, raw=True)
        if not isinstance(inputs, dict):
            inputs = {t: "sensor_msgs/msg/Image" for t in inputs}
        if inputs:
            self._inputs_conn = self.writer.add_connection(INPUTS_TOPIC, INPUTS_TYPE, typestore=self.store)
            for topic, msgtype in inputs.items():
                node.create_subscription(message_class(msgtype), topic, self._input_callback(topic), qos)

    @staticmethod
    def _receive_ns(info) -> int:
        received = int(info.get("received_timestamp", 0) or 0)
        return received if received > 0 else time.time_ns()

    def _raw_callback(self, topic: str):
        def callback(data, info):
            t = self._receive_ns(info)
            with self._lock:
                if self._closed:
                    return
                self.writer.write(self._conns[topic], t, bytes(data))
                self.counts[topic] += 1
                if topic not in PERIODIC_TOPICS:
                    self.last_receive = time.monotonic()
        return callback

    def _input_callback(self, topic: str):
        Header, Time = self.store.types[INPUTS_TYPE], self.store.types["builtin_interfaces/msg/Time"]

        def callback(msg, info):
            published = int(info.get("source_timestamp", 0) or 0) or self._receive_ns(info)
            hdr = Header(stamp=Time(sec=msg.header.stamp.sec, nanosec=msg.header.stamp.nanosec), frame_id=topic)
            with self._lock:
                if self._closed:
                    return
                self.writer.write(self._inputs_conn, published, self.store.serialize_cdr(hdr, INPUTS_TYPE))
                self.inputs_seen += 1
        return callback

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self.writer.close()

    def summary(self) -> str:
        parts = [f"{n} on {t}" for t, n in self.counts.items()]
        if self.inputs_seen:
            parts.append(f"{self.inputs_seen} input stamps")
        return f"recorded {', '.join(parts) or 'nothing'} to {self.path}"


def resolve_types(node, topics, timeout: float) -> dict[str, str]:
    """``pkg/msg/Type`` of each topic as advertised in the ROS graph; waits up to ``timeout`` s for publishers."""
    end = time.monotonic() + timeout
    while True:
        known = dict((name, types[0]) for name, types in node.get_topic_names_and_types() if types)
        found = {t: known[t] for t in topics if t in known and node.count_publishers(t) > 0}
        if len(found) == len(topics) or time.monotonic() > end:
            break
        time.sleep(0.1)
    missing = [t for t in topics if t not in found]
    if missing:
        raise TimeoutError(f"no publisher of {missing} appeared within {timeout:.0f} s (is the node running, "
                           "on this ROS_DOMAIN_ID?)")
    return found


class Spinner:
    """Spins ``node`` on its own executor thread until :meth:`stop`."""

    def __init__(self, node):
        from rclpy.executors import SingleThreadedExecutor

        self.executor = SingleThreadedExecutor()
        self.executor.add_node(node)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5.0)
        self.executor.shutdown()


def wait_until_quiet(recorder: Recorder, quiet: float, limit: float) -> None:
    """Return once nothing (but :data:`PERIODIC_TOPICS`) arrived for ``quiet`` seconds, or after ``limit`` s."""
    end = time.monotonic() + limit
    while time.monotonic() < end and time.monotonic() - recorder.last_receive < quiet:
        time.sleep(0.05)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m panoptic_ros.ros.record", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="bag folder to create")
    parser.add_argument("--topics", nargs="+", default=["/panoptic_node/panoptic"], metavar="TOPIC",
                        help="topics to record (default /panoptic_node/panoptic)")
    parser.add_argument("--inputs", nargs="*", default=[], metavar="TOPIC",
                        help=f"image topics whose stamps and publish times go on {INPUTS_TOPIC}")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--discovery-timeout", type=float, default=60.0, metavar="S",
                        help="wait up to S seconds for publishers of --topics (default 60)")
    parser.add_argument("--duration", type=float, default=0.0, metavar="S", help="stop after S seconds (0 = Ctrl-C)")
    args = parser.parse_args(argv)
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    signal.signal(signal.SIGTERM, _interrupt)
    rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("panoptic_record")
    recorder = spinner = None
    try:
        types = resolve_types(node, args.topics, args.discovery_timeout)
        recorder = Recorder(node, args.out, types, tuple(args.inputs), args.storage)
        spinner = Spinner(node)
        print(f"recording {sorted(types)} to {args.out}", flush=True)
        end = time.monotonic() + args.duration if args.duration > 0 else float("inf")
        while time.monotonic() < end:
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    except (TimeoutError, ValueError, FileExistsError) as exc:
        print(f"record: {exc}", file=sys.stderr)
        return 1
    finally:
        if spinner is not None:
            spinner.stop()
        if recorder is not None:
            recorder.close()
            print(recorder.summary())
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
