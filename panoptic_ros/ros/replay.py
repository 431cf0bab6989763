"""panoptic-replay: play a rosbag2 (sqlite3 or mcap) into ROS 2 topics at the recorded timing.

Works where ``ros2 bag`` is not installed (e.g. a venv with the rclpy wheels): messages are read raw with
``rosbags`` and published as the recorded CDR bytes, never deserialized. Topics recorded as transient-local
(``/tf_static``) are republished transient-local so late subscribers get them.

    panoptic-replay drive.mcap --rate 0.5 --loop --topics /camera/image_raw /camera/camera_info

Measuring a node live: ``--record OUT_BAG`` records the node's outputs while the bag plays (receive times as log
times, plus the publish time of every played image; see :mod:`panoptic_ros.ros.record`), then
``panoptic-eval bag BAG --predictions OUT_BAG --out DIR`` reports PQ, dropped frames and end-to-end latency:

    panoptic-replay drive --topics /camera/image_raw /camera/camera_info --record rec
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import time
from pathlib import Path

from ..data.bag import IMAGE_TOPIC, bag_topics, read_raw
from .shutdown import exit_if_stuck

TEARDOWN_LIMIT_S = 10.0


def message_class(msgtype: str):
    """The rclpy message class of ``pkg/msg/Name``; ValueError when the package is not installed."""
    pkg, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"message type {msgtype} is not installed here ({exc})") from None


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="panoptic-replay", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bag", type=Path, help="rosbag2 folder (or .mcap / .db3 inside one)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    parser.add_argument("--loop", action="store_true", help="start over at the end, until interrupted")
    parser.add_argument("--start-offset", type=float, default=0.0, metavar="S",
                        help="skip the first S seconds of the bag")
    parser.add_argument("--topics", nargs="+", metavar="TOPIC", help="play only these topics (default: all)")
    parser.add_argument("--remap", nargs="+", default=[], metavar="OLD:=NEW", help="publish OLD on NEW")
    parser.add_argument("--delay", type=float, default=0.5, metavar="S",
                        help="wait S seconds after creating the publishers, for discovery (default 0.5)")
    parser.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="S",
                        help="before playing, wait up to S seconds until every played topic has a subscriber")
    parser.add_argument("--clock", action="store_true",
                        help="also publish the bag time on /clock (for nodes with use_sim_time:=true)")
    parser.add_argument("--quiet", action="store_true", help="no summary line")
    rec = parser.add_argument_group("recording the node's outputs")
    rec.add_argument("--record", type=Path, default=None, metavar="OUT_BAG",
                     help="record --record-topics while playing into this new bag (mcap)")
    rec.add_argument("--record-topics", nargs="+", default=["/panoptic_node/panoptic", "/diagnostics"],
                     metavar="TOPIC", help="topics to record (default /panoptic_node/panoptic /diagnostics)")
    rec.add_argument("--record-inputs", nargs="*", default=None, metavar="TOPIC",
                     help="played image topics whose stamps and publish times to record, for latency "
                          f"(default {IMAGE_TOPIC} when played)")
    rec.add_argument("--record-wait", type=float, default=120.0, metavar="S",
                     help="before playing, wait up to S seconds for publishers of --record-topics (default 120: "
                          "the node appears once its model is loaded)")
    rec.add_argument("--record-tail", type=float, default=2.5, metavar="S",
                     help="after playing, record until nothing arrived for S seconds (default 2.5)")
    args = parser.parse_args(argv)
    if not args.rate > 0:
        parser.error(f"--rate must be positive, got {args.rate}")
    if args.start_offset < 0:
        parser.error(f"--start-offset must be >= 0, got {args.start_offset}")
    for item in args.remap:
        if ":=" not in item:
            parser.error(f"--remap takes OLD:=NEW, got {item!r}")
    return args


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _bag_dir(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"bag {path} does not exist")
    return path.parent if path.is_file() and path.suffix in (".mcap", ".db3") else path


def main(argv=None) -> int:
    args = parse_args(argv)
    import rclpy
    from rclpy.duration import Duration
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions

    try:
        bag = _bag_dir(args.bag)
        topics = bag_topics(bag)
    except Exception as exc:  # noqa: BLE001 - rosbags raises its own errors for broken bags
        print(f"panoptic-replay: cannot read {args.bag}: {exc}", file=sys.stderr)
        return 1
    wanted = args.topics or sorted(topics)
    missing = [t for t in wanted if t not in topics]
    if missing:
        print(f"panoptic-replay: topics {missing} are not in the bag (it has {sorted(topics)})", file=sys.stderr)
        return 1
    remap = dict(item.split(":=", 1) for item in args.remap)

    # Interrupts end playback between messages; rclpy's own handler would shut the context down under us.
    signal.signal(signal.SIGTERM, _interrupt)
    node = None
    published = 0
    recording = None
    exit_code = 0
    try:
        rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)
        node = rclpy.create_node("panoptic_replay")
        publishers = {}
        for topic in wanted:
            info = topics[topic]
            try:
                cls = message_class(info.msgtype)
            except ValueError as exc:
                print(f"panoptic-replay: skipping {topic}: {exc}", file=sys.stderr)
                continue
            qos = QoSProfile(depth=1 if info.latched else 10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL if info.latched
                             else DurabilityPolicy.VOLATILE)
            publishers[topic] = node.create_publisher(cls, remap.get(topic, topic), qos)
        clock_pub = None
        if args.clock:
            from rosgraph_msgs.msg import Clock

            clock_pub = node.create_publisher(Clock, "/clock", 10)
        if args.record is not None:
            inputs = args.record_inputs if args.record_inputs is not None else \
                [remap.get(IMAGE_TOPIC, IMAGE_TOPIC)] if IMAGE_TOPIC in publishers else []
            input_types = {remap.get(t, t): topics[t].msgtype for t in publishers}
            unknown = [t for t in inputs if t not in input_types]
            if unknown:
                print(f"panoptic-replay: --record-inputs {unknown} are not played topics", file=sys.stderr)
                exit_code = 1
                return exit_code
            try:
                recording = _start_recording(args, {t: input_types[t] for t in inputs})
            except (TimeoutError, ValueError, FileExistsError) as exc:
                print(f"panoptic-replay: cannot record: {exc}", file=sys.stderr)
                exit_code = 1
                return exit_code
        time.sleep(args.delay)
        if args.wait_for_subscribers > 0:
            _wait_for_subscribers(publishers, args.wait_for_subscribers)
        t_begin = time.monotonic()
        while True:
            published += _play_once(bag, publishers, args, clock_pub)
            if not args.loop:
                break
        for pub in publishers.values():  # reliable delivery of the last messages before the process exits
            pub.wait_for_all_acked(Duration(seconds=2))
        if not args.quiet:
            print(f"panoptic-replay: published {published} messages on {len(publishers)} topics in "
                  f"{time.monotonic() - t_begin:.1f} s")
        if recording is not None:
            from .record import wait_until_quiet

            wait_until_quiet(recording[0], args.record_tail, limit=max(30.0, 4 * args.record_tail))
    except KeyboardInterrupt:
        if not args.quiet:
            print(f"panoptic-replay: interrupted after {published} messages")
    except BaseException:
        exit_code = 1  # what the traceback's exit would give, kept if the teardown below hangs
        raise
    finally:
        # Playback is over: exit with its code even if DDS teardown hangs, here or in interpreter exit after main
        # returns, so the timer is never cancelled (main is a process entry point).
        exit_if_stuck(TEARDOWN_LIMIT_S, exit_code, "panoptic-replay")
        if recording is not None:
            recorder, spinner, rec_node = recording
            spinner.stop()
            recorder.close()
            rec_node.destroy_node()
            print(f"panoptic-replay: {recorder.summary()}")
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return exit_code


def _start_recording(args, inputs: dict):
    """(Recorder, Spinner, node) recording ``args.record_topics`` and the publish times of ``inputs``."""
    import rclpy

    from .record import Recorder, Spinner, resolve_types

    rec_node = rclpy.create_node("panoptic_record")
    try:
        types = resolve_types(rec_node, args.record_topics, args.record_wait)
        recorder = Recorder(rec_node, args.record, types, inputs)
    except BaseException:
        rec_node.destroy_node()
        raise
    return recorder, Spinner(rec_node), rec_node


def _wait_for_subscribers(publishers: dict, timeout: float) -> None:
    end = time.monotonic() + timeout
    waiting = list(publishers)
    while waiting and time.monotonic() < end:
        waiting = [t for t in waiting if publishers[t].get_subscription_count() == 0]
        time.sleep(0.05)
    if waiting:
        print(f"panoptic-replay: no subscriber on {waiting} after {timeout:.0f} s; playing anyway", file=sys.stderr)


def _play_once(bag: Path, publishers: dict, args, clock_pub) -> int:
    """One pass over the bag at the recorded timing (scaled by --rate); returns the messages published."""
    start_ns = None
    wall0 = None
    count = 0
    for msg in read_raw(bag, publishers.keys()):
        if start_ns is None:
            start_ns = msg.timestamp_ns + int(args.start_offset * 1e9)
        if msg.timestamp_ns < start_ns:
            continue
        if wall0 is None:
            wall0 = time.monotonic()
        due = wall0 + (msg.timestamp_ns - start_ns) / 1e9 / args.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if clock_pub is not None:
            from builtin_interfaces.msg import Time
            from rosgraph_msgs.msg import Clock

            clock_pub.publish(Clock(clock=Time(sec=msg.timestamp_ns // 10**9, nanosec=msg.timestamp_ns % 10**9)))
        publishers[msg.topic].publish(msg.data)  # rclpy publishes serialized CDR bytes as they are
        count += 1
    return count


if __name__ == "__main__":
    sys.exit(main())
