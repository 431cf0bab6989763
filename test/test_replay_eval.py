"""The node's pipeline over a bag (panoptic-eval bag --write-bag), evaluating recorded outputs
(panoptic-eval bag --predictions: matching by stamp, dropped and out-of-order frames, latency), and a short live
replay -> panoptic_node -> recorder -> evaluation over real DDS (separate processes)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) is not installed")
pytest.importorskip("panoptic_ros.msg", reason="messages not generated: run bash tools/build_msgs.sh .venv")

from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402

from panoptic_ros.data.bag import bag_topics, read_bag, read_raw  # noqa: E402
from panoptic_ros.evaluation.cli import main as eval_main  # noqa: E402
from panoptic_ros.ros.record import INPUTS_TOPIC, INPUTS_TYPE, panoptic_typestore  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
H, W = 64, 96
NODE = "/panoptic_node"
OUTPUT_TOPICS = {f"{NODE}/{n}" for n in ("panoptic", "panoptic_ids", "semantic", "overlay", "grid", "markers")}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    import torch

    from panoptic_ros.model.checkpoint import build_metadata, save_checkpoint
    from panoptic_ros.model.network import PanopticNet
    from panoptic_ros.taxonomy import Taxonomy

    taxonomy = Taxonomy.cityscapes()
    torch.manual_seed(0)
    model = PanopticNet.from_config(taxonomy=taxonomy, backbone="resnet18", fpn_channels=32, head_channels=16)
    metadata = build_metadata(model, taxonomy, (H, W), {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)})
    return save_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt", model, metadata)


def drive_bag(path: Path, frames: int) -> Path:
    from panoptic_ros.data.cli import main as world_main

    assert world_main(["bag", "--out", str(path), "--frames", str(frames), "--fps", "10", "--width", str(W),
                       "--height", str(H), "--quiet"]) == 0
    return path


@pytest.fixture(scope="module")
def offline(checkpoint, tmp_path_factory):
    """A 6-frame drive through the node's pipeline offline: (input bag, output bag, report folder)."""
    tmp = tmp_path_factory.mktemp("offline")
    bag = drive_bag(tmp / "drive", 6)
    out_bag, report = tmp / "outputs", tmp / "report"
    assert eval_main(["bag", str(bag), "--model", str(checkpoint), "--backend", "cpu", "--out", str(report),
                      "--write-bag", str(out_bag), "--worst", "2"]) == 0
    return bag, out_bag, report


def panoptic_messages(path: Path, topic: str = f"{NODE}/panoptic"):
    store = panoptic_typestore()
    return [(m.timestamp_ns, store.deserialize_cdr(m.data, m.msgtype), m.data) for m in read_raw(path, [topic])]


def stamp(hdr) -> int:
    return hdr.stamp.sec * 1_000_000_000 + hdr.stamp.nanosec


def test_write_bag_round_trip(checkpoint, offline):
    from panoptic_ros.ros.segmentation import from_panoptic_segmentation
    from panoptic_ros.predictor import Predictor

    bag, out_bag, report = offline
    frames = list(read_bag(bag))
    topics = bag_topics(out_bag)
    assert set(topics) == OUTPUT_TOPICS and all(info.count == len(frames) for info in topics.values())
    assert topics[f"{NODE}/panoptic"].msgtype == "panoptic_ros/msg/PanopticSegmentation"

    store = panoptic_typestore()
    by_topic = {}
    for m in read_raw(out_bag):
        by_topic.setdefault(m.topic, []).append((m.timestamp_ns, store.deserialize_cdr(m.data, m.msgtype)))
    stamps = [f.stamp_ns for f in frames]
    for topic, items in by_topic.items():
        headers = [msg.markers[0].header if topic.endswith("markers") else msg.header for _, msg in items]
        assert [t for t, _ in items] == stamps, topic  # log time = the input's stamp
        assert [stamp(h) for h in headers] == stamps, topic
        expected_frame = "base_link" if topic.endswith(("grid", "markers")) else frames[0].frame_id
        assert {h.frame_id for h in headers} == {expected_frame}, topic

    predictor = Predictor.from_checkpoint(checkpoint, backend="cpu", threads=1)
    for frame, (_, msg) in zip(frames, by_topic[f"{NODE}/panoptic"]):
        ids, segments, _ = from_panoptic_segmentation(msg)
        assert np.array_equal(ids, predictor.predict(frame.image).panoptic)

    facts = json.loads((report / "report.json").read_text())
    live = facts["extra"]["live"]
    assert (live["frames_in"], live["frames_out"], live["dropped"], live["out_of_order"]) == (6, 6, 0, 0)
    assert facts["latency_ms"]["count"] == 6 and "Frames in and out" in (report / "report.md").read_text()


def test_recorded_outputs_are_matched_by_stamp(offline, tmp_path):
    """A recording that lost frame 3 and received 2 before 1; inputs published at stamp + 1 s."""
    bag, out_bag, _ = offline
    items = panoptic_messages(out_bag)
    store = panoptic_typestore()
    rec = tmp_path / "rec"
    order = [0, 2, 1, 4, 5]
    received = {}
    with Writer(rec, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP) as writer:
        pan = writer.add_connection(f"{NODE}/panoptic", "panoptic_ros/msg/PanopticSegmentation", typestore=store)
        inputs = writer.add_connection(INPUTS_TOPIC, INPUTS_TYPE, typestore=store)
        for t, msg, _ in items:
            writer.write(inputs, t + 1_000_000_000, store.serialize_cdr(msg.header, INPUTS_TYPE))
        for k, i in enumerate(order):
            t, _, data = items[i]
            received[t] = items[0][0] + 1_300_000_000 + k * 100_000_000  # arrival order = `order`
            writer.write(pan, received[t], data)
    report = tmp_path / "report"
    assert eval_main(["bag", str(bag), "--predictions", str(rec), "--out", str(report)]) == 0
    facts = json.loads((report / "report.json").read_text())
    live = facts["extra"]["live"]
    assert (live["frames_in"], live["frames_out"], live["dropped"], live["out_of_order"]) == (6, 5, 1, 1)
    assert live["dropped_stamps"] == [items[3][0]]
    expected = sorted((r - t - 1_000_000_000) / 1e6 for t, r in received.items())
    assert facts["latency_ms"]["count"] == 5 and facts["latency_ms"]["max"] == pytest.approx(expected[-1])
    assert live["latency_ms"]["p50"] == pytest.approx(np.percentile(expected, 50))

    assert eval_main(["bag", str(bag), "--out", str(report)]) == 2  # neither --model nor --predictions
    assert eval_main(["bag", str(bag), "--predictions", str(bag), "--out", str(report)]) == 2  # no such topic


@pytest.mark.ros
@pytest.mark.timeout(900)
def test_live_replay_through_the_node_is_recorded_and_evaluated(checkpoint, tmp_path):
    bag = drive_bag(tmp_path / "drive", 20)
    env = dict(os.environ, ROS_DOMAIN_ID=str(20 + (os.getpid() * 7 + 157) % 200),
               FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA", ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", ROS_LOG_DIR=str(tmp_path / "ros_log"),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    log = tmp_path / "node.log"
    node = subprocess.Popen([sys.executable, "-m", "panoptic_ros.node", "--ros-args",
                             "-p", f"model_path:={checkpoint}", "-p", "backend:=cpu", "-p", "threads:=1", "-p", "diagnostics_period:=0.5",
                             "-r", "image:=/camera/image_raw", "-r", "camera_info:=/camera/camera_info"],
                            env=env, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
    rec = tmp_path / "rec"
    try:
        player = subprocess.run([sys.executable, "-m", "panoptic_ros.ros.replay", str(bag), "--topics",
                                 "/camera/image_raw", "/camera/camera_info", "--delay", "0",
                                 "--wait-for-subscribers", "120", "--record", str(rec), "--record-wait", "300",
                                 "--record-tail", "1.5"],
                                env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    finally:
        node.send_signal(signal.SIGINT)
        try:
            node.wait(timeout=60)
        except subprocess.TimeoutExpired:
            node.kill()
    assert player.returncode == 0, f"{player.stdout}\n{player.stderr}\n{log.read_text()}"
    assert "recorded" in player.stdout and "input stamps" in player.stdout, player.stdout

    inputs = [f.stamp_ns for f in read_bag(bag)]
    got = [stamp(msg.header) for _, msg, _ in panoptic_messages(rec)]
    assert got, f"no outputs recorded:\n{player.stdout}\n{log.read_text()}"
    assert set(got) <= set(inputs), "an output carries a stamp no input had"
    assert got == sorted(set(got)), f"outputs out of order or repeated: {got}"
    published = [stamp(store_msg) for store_msg in
                 (panoptic_typestore().deserialize_cdr(m.data, m.msgtype) for m in read_raw(rec, [INPUTS_TOPIC]))]
    assert published == inputs, "the recorder must see every played image, in order"
    assert bag_topics(rec)["/diagnostics"].count > 0

    report = tmp_path / "report"
    assert eval_main(["bag", str(bag), "--predictions", str(rec), "--out", str(report)]) == 0
    facts = json.loads((report / "report.json").read_text())
    live = facts["extra"]["live"]
    assert live["frames_in"] == 20 and live["frames_out"] == len(got) and live["dropped"] == 20 - len(got)
    assert live["out_of_order"] == 0 and facts["latency_ms"]["count"] == len(got)
    assert 0 < live["latency_ms"]["p50"] < 5000, live["latency_ms"]
    assert (report / "report.md").exists() and (report / "per_class_pq.png").exists()
