"""Long run: 10,000 frames through panoptic_node, replayed in lock step (issue 9).

The node runs as its own process; this process replays a camera (640x480 rgb8 + CameraInfo, a cycle of 16
frames, reliable QoS) and sends the next frame as soon as every subscribed output of the previous one arrived,
so every frame is processed and nothing is dropped by design. Checked and printed (JSON to ``--out``):
  - resident memory (RSS) of the node after warm-up (``--warmup`` frames) and at the end: growth < 5 %;
  - no queue growth: per-frame latency (publish -> last output) of the last tenth vs the first tenth after
    warm-up (a growing queue would show as growing latency), and the node's own counters: dropped = 0,
    received = processed;
  - every published message (all six outputs) carries the stamp of the frame it came from, exactly once,
    none out of order.

    .venv/bin/python bench/long_run.py                         # shipped model, 10,000 frames
    .venv/bin/python bench/long_run.py --frames 1500 --warmup 300
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overload import Camera, NodeProcess, finish, percentiles, ros_env  # noqa: E402

OUTPUTS = ("panoptic", "panoptic_ids", "semantic", "overlay", "grid", "markers")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="", help="checkpoint (default: the shipped model)")
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=500, help="frames before the reference RSS sample")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--threads", type=int, default=0, help="node inference threads (0 = the physical cores)")
    parser.add_argument("--backend", default="auto", help="node backend (default auto: what the node picks here)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for one frame's outputs")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--log", type=Path, default=Path("/tmp/panoptic_long_run_node.log"))
    args = parser.parse_args(argv)
    if not 0 < args.warmup < args.frames:
        parser.error("need 0 < --warmup < --frames")

    env = ros_env()
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "FASTDDS_BUILTIN_TRANSPORTS")})
    load_start = os.getloadavg()
    node = NodeProcess(env, args.log, args.model, {"threads": args.threads, "input_qos": "reliable",
                                                   "backend": args.backend})
    cam = None
    sent: list[int] = []
    latency_ms: list[float] = []
    rss: list[tuple[int, float]] = []
    missing: list[int] = []
    try:
        node.wait_for("ready: model", 300)
        cam = Camera(args.width, args.height, outputs=OUTPUTS, reliable=True)
        cam.wait_connected()
        cam.pub_info.publish(cam.info)  # the calibration first, so frame 0 already gets a grid
        time.sleep(0.5)
        base_diag = {}
        t_start = time.monotonic()
        for i in range(args.frames):
            if i == args.warmup:
                time.sleep(1.5)  # a diagnostics message with the warm-up counters
                base_diag = cam.last_diagnostics()
            counts = {name: cam.count(name) for name in OUTPUTS}
            t0 = time.time()
            sent.append(cam.publish(i))
            end = time.monotonic() + args.timeout
            while any(cam.count(name) <= counts[name] for name in OUTPUTS):
                if time.monotonic() > end:
                    missing.append(i)
                    break
                time.sleep(0.0005)
            latency_ms.append(1e3 * (time.time() - t0))
            if i % 100 == 0 or i == args.warmup or i == args.frames - 1:
                rss.append((i, node.rss_mb()))
            if i % 500 == 0:
                print(f"frame {i}: RSS {rss[-1][1]:.1f} MiB, latency {latency_ms[-1]:.0f} ms, "
                      f"{time.monotonic() - t_start:.0f} s", flush=True)
        elapsed = time.monotonic() - t_start
        time.sleep(1.5)
        diag = cam.last_diagnostics()
    finally:
        if cam is not None:
            cam.close()
        code, stop_s = node.stop(signal.SIGINT)

    sent_set = {s: k for k, s in enumerate(sent)}
    stamps_ok, in_order, duplicates = True, True, 0
    for name in OUTPUTS:
        stamps = [s for s, _ in cam.arrivals[name]]
        stamps_ok &= all(s in sent_set for s in stamps)
        in_order &= all(a < b for a, b in zip(stamps, stamps[1:]))
        duplicates += len(stamps) - len(set(stamps))
    rss_warm = next(m for i, m in rss if i >= args.warmup)
    growth = 100.0 * (rss[-1][1] - rss_warm) / rss_warm
    after = np.asarray(latency_ms[args.warmup:])
    tenth = max(1, after.size // 10)
    first, last = percentiles(after[:tenth]), percentiles(after[-tenth:])

    def delta(key):
        return int(diag.get(key, 0)) - int(base_diag.get(key, 0))

    counters = {k: delta(k) for k in ("frames received", "frames processed", "frames dropped (stale)",
                                      "frames with bad input")}
    report = {
        "model": args.model or "shipped", "backend": diag.get("backend"), "precision": diag.get("precision"),
        "auto decision": diag.get("auto decision"), "image": f"{args.width}x{args.height} rgb8", "frames": args.frames,
        "warmup": args.warmup, "seconds": elapsed, "frames_per_s": args.frames / elapsed,
        "frames_without_all_outputs": len(missing),
        "published": {name: len(cam.arrivals[name]) for name in OUTPUTS},
        "rss_mb": {"start": rss[0][1], "after_warmup": rss_warm, "end": rss[-1][1],
                   "max": max(m for _, m in rss), "growth_pct_after_warmup": growth},
        "latency_ms_first_tenth": first, "latency_ms_last_tenth": last,
        "diagnostics_after_warmup": counters,
        "node_exit": {"code": code, "seconds": stop_s}, "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
    }
    checks = {
        "RSS growth after warm-up < 5 %": growth < 5.0,
        "every frame got all six outputs": not missing,
        "no queue growth (last-tenth p50 latency <= first-tenth p50 x 1.25 + 10 ms)":
            last["p50"] <= first["p50"] * 1.25 + 10.0,
        "node dropped nothing, processed all it received": counters["frames dropped (stale)"] == 0
            and counters["frames received"] == counters["frames processed"] == args.frames - args.warmup,
        "every output stamped with its input's stamp": stamps_ok,
        "no output out of order or twice": in_order and duplicates == 0,
        "clean exit on SIGINT": code == 0 and "Traceback" not in node.text(),
    }
    return finish(report, checks, args.out)


if __name__ == "__main__":
    sys.exit(main())
