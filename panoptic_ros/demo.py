"""The newcomer's first run (``make demo``): the shipped model on frames of the synthetic world.

Writes OUT/sheet.png (input | ground truth | prediction for each frame), OUT/frame_XXX_overlay.png and
OUT/summary.json (PQ of these frames, latency per stage), and prints where they are.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from .panoptic import colorize
from .resources import default_model_path
from .visualize import contact_sheet, write_rgb

HELD_OUT_SEED = 2  # the model card's held-out seed; training uses seed 0 and validation seed 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m panoptic_ros.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    parser.add_argument("--model", type=Path, default=None, help="checkpoint (default: the shipped model)")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="world seed of the frames")
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args(argv)

    from .data.world import SyntheticWorld, WorldConfig

    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.model or default_model_path()
    if not model_path.exists():
        raise SystemExit(f"no model at {model_path}: train one with `make model` or pass --model")

    from .evaluation.pq import PQAccumulator
    from .predictor import Predictor

    predictor = Predictor.from_checkpoint(model_path, backend=args.backend)
    h, w = predictor.input_size
    world = SyntheticWorld(WorldConfig(width=w, height=h), seed=args.seed)
    taxonomy = predictor.taxonomy
    pq = PQAccumulator(taxonomy)
    rows, timings = [], []
    print(f"model {model_path} on backend {predictor.backend_name}, {args.frames} frames of world seed {args.seed}")
    for i in range(args.frames):
        frame = world.frame(i)
        result = predictor.predict(frame.image)
        pq.add(result.panoptic, result.segments, frame.panoptic, frame.segments)
        timings.append(result.timings_ms)
        overlay = colorize(result.panoptic, taxonomy, frame.image)
        write_rgb(args.out / f"frame_{i:03d}_overlay.png", overlay)
        rows.append([frame.image, colorize(frame.panoptic, taxonomy, frame.image), overlay])
    write_rgb(args.out / "sheet.png", contact_sheet(rows, ["input", "ground truth", "prediction"]))
    summary = pq.result()
    stages = {k: float(np.median([t[k] for t in timings])) for k in timings[0]}
    (args.out / "summary.json").write_text(json.dumps(
        {"model": str(model_path), "backend": predictor.backend_name, "frames": args.frames, "seed": args.seed,
         "pq": {k: summary[k] for k in ("All", "Things", "Stuff")}, "median_ms": stages}, indent=2))
    a = summary["All"]
    print(f"PQ {100 * a['pq']:.1f}  SQ {100 * a['sq']:.1f}  RQ {100 * a['rq']:.1f} on these {args.frames} frames")
    print("median ms per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
    print(f"wrote {args.out / 'sheet.png'} and {args.frames} overlays in {args.out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
