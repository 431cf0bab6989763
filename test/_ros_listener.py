"""Test helper process for test_ros_replay.py: records messages of given topics (serialized bytes + arrival time)
until --count messages arrived or --timeout passed, then pickles them to --out."""
from __future__ import annotations

import argparse
import importlib
import pickle
import sys
import time

import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy


def recorder(name: str, got: list):
    """Callback storing (topic, publisher's source timestamp in s, serialized bytes): the source timestamp
    measures the player's pacing, not this process's scheduling."""
    def callback(data, info):
        got.append((name, info["source_timestamp"] / 1e9, bytes(data)))
    return callback


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topic", nargs=3, action="append", metavar=("NAME", "TYPE", "DURABILITY"), required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--ready", help="file to create once the subscriptions exist")
    args = parser.parse_args()
    rclpy.init()
    node = rclpy.create_node("replay_listener")
    got = []
    for name, msgtype, durability in args.topic:
        pkg, kind, cls = msgtype.split("/")
        msg_cls = getattr(importlib.import_module(f"{pkg}.{kind}"), cls)
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL if durability == "latched"
                         else DurabilityPolicy.VOLATILE)
        node.create_subscription(msg_cls, name, recorder(name, got), qos, raw=True)
    if args.ready:
        open(args.ready, "w").close()
    end = time.monotonic() + args.timeout
    while len(got) < args.count and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    with open(args.out, "wb") as f:
        pickle.dump(got, f)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
