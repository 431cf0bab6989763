"""Clean shutdown of panoptic_node on SIGINT / SIGTERM (issue 9): within 2 s, exit code 0, no traceback.

Scenarios, each ``--repeats`` times for each signal:
  idle        the node is ready and has no input;
  in_flight   a frame was published 20 ms ago to an idle node, so the worker is inside the network forward
              (the shipped model takes ~60 ms here) when the signal arrives;
  streaming   a camera publishes at 30 Hz and the signal comes at a random moment;
  loading     the signal arrives while the model loads and warms up (``--backend``, default auto);
  building    backend onnxruntime with an empty cache: the signal arrives while the network is being exported
              (the CPU stand-in for a TensorRT engine build; no GPU here).

Printed per scenario and signal: the slowest signal -> exit time, exit codes and whether any output held a
traceback; JSON with every run to ``--out``. Exit status 1 if any run failed a criterion.

    .venv/bin/python bench/shutdown.py --repeats 3
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overload import Camera, NodeProcess, ros_env  # noqa: E402

LIMIT_S = 2.0
SCENARIOS = ("idle", "in_flight", "streaming", "loading", "building")


def run_once(scenario: str, sig: int, model: str, cam: Camera | None, env: dict, workdir: Path, k: int,
             backend: str = "auto") -> dict:
    log = workdir / f"{scenario}_{sig}_{k}.log"
    params = {"threads": 0, "backend": backend}
    run_env = dict(env)
    if scenario == "building":
        params["backend"] = "onnxruntime"
        run_env["PANOPTIC_ROS_CACHE"] = tempfile.mkdtemp(prefix="cache_", dir=workdir)  # empty: must export
    node = NodeProcess(run_env, log, model, params)
    note = ""
    if scenario in ("loading", "building"):
        node.wait_for("loading model", 300)
        time.sleep(1.0 if scenario == "building" else random.uniform(0.2, 1.0))
        if "ready: model" in node.text():
            note = "node was already ready"
    else:
        node.wait_for("ready: model", 300)
        cam.wait_connected()
        if scenario == "in_flight":
            n = cam.count()
            cam.publish(k)  # node idle -> the worker takes this frame at once
            if not cam.wait_count(n + 1, 30.0):
                note = "first frame got no answer"
            time.sleep(0.3)
            n = cam.count()
            cam.publish(k + 1)
            time.sleep(0.02)
            if cam.count() > n:
                note = "frame finished before the signal"
        elif scenario == "streaming":
            end = time.monotonic() + random.uniform(1.0, 2.0)
            i = 0
            while time.monotonic() < end:
                cam.publish(i)
                i += 1
                time.sleep(1 / 30)
    code, seconds = node.stop(sig)
    text = node.text()
    return {"scenario": scenario, "signal": signal.Signals(sig).name, "exit_code": code, "seconds": seconds,
            "traceback": "Traceback" in text, "note": note, "log": str(log),
            "ok": code == 0 and seconds <= LIMIT_S and "Traceback" not in text}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="", help="checkpoint (default: the shipped model)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--backend", default="auto", help="node backend outside the building scenario (default auto)")
    parser.add_argument("--workdir", type=Path, default=None, help="node logs go here (default: a temp dir)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="panoptic_shutdown_"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = ros_env(log_dir=workdir / "ros_log")
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "FASTDDS_BUILTIN_TRANSPORTS")})
    random.seed(0)
    cam = Camera(640, 480, outputs=("panoptic_ids",), reliable=True)
    runs = []
    try:
        for scenario in args.scenarios:
            for sig in (signal.SIGINT, signal.SIGTERM):
                for k in range(args.repeats):
                    r = run_once(scenario, sig, args.model, cam, env, workdir, k, args.backend)
                    runs.append(r)
                    print(f"{scenario:10s} {r['signal']:7s} exit {r['exit_code']} in {r['seconds']:.2f} s"
                          f"{'  TRACEBACK' if r['traceback'] else ''}{'  (' + r['note'] + ')' if r['note'] else ''}"
                          f"  {'ok' if r['ok'] else 'FAIL'}", flush=True)
    finally:
        cam.close()
    print(f"\nsummary (limit {LIMIT_S:g} s, exit 0, no traceback); load average {os.getloadavg()[0]:.1f}")
    for scenario in args.scenarios:
        for name in ("SIGINT", "SIGTERM"):
            rs = [r for r in runs if r["scenario"] == scenario and r["signal"] == name]
            print(f"  {scenario:10s} {name:7s} max {max(r['seconds'] for r in rs):.2f} s, "
                  f"{sum(r['ok'] for r in rs)}/{len(rs)} ok")
    if args.out:
        args.out.write_text(json.dumps(runs, indent=1))
    return 0 if all(r["ok"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
