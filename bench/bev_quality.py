"""Bird's-eye grid quality per distance band against the synthetic world's exact truth.

Projects each frame's panoptic labels with :class:`panoptic_ros.bev.GroundProjector` (what the node's pipeline
and ``panoptic-eval bag`` run) and prints free-space IoU and occupied recall / precision per band of horizontal
range from the camera: for the ground-truth labels (the projection's own error), and with ``--model CKPT`` also
for the model's predicted labels. Footprints are scored twice: the contact band only (``footprint_depth`` 0.3 m
for every class) and the node's per-class defaults (:data:`~panoptic_ros.bev.DEFAULT_FOOTPRINT_DEPTHS`, changed
with ``--depth class=metres``): the truth counts a whole object footprint as visible wherever the camera sees
the object above it, so only the prior can recover the unseen depth of objects.

    .venv/bin/python bench/bev_quality.py --frames 20
    .venv/bin/python bench/bev_quality.py --frames 20 --bands 0,20 --depth building=0.5
    .venv/bin/python bench/bev_quality.py --frames 20 --model models/panoptic.pt
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402

from tqdm import tqdm  # noqa: E402

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this tree's code, not an installed copy

from panoptic_ros.bev import DEFAULT_FOOTPRINT_DEPTHS, BevMetrics, ProjectorCache  # noqa: E402


def parse_depth(text: str):
    name, _, value = text.rpartition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"--depth needs class=metres, got {text!r}")
    return name, float(value)
from panoptic_ros.data.world import SyntheticWorld, WorldConfig  # noqa: E402


def parse_bands(text: str):
    edges = [float(v) for v in text.split(",")]
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise argparse.ArgumentTypeError(f"--bands needs increasing edges like 0,10,20,40, got {text!r}")
    return list(zip(edges[:-1], edges[1:]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20, help="independent world frames")
    ap.add_argument("--seed", type=int, default=1000, help="world seed (default: not a training seed)")
    ap.add_argument("--model", help="checkpoint for panoptic_ros.predictor.Predictor (adds predicted labels)")
    ap.add_argument("--backend", default="auto", help="predictor backend when --model is given")
    ap.add_argument("--bands", type=parse_bands, default=parse_bands("0,10,20,40"), help="range band edges, m")
    ap.add_argument("--max-range", type=float, default=None, help="projector max_range (m)")
    ap.add_argument("--depth", type=parse_depth, action="append", default=[],
                    help="override one class's default footprint depth, e.g. building=0.5 (repeatable)")
    args = ap.parse_args(argv)
    if args.frames < 1:
        ap.error("--frames must be >= 1")

    world = SyntheticWorld(WorldConfig(), seed=args.seed)
    grid = world.config.grid
    predictor = None
    if args.model:
        from panoptic_ros.predictor import Predictor

        predictor = Predictor.from_checkpoint(args.model, backend=args.backend,
                                              expected_taxonomy=world.taxonomy)
    defaults = dict(DEFAULT_FOOTPRINT_DEPTHS, **dict(args.depth))
    settings = {"contact band (0.3 m)": 0.3, "per-class depths" + (f" ({args.depth})" if args.depth else ""): defaults}
    caches = {name: ProjectorCache(grid, world.taxonomy, max_range=args.max_range, footprint_depth=d)
              for name, d in settings.items()}
    sources = ["ground truth"] + (["model"] if predictor else [])
    metrics = {(src, name): BevMetrics(args.bands) for src in sources for name in settings}
    for i in tqdm(range(args.frames), desc="frames", leave=False):
        frame = world.frame(i)
        labels = {"ground truth": frame.panoptic}
        if predictor is not None:
            labels["model"] = predictor.predict(frame.image).panoptic
        for src, ids in labels.items():
            for name, cache in caches.items():
                metrics[(src, name)].update(cache.project(frame.camera, ids), frame.bev)

    print(f"{args.frames} world frames (seed {args.seed}), grid {grid.height}x{grid.width} @ {grid.resolution} m; "
          f"distance = horizontal range from the camera; free IoU over all cells of a band, occupied "
          f"recall / precision over cells the truth sees")
    for (src, name), m in metrics.items():
        print(f"\nlabels: {src}, footprints: {name}")
        print(m.table())


if __name__ == "__main__":
    main()
