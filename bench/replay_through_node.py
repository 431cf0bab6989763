"""A synthetic drive replayed live through panoptic_node on this CPU, measured end to end.

1. ``panoptic-world bag``: a drive with ground truth at the model's native size (default 150 frames at 10 fps).
2. ``panoptic_node`` with the shipped model (own process, private ROS_DOMAIN_ID, FASTDDS LARGE_DATA transports).
3. ``panoptic-replay --record``: plays camera + camera_info at 1x and records ~/panoptic and
   /diagnostics with receive times, plus the publish time of every image.
4. ``panoptic-eval bag --predictions``: PQ of what the node published, frames dropped, end-to-end latency
   (recorder receive time of the output - publish time of its input image).
5. The same bag through the node's pipeline offline (``panoptic-eval bag --write-bag``), side by side.

    .venv/bin/python bench/replay_through_node.py [--frames 150 --fps 10 --work /tmp/replay_bench]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run(cmd, env, log: Path, timeout: float) -> None:
    with log.open("w") as f:
        proc = subprocess.run(cmd, env=env, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{log.read_text()[-3000:]}")


def last_diagnostics(rec_bag: Path) -> dict:
    """Values of the node's last /diagnostics status in the recording."""
    from rosbags.highlevel import AnyReader

    from panoptic_ros.data.bag import typestore

    values = None
    with AnyReader([rec_bag], default_typestore=typestore()) as reader:
        conns = [c for c in reader.connections if c.topic == "/diagnostics"]
        for conn, _, raw in reader.messages(connections=conns):
            for status in reader.deserialize(raw, conn.msgtype).status:
                if "panoptic" in status.name:
                    values = {kv.key: kv.value for kv in status.values}
    if values is None:
        sys.exit(f"no panoptic_node status on /diagnostics in {rec_bag}")
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "panoptic_r18_synthetic.pt")
    parser.add_argument("--backend", default="auto", help="node backend parameter (default auto)")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--domain-id", type=int, default=None,
                        help="ROS_DOMAIN_ID of the run (default 225 + pid %% 8, outside the range the tests use)")
    parser.add_argument("--no-offline", action="store_true", help="skip the offline pipeline run")
    parser.add_argument("--all-outputs", action="store_true",
                        help="record all six node outputs, so the node builds all of them (as offline does); "
                             "default: ~/panoptic only")
    args = parser.parse_args()

    import torch

    meta = torch.load(args.model, map_location="cpu", weights_only=False).get("metadata", {})
    height, width = meta.get("input_size", (192, 384))
    work = args.work or Path(tempfile.mkdtemp(prefix="replay_bench_"))
    for name in ("drive", "rec", "report_live", "report_offline", "offline_bag"):
        shutil.rmtree(work / name, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    domain = args.domain_id if args.domain_id is not None else 225 + os.getpid() % 8
    env = dict(os.environ, FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA", ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_DOMAIN_ID=str(domain), ROS_LOG_DIR=str(work / "ros_log"), PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))

    drive = work / "drive"
    run([py, "-m", "panoptic_ros.data.cli", "bag", "--out", drive, "--frames", str(args.frames), "--fps",
         str(args.fps), "--width", str(width), "--height", str(height), "--quiet"], env, work / "world.log", 900)

    outputs = ("panoptic", "panoptic_ids", "semantic", "overlay", "grid", "markers") if args.all_outputs \
        else ("panoptic",)
    record_topics = [f"/panoptic_node/{name}" for name in outputs] + ["/diagnostics"]
    node_log = work / "node.log"
    node = subprocess.Popen([py, "-m", "panoptic_ros.node", "--ros-args", "--params-file",
                             str(ROOT / "config" / "panoptic.yaml"), "-p", f"model_path:={args.model}",
                             "-p", f"backend:={args.backend}", "-r", "image:=/camera/image_raw",
                             "-r", "camera_info:=/camera/camera_info"],
                            env=env, cwd=ROOT, stdout=node_log.open("w"), stderr=subprocess.STDOUT)
    try:
        rec = work / "rec"
        run([py, "-m", "panoptic_ros.ros.replay", drive, "--topics", "/camera/image_raw", "/camera/camera_info",
             "/tf_static",
             "--rate", "1", "--delay", "0", "--wait-for-subscribers", "120", "--record", rec,
             "--record-wait", "300", "--record-topics", *record_topics], env, work / "replay.log", 1800)
    finally:
        node.send_signal(signal.SIGINT)
        try:
            node.wait(timeout=60)
        except subprocess.TimeoutExpired:
            node.kill()
    diag = last_diagnostics(rec)

    from panoptic_ros.evaluation.run import evaluate_recorded

    with (work / "eval_live.log").open("w") as f:
        stdout, sys.stdout = sys.stdout, f
        try:
            live_result = evaluate_recorded(drive, rec, work / "report_live", "live replay through panoptic_node")
        finally:
            sys.stdout = stdout
    live = live_result["live"]

    offline = None
    if not args.no_offline:
        run([py, "-m", "panoptic_ros.evaluation.cli", "bag", drive, "--model", args.model, "--backend",
             args.backend, "--out", work / "report_offline", "--write-bag", work / "offline_bag"],
            env, work / "eval_offline.log", 1800)
        offline = json.loads((work / "report_offline" / "report.json").read_text())

    received, processed = int(diag["frames received"]), int(diag["frames processed"])
    stale, bad = int(diag["frames dropped (stale)"]), int(diag["frames with bad input"])
    idle = int(diag["frames skipped (no subscribers)"])
    lost_in_transport = live["frames_in"] - received
    lost_after_node = processed - live["frames_out"]  # published by the node, never reached the recorder
    agree = live["dropped"] == lost_in_transport + stale + bad + idle and lost_after_node == 0
    lat = live["latency_ms"]
    print(f"replay of {args.frames} frames at {args.fps:g} fps, {width}x{height}, through panoptic_node "
          f"({diag.get('backend', '?')}, {args.model.name}), outputs subscribed: {', '.join(outputs)}; "
          f"work folder {work}")
    print(f"frames in (published)          {live['frames_in']}")
    print(f"frames out (recorded outputs)  {live['frames_out']}   (out of order {live['out_of_order']}, "
          f"duplicates {live['duplicates']})")
    print(f"dropped (no output)            {live['dropped']}")
    if live["outputs_without_input"]:
        print(f"outputs with no input's stamp  {live['outputs_without_input']}  (another publisher on ROS_DOMAIN_ID "
              f"{env['ROS_DOMAIN_ID']}? ignored by the evaluation)")
    print(f"  node /diagnostics: received {received}, processed {processed}, dropped stale {stale}, bad input "
          f"{bad}, skipped {idle}; not received (transport) {lost_in_transport} -> "
          + ("agrees with the recording" if agree else
             f"DISAGREES with the recording: {lost_after_node} outputs the node published never reached the "
             "recorder (reliable depth-1 output QoS replaces a sample a slow subscriber has not acknowledged)"))
    print(f"PQ live (frames with output)   {100 * live_result['All']['pq']:.1f}")
    print(f"end-to-end latency (ms)        p50 {lat['p50']:.1f}  p95 {lat['p95']:.1f}  p99 {lat['p99']:.1f}  "
          f"max {lat['max']:.1f}")
    if offline is not None:
        off_lat = offline["latency_ms"]
        print(f"offline pipeline, same bag     PQ {100 * offline['All']['pq']:.1f} over all frames; "
              f"processing p50 {off_lat['p50']:.1f} ms (all six outputs built)")
        print(f"ratio live end-to-end p50 / offline processing p50 = {lat['p50'] / off_lat['p50']:.2f}; "
              f"output rate / input rate = {live['frames_out'] / live['frames_in']:.2f}")
    print(f"reports: {work / 'report_live' / 'report.md'}"
          + (f", {work / 'report_offline' / 'report.md'}" if offline else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
