"""Overload: a camera publishing at 3x the rate panoptic_node can process, for 60 s (issue 9).

Runs the real node as its own process (``python -m panoptic_ros.node``) on a private ROS domain and plays a
640x480 rgb8 camera into it from this process. First the node's service time is measured (frames one at a
time); then frames are published at ``--factor`` times the rate that allows for ``--duration`` seconds.

Printed (and written to ``--out`` as JSON): latency of every published frame (publish -> ~/panoptic_ids
received, percentiles over the whole run and per third), the node's resident memory (RSS) at the start and end
of the load, the node's own counters from /diagnostics (received, processed, dropped as stale) and the pass /
fail of each criterion:
  - latency bounded: p99 over the last third <= 3 x the measured service time (only the newest frame waits);
  - no growth: p95 of the last third <= p95 of the first third x 1.25 + 10 ms;
  - memory flat: RSS growth from 10 s into the load to its end < 5 %;
  - dropped frames counted: diagnostics' dropped count > 0 and received = processed + dropped + bad + idle +
    in flight, each snapshot taken under the node's lock (so the differences between two snapshots add up too).

    .venv/bin/python bench/overload.py                       # shipped model, 60 s
    .venv/bin/python bench/overload.py --duration 20 --model /tmp/tiny.pt

The helpers (NodeProcess, Camera) are also used by bench/long_run.py.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def ros_env(domain: int | None = None, log_dir: Path | None = None) -> dict:
    """Environment of the node and of this process: private domain, large-data transport. (Not
    ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST: with it, 640x480 images did not arrive here at all.)"""
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain if domain is not None else 150 + os.getpid() % 80),
               FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA",
               PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    if log_dir is not None:
        env["ROS_LOG_DIR"] = str(log_dir)
    return env


class NodeProcess:
    """``python -m panoptic_ros.node`` with the camera remapped to /camera/*; its log goes to ``log``."""

    def __init__(self, env: dict, log: Path, model: str = "", params: dict | None = None):
        values = {"backend": "cpu", "diagnostics_period": 1.0, **(params or {})}
        if model:
            values["model_path"] = model
        cmd = [sys.executable, "-m", "panoptic_ros.node", "--ros-args",
               "-r", "image:=/camera/image_raw", "-r", "camera_info:=/camera/camera_info"]
        for k, v in values.items():
            cmd += ["-p", f"{k}:={v}"]
        self.log = Path(log)
        self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=self.log.open("w"), stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, fragment: str, timeout: float) -> float:
        """Seconds until ``fragment`` appears in the log; RuntimeError if the node dies or times out."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if fragment in self.text():
                return time.monotonic() - t0
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}:\n{self.text()}")
            time.sleep(0.02)
        raise RuntimeError(f"no {fragment!r} in the node's log after {timeout} s:\n{self.text()}")

    def rss_mb(self) -> float:
        """Resident memory of the node process (VmRSS), MiB."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return float("nan")

    def stop(self, sig: int, timeout: float = 30.0) -> tuple[int | None, float]:
        """(exit code or None if it had to be killed, seconds from the signal to the exit)."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None, time.monotonic() - t0
        return code, time.monotonic() - t0


class Camera:
    """A camera publisher (Image + CameraInfo) and recorder of the node's outputs and diagnostics, in this process.

    Stamps are wall-clock publish times, so latency = arrival time - stamp (same machine, same clock).
    """

    def __init__(self, width: int = 640, height: int = 480, outputs=("panoptic_ids",), reliable: bool = False,
                 node_name: str = "/panoptic_node"):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import OccupancyGrid
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image
        from visualization_msgs.msg import MarkerArray

        from panoptic_ros.msg import PanopticSegmentation

        types = {"panoptic": PanopticSegmentation, "panoptic_ids": Image, "semantic": Image, "overlay": Image,
                 "grid": OccupancyGrid, "markers": MarkerArray}
        rclpy.init()
        self.rclpy = rclpy
        self.node = rclpy.create_node("bench_camera")
        self.width, self.height = width, height
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT)
        self.pub_image = self.node.create_publisher(Image, "/camera/image_raw", qos)
        self.pub_info = self.node.create_publisher(CameraInfo, "/camera/camera_info", qos)
        self.lock = threading.Lock()
        self.arrivals: dict[str, list] = {name: [] for name in outputs}  # name -> [(stamp_ns, arrival_s)]
        self.diagnostics: list[dict] = []
        self.subs = []
        for name in outputs:
            self.subs.append(self.node.create_subscription(types[name], f"{node_name}/{name}",
                                                           lambda m, n=name: self._on_output(n, m),
                                                           QoSProfile(depth=10)))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()
        self.frames = self._frames(16)
        f = width / 2.0
        k = [f, 0.0, width / 2.0, 0.0, f, height / 2.0, 0.0, 0.0, 1.0]
        self.info = CameraInfo(width=width, height=height, distortion_model="plumb_bob", d=[0.0] * 5, k=k,
                               r=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
                               p=k[:3] + [0.0] + k[3:6] + [0.0] + k[6:] + [0.0])

    def _spin(self) -> None:
        while self.rclpy.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - shutting down
                return

    def _frames(self, n: int) -> list:
        from panoptic_ros.ros.image_conversion import numpy_to_image

        rng = np.random.default_rng(0)
        out = []
        for _ in range(n):
            small = rng.integers(0, 256, (self.height // 16, self.width // 16, 3), dtype=np.uint8)
            img = np.kron(small, np.ones((16, 16, 1), np.uint8))
            img[self.height // 2:] = img[self.height // 2:] // 4 + np.array([96, 48, 96], np.uint8)
            out.append(numpy_to_image(img, "rgb8"))
        return out

    def _on_output(self, name: str, msg) -> None:
        now = time.time()
        stamp = msg.markers[0].header.stamp if name == "markers" else msg.header.stamp
        with self.lock:
            self.arrivals[name].append((stamp.sec * 10**9 + stamp.nanosec, now))

    def _on_diagnostics(self, msg) -> None:
        for s in msg.status:
            if s.name.startswith("panoptic_node"):
                with self.lock:
                    self.diagnostics.append({kv.key: kv.value for kv in s.values})

    def connected(self) -> bool:
        return (self.pub_image.get_subscription_count() > 0 and self.pub_info.get_subscription_count() > 0
                and all(s.get_publisher_count() > 0 for s in self.subs))

    def wait_connected(self, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while not self.connected():
            if time.monotonic() > end:
                raise RuntimeError("the node's topics did not connect")
            time.sleep(0.05)
        time.sleep(0.5)

    def publish(self, index: int) -> int:
        """Publish frame ``index`` (cycling through the pre-built frames) stamped now; returns the stamp (ns)."""
        from builtin_interfaces.msg import Time

        now_ns = time.time_ns()
        stamp = Time(sec=now_ns // 10**9, nanosec=now_ns % 10**9)
        msg = self.frames[index % len(self.frames)]
        msg.header.stamp = stamp
        msg.header.frame_id = "camera_optical_frame"
        self.info.header.stamp = stamp
        self.info.header.frame_id = "camera_optical_frame"
        self.pub_info.publish(self.info)
        self.pub_image.publish(msg)
        return now_ns

    def count(self, name: str = "panoptic_ids") -> int:
        with self.lock:
            return len(self.arrivals[name])

    def wait_count(self, n: int, timeout: float, name: str = "panoptic_ids") -> bool:
        end = time.monotonic() + timeout
        while self.count(name) < n:
            if time.monotonic() > end:
                return False
            time.sleep(0.001)
        return True

    def last_diagnostics(self) -> dict:
        with self.lock:
            return dict(self.diagnostics[-1]) if self.diagnostics else {}

    def close(self) -> None:
        self.rclpy.try_shutdown()
        self.thread.join(timeout=2.0)


def finish(report: dict, checks: dict, out) -> int:
    """Print the figures and each check as PASS / FAIL, write the JSON report; exit code 1 if any failed."""
    report["checks"] = checks
    print(json.dumps({k: v for k, v in report.items() if k != "checks"}, indent=1))
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    if out:
        out.write_text(json.dumps(report, indent=1))
    return 0 if all(checks.values()) else 1


def percentiles(values_ms) -> dict:
    v = np.asarray(values_ms, dtype=float)
    if v.size == 0:
        return {"n": 0}
    return {"n": int(v.size), "p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)),
            "p99": float(np.percentile(v, 99)), "max": float(v.max())}


def measure_service_time(cam: Camera, frames: int = 15) -> float:
    """Median publish -> output time (ms) of frames sent one at a time (the node idle in between). A frame
    lost right after discovery (best effort) is sent again."""
    times = []
    for i in range(frames):
        for attempt in range(10):
            n = cam.count()
            t0 = time.time()
            cam.publish(i)
            if cam.wait_count(n + 1, 5.0):
                break
        else:
            raise RuntimeError(f"the node answered no frame within 50 s; its diagnostics: {cam.last_diagnostics()}")
        times.append(1e3 * (cam.arrivals["panoptic_ids"][-1][1] - t0))
        time.sleep(0.05)
    return float(np.median(times[3:]))  # the first frames still build the ground lookup etc.


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="", help="checkpoint (default: the shipped model)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of overload (default 60)")
    parser.add_argument("--factor", type=float, default=3.0, help="input rate / processing rate (default 3)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--threads", type=int, default=0, help="node inference threads (0 = the physical cores)")
    parser.add_argument("--backend", default="auto", help="node backend (default auto: what the node picks here)")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    parser.add_argument("--log", type=Path, default=Path("/tmp/panoptic_overload_node.log"))
    args = parser.parse_args(argv)

    env = ros_env()
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "FASTDDS_BUILTIN_TRANSPORTS")})
    load_start = os.getloadavg()
    node = NodeProcess(env, args.log, args.model, {"threads": args.threads, "backend": args.backend})
    cam = None
    try:
        node.wait_for("ready: model", 300)
        cam = Camera(args.width, args.height, outputs=("panoptic_ids",))
        cam.wait_connected()
        service_ms = measure_service_time(cam)
        rate = args.factor * 1e3 / service_ms
        print(f"service time {service_ms:.1f} ms/frame -> publishing {args.width}x{args.height} rgb8 at "
              f"{rate:.1f} Hz ({args.factor:g}x) for {args.duration:g} s", flush=True)
        base_diag = cam.last_diagnostics()
        first_output = cam.count()
        period = 1.0 / rate
        rss: list[tuple[float, float]] = []
        t0 = time.monotonic()
        sent = 0
        next_rss = t0
        while (now := time.monotonic()) - t0 < args.duration:
            cam.publish(sent)
            sent += 1
            if now >= next_rss:
                rss.append((now - t0, node.rss_mb()))
                next_rss += 1.0
            sleep = t0 + sent * period - time.monotonic()
            if sleep > 0:
                time.sleep(sleep)
        elapsed = time.monotonic() - t0
        time.sleep(2.5)  # the last output and one more diagnostics message
        rss.append((time.monotonic() - t0, node.rss_mb()))
        diag = cam.last_diagnostics()
    finally:
        if cam is not None:
            cam.close()
        code, stop_s = node.stop(2)
    with cam.lock:
        arrivals = cam.arrivals["panoptic_ids"][first_output:]
    latencies = [(a - s / 1e9) * 1e3 for s, a in arrivals]
    thirds = np.array_split(np.asarray(latencies), 3)
    warm = [m for t, m in rss if t >= 10.0] or [m for _, m in rss]
    rss_growth = 100.0 * (rss[-1][1] - warm[0]) / warm[0]

    def delta(key):
        return int(diag.get(key, 0)) - int(base_diag.get(key, 0))

    counters = {k: delta(k) for k in ("frames received", "frames processed", "frames dropped (stale)",
                                      "frames with bad input", "frames skipped (no subscribers)", "frames in flight")}
    stamps = [s for s, _ in arrivals]
    report = {
        "model": args.model or "shipped", "backend": diag.get("backend"), "precision": diag.get("precision"),
        "auto decision": diag.get("auto decision"), "image": f"{args.width}x{args.height} rgb8",
        "service_time_ms": service_ms, "input_rate_hz": sent / elapsed, "frames_sent": sent,
        "output_rate_hz": len(arrivals) / elapsed, "frames_published": len(arrivals),
        "latency_ms": percentiles(latencies), "latency_ms_by_third": [percentiles(t) for t in thirds],
        "rss_mb": {"start": rss[0][1], "after_10s": warm[0], "end": rss[-1][1], "max": max(m for _, m in rss),
                   "growth_pct_after_10s": rss_growth},
        "diagnostics": counters, "published_in_order": stamps == sorted(stamps) and len(set(stamps)) == len(stamps),
        "node_exit": {"code": code, "seconds": stop_s}, "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
    }
    lat_last, lat_first = report["latency_ms_by_third"][2], report["latency_ms_by_third"][0]
    checks = {
        "latency bounded (last-third p99 <= 3 x service time)": lat_last.get("p99", 1e9) <= 3 * service_ms,
        "latency does not grow (last p95 <= first p95 x 1.25 + 10 ms)":
            lat_last.get("p95", 1e9) <= lat_first.get("p95", 0) * 1.25 + 10.0,
        "memory flat (RSS growth after 10 s < 5 %)": rss_growth < 5.0,
        "dropped frames counted in diagnostics": counters["frames dropped (stale)"] > 0 and
            counters["frames received"] == sum(v for k, v in counters.items() if k != "frames received"),
        "published stamps in order, none twice": report["published_in_order"],
        "clean exit on SIGINT": code == 0 and "Traceback" not in node.text(),
    }
    return finish(report, checks, args.out)


if __name__ == "__main__":
    sys.exit(main())
