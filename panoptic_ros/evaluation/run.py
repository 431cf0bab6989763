"""Run a Predictor over ground-truth frames (a data-set folder or a rosbag2) and write the evaluation report.

    panoptic-eval model CKPT DATA_DIR [--format coco|cityscapes] --out DIR
    panoptic-eval bag BAG --model CKPT --out DIR
"""
from __future__ import annotations

import heapq
import itertools
import time
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm import tqdm

from ..data.frame import Sample
from .pq import PQAccumulator, format_table
from .report import write_report
from .semantic import SemanticAccumulator


def evaluate_predictor(predictor, samples: Iterable[Sample], out: Path | None, title: str, worst: int = 6,
                       total: int | None = None, extra: dict | None = None) -> dict:
    """PQ, mIoU and latency of ``predictor`` on ``samples``; writes the report to ``out`` when given.

    Only the ``worst`` lowest-PQ frames are kept in memory (a heap), so bags of any length fit.
    """
    taxonomy = predictor.taxonomy
    pq = PQAccumulator(taxonomy)
    semantic = SemanticAccumulator(taxonomy)
    latencies, stage_times, worst_heap = [], [], []
    for k, sample in enumerate(tqdm(samples, total=total, desc="evaluate", unit="frame")):
        t0 = time.perf_counter()
        result = predictor.predict(sample.image)
        latencies.append(1000.0 * (time.perf_counter() - t0))
        stage_times.append(result.timings_ms)
        stats = pq.add(result.panoptic, result.segments, sample.panoptic, sample.segments,
                       name=sample.name or f"frame_{k:06d}")
        semantic.add(result.semantic, sample.semantic(taxonomy))
        if worst and np.isfinite(stats.pq):
            # heap of the worst frames: keep the `worst` lowest PQ (max-heap by -pq); k breaks ties
            item = (-stats.pq, k, (stats.name, sample.image, sample.panoptic, result.panoptic, stats.pq))
            (heapq.heappush if len(worst_heap) < worst else heapq.heappushpop)(worst_heap, item)
    if not latencies:
        raise ValueError("no frames to evaluate")
    result = pq.result()
    result["semantic"] = semantic.result()
    print(format_table(result, per_class=True))
    print(f"mIoU {100 * result['semantic']['miou']:.1f}; latency median {np.median(latencies):.1f} ms, "
          f"p95 {np.percentile(latencies, 95):.1f} ms over {len(latencies)} frames ({predictor.backend_name})")
    if out is not None:
        stages = {s: float(np.median([t[s] for t in stage_times])) for s in stage_times[0]}
        facts = {"backend": predictor.backend_name, "model": predictor.metadata.get("checkpoint_path", ""),
                 "median_stage_ms": stages, "miou": result["semantic"]["miou"], **(extra or {})}
        worst_frames = [item[2] for item in sorted(worst_heap, key=lambda i: (i[2][4], i[1]))]
        paths = write_report(out, result, pq.frames, latencies_ms=latencies, worst_frames=worst_frames,
                             title=title, taxonomy=taxonomy, extra=facts)
        print(f"report: {paths['md']}")
    return result


def _predictor(args):
    from ..predictor import Predictor

    return Predictor.from_checkpoint(args.model, backend=args.backend, score_threshold=args.score_threshold,
                                     stuff_area_threshold=args.stuff_area_threshold, policy=args.policy,
                                     unknown=args.unknown)


def run_model(args) -> int:
    """``panoptic-eval model``: the predictor over a COCO-panoptic or Cityscapes-panoptic folder."""
    if args.format == "coco":
        from ..data.coco import CocoPanopticReader

        reader = CocoPanopticReader(Path(args.data) / "annotations.json")
    else:
        from ..data.cityscapes import CityscapesPanopticReader

        reader = CityscapesPanopticReader(args.data, args.split)
    predictor = _predictor(args)
    if reader.taxonomy != predictor.taxonomy:
        raise ValueError(f"the data set's categories ({reader.taxonomy.names()}) are not the model's "
                         f"({predictor.taxonomy.names()})")
    n = len(reader) if args.frames is None else min(args.frames, len(reader))
    samples = (reader[i] for i in range(n))
    evaluate_predictor(predictor, samples, args.out, f"{Path(args.model).name} on {args.data}", args.worst,
                       total=n, extra={"data": str(args.data), "frames": n, **_settings(predictor, args)})
    return 0


def run_bag(args) -> int:
    """``panoptic-eval bag``: the predictor over every frame of a rosbag2 with ground-truth topics."""
    from ..data.bag import read_bag

    predictor = _predictor(args)

    def samples():
        for k, frame in enumerate(read_bag(args.bag, image_topic=args.image_topic)):
            if frame.panoptic is None or frame.segments is None:
                raise ValueError(f"frame {k} (stamp {frame.stamp_ns} ns) of {args.bag} has no panoptic ground truth")
            yield Sample(frame.image, frame.panoptic, frame.segments, f"{k:06d}_{frame.stamp_ns}")

    frames = samples() if args.frames is None else itertools.islice(samples(), args.frames)
    evaluate_predictor(predictor, frames, args.out, f"{Path(args.model).name} on bag {args.bag}", args.worst,
                       extra={"bag": str(args.bag), **_settings(predictor, args)})
    return 0


def _settings(predictor, args) -> dict:
    return {"score_threshold": predictor.score_threshold, "stuff_area_threshold": predictor.stuff_area_threshold,
            "policy": args.policy, "unknown": args.unknown}


def add_predictor_args(parser) -> None:
    parser.add_argument("--backend", default="auto", help="auto | cpu | cuda | onnxruntime | tensorrt")
    parser.add_argument("--score-threshold", type=float, default=None,
                        help="detection score threshold (default: the model's, else the paper's 0.4)")
    parser.add_argument("--stuff-area-threshold", type=int, default=None,
                        help="stuff segments below this many px (network input scale) become void "
                             "(default: the model's, else the paper's 4096 px scaled)")
    parser.add_argument("--policy", default="closest_center",
                        choices=("closest_center", "highest_confidence", "smallest_first"))
    parser.add_argument("--unknown", action=__import__("argparse").BooleanOptionalAction, default=True,
                        help="predict unknown for thing pixels no detection explains")
    parser.add_argument("--frames", type=int, default=None, help="evaluate only the first N frames")
    parser.add_argument("--worst", type=int, default=6, help="how many lowest-PQ frames to draw")
