"""PQ evaluation speed: panoptic_ros.evaluation vs panopticapi vs hotcoco, on the same files in one run.

Writes N synthetic (ground truth, prediction) frames in COCO-panoptic layout (PNG + JSON; with crowd,
void, wrong classes, dropped / spurious segments) to a temporary folder, then times each evaluator on
those same four inputs (gt JSON, gt folder, pred JSON, pred folder), checks they agree, and prints the
times and ratios side by side.

    .venv/bin/python bench/bench_pq.py                 # 500 frames of 256 x 512
    .venv/bin/python bench/bench_pq.py --frames 100 --skip-panopticapi
    .venv/bin/python bench/bench_pq.py --writer pillow # PNGs as Pillow writes them (Paeth rows)

panoptic_ros reads PNGs written with only Sub-filtered rows (OpenCV's encoder, used by panoptic_ros'
own writers) without decoding every pixel; other PNGs (Pillow's, with Paeth rows) go through OpenCV's
decoder, which is several times slower (the second command shows how much). The machine is shared:
each fast evaluator runs --repeat times and the best time is shown.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from panoptic_ros.evaluation.files import evaluate_folders  # noqa: E402
from panoptic_ros.evaluation.synthetic import make_pair, write_pairs  # noqa: E402
from panoptic_ros.taxonomy import Taxonomy  # noqa: E402


def timed(fn, repeat: int):
    """Best wall time of ``repeat`` runs (the machine is shared; the minimum is the least disturbed)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the reference tools print progress
            out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def max_difference(ours: dict, ref: dict) -> float:
    diff = 0.0
    for group in ("All", "Things", "Stuff"):
        for key in ("pq", "sq", "rq", "n"):
            diff = max(diff, abs(float(ours[group][key]) - float(ref[group][key])))
    return diff


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3, help="runs per fast evaluator; the best is reported")
    parser.add_argument("--skip-panopticapi", action="store_true", help="panopticapi takes ~17 s on 500 frames")
    parser.add_argument("--workdir", default=None, help="where to write the frames (default: a temp folder)")
    parser.add_argument("--writer", choices=("opencv", "pillow"), default="opencv",
                        help="PNG encoder of the data set: OpenCV writes Sub rows (panoptic_ros' fast path), "
                             "Pillow mixes Paeth rows (decoded by OpenCV)")
    args = parser.parse_args(argv)

    taxonomy = Taxonomy.cityscapes()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        start = time.perf_counter()
        pairs = (make_pair(rng, args.height, args.width, taxonomy) for _ in range(args.frames))
        paths = write_pairs(tmp, pairs, taxonomy.to_coco_categories(), writer=args.writer)
        print(f"wrote {args.frames} frames of {args.height}x{args.width} with {args.writer} "
              f"in {time.perf_counter() - start:.1f} s "
              f"({os.cpu_count()} CPUs visible)")
        inputs = [str(paths[k]) for k in ("gt_json", "gt_dir", "pred_json", "pred_dir")]
        gt_json, gt_dir, pred_json, pred_dir = inputs

        rows = []
        t, ours = timed(lambda: evaluate_folders(*inputs, progress=False), args.repeat)
        rows.append(("panoptic_ros (all threads)", t, ours))
        t, ours1 = timed(lambda: evaluate_folders(*inputs, workers=1, progress=False), args.repeat)
        rows.append(("panoptic_ros (1 thread)", t, ours1))

        from hotcoco.panoptic import pq_compute as hotcoco_pq
        t, ref = timed(lambda: hotcoco_pq(gt_json, pred_json, gt_dir, pred_dir), args.repeat)
        rows.append(("hotcoco", t, ref))
        if not args.skip_panopticapi:
            from panopticapi.evaluation import pq_compute as panopticapi_pq
            t, ref = timed(lambda: panopticapi_pq(gt_json, pred_json, gt_dir, pred_dir), 1)
            rows.append(("panopticapi", t, ref))

    base = rows[0][1]
    print(f"\n{'evaluator':28s} {'seconds':>8s} {'ms/frame':>9s} {'x ours':>8s} {'All PQ':>8s} {'max |diff|':>11s}")
    for name, seconds, res in rows:
        print(f"{name:28s} {seconds:8.3f} {1000 * seconds / args.frames:9.2f} {seconds / base:8.2f} "
              f"{100 * res['All']['pq']:8.3f} {max_difference(ours, res):11.2e}")
    for name, seconds, _ in rows[1:]:
        if not name.startswith("panoptic_ros"):
            print(f"panoptic_ros is {seconds / base:.2f}x {'faster' if seconds > base else 'SLOWER'} than {name}")


if __name__ == "__main__":
    main()
