"""Which truth-occupied cells the node's grid misses, by class: re-renders a drive of ``panoptic-world bag``
(same seed, size and mount options), projects the shipped model's labels (or the ground truth's) with the node's
:class:`~panoptic_ros.bev.GroundProjector` defaults and counts the missed occupied cells within ``--range`` metres,
per thing class of the truth's footprint ("stuff" = obstacle stuff).

    .venv/bin/python bench/grid_misses.py --frames 60 --every 4 --width 640 --height 480 --seed 5 \\
        --camera-height 1.25 --pitch 4 --roll 1 --yaw 2 --camera-x 2.0 [--model models/panoptic_r18_synthetic.pt]
"""
import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this tree's code, not an installed copy

from panoptic_ros.bev import OCCUPIED, ProjectorCache  # noqa: E402
from panoptic_ros.data.world import SyntheticWorld, WorldConfig  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--every", type=int, default=1, help="score every n-th frame of the drive")
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    for name in ("camera-height", "pitch", "roll", "yaw", "camera-x"):
        ap.add_argument(f"--{name}", type=float, default=None)
    ap.add_argument("--model", help="checkpoint (default: the ground-truth labels)")
    ap.add_argument("--range", type=float, default=20.0)
    args = ap.parse_args(argv)
    mount = {k: (v, v) for k, v in (("camera_height", args.camera_height), ("pitch_deg", args.pitch),
                                    ("roll_deg", args.roll), ("yaw_deg", args.yaw), ("camera_x", args.camera_x))
             if v is not None}
    world = SyntheticWorld(WorldConfig(width=args.width, height=args.height, **mount), args.seed)
    predictor = None
    if args.model:
        from panoptic_ros.predictor import Predictor

        predictor = Predictor.from_checkpoint(args.model, backend="cpu")
    cache = ProjectorCache(world.config.grid, world.taxonomy, max_range=40.0)
    missed, total = Counter(), Counter()
    for k, f in enumerate(world.drive(args.frames, args.fps)):
        if k % args.every:
            continue
        ids = predictor.predict(f.image).panoptic if predictor else f.panoptic
        pred = cache.project(f.camera, ids)
        xs, ys = f.bev.grid.cell_centers()
        near = np.hypot(xs - f.camera.pose.x, ys - f.camera.pose.y) < args.range
        truth = f.bev.occupied & f.bev.visible & near
        category = np.where(f.bev.instance > 0, f.bev.instance // 1000, 0)
        for cid in np.unique(category[truth]):
            cells = truth & (category == cid)
            name = world.taxonomy.by_id[int(cid)].name if cid else "stuff"
            total[name] += int(cells.sum())
            missed[name] += int((cells & (pred.occupancy != OCCUPIED)).sum())
    all_missed = sum(missed.values())
    print(f"labels: {'model' if predictor else 'ground truth'}; truth-occupied cells within {args.range:g} m")
    for name in sorted(total, key=lambda n: -missed[n]):
        print(f"{name:>12}: {total[name]:7d} cells, missed {missed[name]:7d} ({missed[name] / total[name]:.2f}), "
              f"{missed[name] / max(all_missed, 1):.2f} of all misses")
    print(f"occupied recall {1 - all_missed / max(sum(total.values()), 1):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
