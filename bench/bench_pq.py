"""PQ evaluation speed: panoptic_ros.evaluation vs panopticapi vs hotcoco, on the same files in one run.

Writes N synthetic (ground truth, prediction) frames in COCO-panoptic layout (PNG + JSON; with crowd,
void, wrong classes, dropped / spurious segments) to a temporary folder, once with OpenCV's PNG encoder
(Sub rows, as panoptic_ros writes) and once with Pillow's (Up / Paeth rows, as panopticapi's converters
write). Each evaluator then does the whole job from those four inputs (gt JSON, gt folder, pred JSON,
pred folder): parse both JSONs, read and decode every PNG, match segments, average. The runs of the
evaluators alternate, ``--repeat`` times, and the median wall time is shown; results must agree to 1e-9.
Before them each evaluator runs once untimed (its imports and caches: for panoptic_ros, importing numba and
loading its compiled PNG kernels from numba's cache, or compiling them, ~9 s, on a fresh install); that
run's time is printed apart.

Threads: panoptic_ros decodes in ``os.cpu_count()`` forked worker processes (with one worker: one thread),
hotcoco in rayon's pool (one thread per available core unless RAYON_NUM_THREADS says otherwise),
panopticapi in a process pool of ``cpu_count()`` processes (its pool adds 3 handler threads); the table
shows each one's set-up and, in brackets, the most threads seen in this process while it ran beyond those
there before (a pool that outlives its run counts once). panoptic_ros with one worker is shown too; for one
thread each, run the bench with RAYON_NUM_THREADS=1 (rayon's pool size is fixed once per process; hotcoco
must run in this process, as in a fresh process it measured twice as slow here, whatever its thread count).
"CPU s" is this process's CPU time (not that of worker processes: "-" for panopticapi and panoptic_ros's
pool): on a busy machine it says more than the wall time.

    .venv/bin/python bench/bench_pq.py                    # 500 frames of 256 x 512, both encoders
    RAYON_NUM_THREADS=1 .venv/bin/python bench/bench_pq.py --skip-panopticapi   # hotcoco on one thread
    .venv/bin/python bench/bench_pq.py --frames 100 --writer opencv --skip-panopticapi
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from panoptic_ros.evaluation.files import evaluate_folders  # noqa: E402
from panoptic_ros.evaluation.synthetic import make_pair, write_pairs  # noqa: E402
from panoptic_ros.taxonomy import Taxonomy  # noqa: E402


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


_EXTRA_THREADS: dict[str, int] = {}


def _rayon_threads() -> str:
    """hotcoco's pool size: RAYON_NUM_THREADS, else one thread per available core."""
    return os.environ.get("RAYON_NUM_THREADS", str(len(os.sched_getaffinity(0))))


class Timed:
    """One evaluator: its wall and CPU times (this process only) per run and the most threads it had."""

    def __init__(self, name: str, fn, threads_note: str = ""):
        self.name, self.fn, self.threads_note = name, fn, threads_note
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.extra_threads = 0
        self.first_s = None  # the untimed first run's wall time (imports, caches)
        self.result = None

    def run(self) -> None:
        """One timed run, with nothing else running in this process."""
        start, cpu = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(io.StringIO()):  # the reference tools print progress
            self.result = self.fn()
        self.wall.append(time.perf_counter() - start)
        self.cpu.append(time.process_time() - cpu)

    def count_threads(self) -> None:
        """One untimed run while a thread samples this process's thread count (the sampler would take the
        GIL from an evaluator that holds it, so timed runs go without it)."""
        peak, done = [0], threading.Event()

        def watch():
            while not done.wait(0.002):
                peak[0] = max(peak[0], _threads())

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        baseline = _threads()  # with the watcher
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            self.fn()
        self.first_s = time.perf_counter() - start
        done.set()
        watcher.join()
        # A pool that outlives its run (rayon's) is in later baselines: keep the most seen in this process.
        _EXTRA_THREADS[self.name] = max(_EXTRA_THREADS.get(self.name, 0), peak[0] - baseline)
        self.extra_threads = _EXTRA_THREADS[self.name]


def max_difference(ours: dict, ref: dict) -> float:
    diff = 0.0
    for group in ("All", "Things", "Stuff"):
        for key in ("pq", "sq", "rq", "n"):
            diff = max(diff, abs(float(ours[group][key]) - float(ref[group][key])))
    return diff


def bench_writer(writer: str, args, taxonomy: Taxonomy) -> list[Timed]:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        start = time.perf_counter()
        pairs = (make_pair(rng, args.height, args.width, taxonomy) for _ in range(args.frames))
        paths = write_pairs(tmp, pairs, taxonomy.to_coco_categories(), writer=writer)
        png_bytes = sum(f.stat().st_size for f in Path(tmp).rglob("*.png"))
        print(f"\n[{writer}] wrote {args.frames} frames of {args.height}x{args.width} "
              f"({png_bytes / 2 / args.frames / 1024:.1f} KiB per PNG) in {time.perf_counter() - start:.1f} s")
        gt_json, gt_dir, pred_json, pred_dir = (str(paths[k]) for k in ("gt_json", "gt_dir", "pred_json", "pred_dir"))

        from hotcoco.panoptic import pq_compute as hotcoco_pq

        cpus = os.cpu_count() or 1
        tools = [Timed("panoptic_ros", lambda: evaluate_folders(gt_json, gt_dir, pred_json, pred_dir, progress=False),
                       f"{cpus} processes"),
                 Timed("panoptic_ros, 1 worker",
                       lambda: evaluate_folders(gt_json, gt_dir, pred_json, pred_dir, workers=1, progress=False), "1"),
                 Timed("hotcoco", lambda: hotcoco_pq(gt_json, pred_json, gt_dir, pred_dir),
                       f"rayon, {_rayon_threads()}")]
        if not args.skip_panopticapi:
            from panopticapi.evaluation import pq_compute as panopticapi_pq

            tools.append(Timed("panopticapi", lambda: panopticapi_pq(gt_json, pred_json, gt_dir, pred_dir),
                               f"{cpus} processes"))
        for tool in tools:  # untimed, first: the threads a tool starts (a pool that outlives it counts here)
            tool.count_threads()
        for _ in range(args.repeat):  # alternate, so that a busy spell of the machine hits every tool
            for tool in tools:
                tool.run()
    return tools


def report(writer: str, tools: list[Timed], frames: int) -> dict:
    ours = tools[0]
    base = statistics.median(ours.wall)
    print(f"{'evaluator':24s} {'threads (+started)':>18s} {'median s':>9s} {'ms/frame':>9s} {'CPU s':>7s} "
          f"{'x ours':>7s} {'All PQ':>8s} {'max |diff|':>11s}")
    out = {}
    for tool in tools:
        wall = statistics.median(tool.wall)
        # panopticapi and panoptic_ros's pool work in child processes: their CPU time is not this process's.
        cpu = "-" if tool.name in ("panopticapi", "panoptic_ros") else f"{statistics.median(tool.cpu):.3f}"
        threads = f"{tool.threads_note} (+{tool.extra_threads})"
        diff = max_difference(ours.result, tool.result)
        print(f"{tool.name:24s} {threads:>18s} {wall:9.3f} {1000 * wall / frames:9.2f} {cpu:>7s} "
              f"{wall / base:7.2f} {100 * tool.result['All']['pq']:8.3f} {diff:11.2e}")
        out[tool.name] = {"median_s": wall, "runs_s": tool.wall, "ratio_to_ours": wall / base, "max_diff": diff,
                          "threads_started": tool.extra_threads, "first_run_s": tool.first_s}
    for tool in tools[2:]:
        ratio = statistics.median(tool.wall) / base
        print(f"[{writer}] panoptic_ros is {ratio:.2f}x {'faster' if ratio > 1 else 'SLOWER'} than {tool.name} "
              f"(median of {len(tool.wall)})")
    print(f"[{writer}] untimed first runs (not in the medians: imports and caches; panoptic_ros's first one in "
          f"a process imports numba and loads its compiled PNG kernels): "
          + ", ".join(f"{tool.name} {tool.first_s:.3f} s" for tool in tools))
    single = statistics.median(tools[2].wall) / statistics.median(tools[1].wall)
    out["hotcoco"]["ratio_to_ours_1_worker"] = single
    print(f"[{writer}] panoptic_ros with 1 worker is {single:.2f}x {'faster' if single > 1 else 'SLOWER'} than "
          f"hotcoco with {_rayon_threads()} thread(s) (RAYON_NUM_THREADS=1 for one thread each)")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3, help="runs per evaluator; the median is reported")
    parser.add_argument("--skip-panopticapi", action="store_true", help="panopticapi takes ~17 s per run on 500 frames")
    parser.add_argument("--writer", choices=("opencv", "pillow", "both"), default="both",
                        help="PNG encoder of the data set (OpenCV: Sub rows; Pillow: Up / Paeth rows)")
    parser.add_argument("--workdir", default=None, help="where to write the frames (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.frames < 1:
        parser.error("--repeat and --frames must be >= 1")

    print(f"{os.cpu_count()} CPUs visible; load average {os.getloadavg()[0]:.1f} at start")
    taxonomy = Taxonomy.cityscapes()
    figures, checks, notes = {}, {}, []
    for writer in (("opencv", "pillow") if args.writer == "both" else (args.writer,)):
        tools = bench_writer(writer, args, taxonomy)
        figures[writer] = report(writer, tools, args.frames)
        checks[f"{writer}: every evaluator agrees with panoptic_ros to 1e-9"] = all(
            f["max_diff"] <= 1e-9 for f in figures[writer].values())
        for name in ("hotcoco", "panopticapi"):  # the goal: faster than each with its default threads
            if name in figures[writer]:
                checks[f"{writer}: faster than {name}"] = figures[writer][name]["ratio_to_ours"] > 1
        notes.append(f"{writer}: panoptic_ros with 1 worker vs hotcoco with {_rayon_threads()} thread(s): "
                     f"{figures[writer]['hotcoco']['ratio_to_ours_1_worker']:.2f}x (shown, not a check)")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    for note in notes:
        print(f"INFO  {note}")
    if args.json:
        args.json.write_text(json.dumps({"figures": figures, "checks": checks}, indent=1))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
