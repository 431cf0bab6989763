"""``panoptic-world``: render the synthetic world into data sets, drive bags and contact sheets.

Examples::

    panoptic-world generate --out data/train --frames 2000 --seed 1 --format coco
    panoptic-world generate --out data/cityscapes --frames 200 --seed 2 --format cityscapes --split val
    panoptic-world generate --out data/coco --frames 200 --format coco --split val2017 --classes coco
    panoptic-world bag --out drive.mcap.d --frames 100 --fps 10 --seed 3 --storage mcap
    panoptic-world sheet --out sheet.png --frames 6 --seed 0
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..panoptic import colorize
from ..visualize import contact_sheet, write_rgb


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _range(text: str) -> tuple[float, float]:
    """``A`` (a fixed value) or ``A,B`` (sampled uniformly per scene / drive)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or LO,HI, got {text!r}") from None
    if len(values) not in (1, 2) or values[0] > values[-1]:
        raise argparse.ArgumentTypeError(f"expected a number or an increasing LO,HI, got {text!r}")
    return values[0], values[-1]


MOUNT_OPTIONS = (("camera_height", "--camera-height", "camera height above the ground, metres"),
                 ("pitch_deg", "--pitch", "camera pitch, degrees, positive looks down"),
                 ("roll_deg", "--roll", "camera roll, degrees"),
                 ("yaw_deg", "--yaw", "camera yaw, degrees, positive looks left"),
                 ("camera_x", "--camera-x", "camera position ahead of base_link, metres"))


def _world(args):
    from .world import SyntheticWorld, WorldConfig

    mount = {field: getattr(args, field) for field, _, _ in MOUNT_OPTIONS if getattr(args, field) is not None}
    extra = {field: getattr(args, field) for field in ("hfov_deg", "crowd_probability", "conditions")
             if getattr(args, field) is not None}
    return SyntheticWorld(WorldConfig(width=args.width, height=args.height, **mount, **extra), args.seed)


def cmd_generate(args) -> int:
    world = _world(args)
    samples = (world.frame(i) for i in range(args.start, args.start + args.frames))
    taxonomy = world.taxonomy
    if args.classes == "coco":
        from ..taxonomy import Taxonomy
        from .relabel import relabel

        taxonomy = Taxonomy.coco_panoptic()
        samples = relabel(samples, world.taxonomy, taxonomy)
    if args.format == "coco" and args.split:
        from .coco import write_coco_root

        path = write_coco_root(args.out, samples, taxonomy, split=args.split, progress=not args.quiet,
                               total=args.frames, seed=args.seed)
    elif args.format == "coco":
        from .coco import write_coco_panoptic

        path = write_coco_panoptic(args.out, samples, taxonomy, progress=not args.quiet, total=args.frames)
    else:
        from .cityscapes import write_cityscapes_panoptic

        path = write_cityscapes_panoptic(args.out, samples, taxonomy, split=args.split or "val",
                                         progress=not args.quiet, total=args.frames)
    print(f"wrote {args.frames} frames ({args.format}) -> {path}")
    return 0


def cmd_bag(args) -> int:
    from .bag import write_drive_bag

    world = _world(args)
    frames = world.drive(args.frames, args.fps, start_index=args.start)
    path = write_drive_bag(args.out, frames, args.fps, storage=args.storage, taxonomy=world.taxonomy,
                           progress=not args.quiet, total=args.frames)
    print(f"wrote {args.frames} frames at {args.fps} fps ({args.storage}) -> {path}")
    return 0


def frame_rows(frames, taxonomy) -> list[list[np.ndarray]]:
    """One row per frame: image | semantic colours | panoptic colours."""
    return [[f.image, taxonomy.colorize(f.semantic(taxonomy)), colorize(f.panoptic, taxonomy)] for f in frames]


def cmd_sheet(args) -> int:
    world = _world(args)
    frames = (world.frame(i) for i in range(args.start, args.start + args.frames))
    sheet = contact_sheet(frame_rows(frames, world.taxonomy), ["image", "semantic", "panoptic"],
                          tile_width=world.config.width)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_rgb(out, sheet)
    except OSError as exc:
        raise SystemExit(f"{exc} (is the extension an image format?)")
    print(f"wrote {sheet.shape[1]}x{sheet.shape[0]} contact sheet -> {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="panoptic-world", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    from .conditions import MIXED, PRESETS
    from .world import WorldConfig

    def common(p, frames_default: int):
        p.add_argument("--frames", type=_positive_int, default=frames_default, help="number of frames")
        p.add_argument("--seed", type=int, default=0, help="world seed (same seed = same frames)")
        p.add_argument("--start", type=int, default=0, help="index of the first frame (disjoint sets: vary it)")
        p.add_argument("--width", type=_positive_int, default=512, help="image width in pixels")
        p.add_argument("--height", type=_positive_int, default=256, help="image height in pixels")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        defaults = WorldConfig()
        for field, flag, what in MOUNT_OPTIONS:
            lo, hi = getattr(defaults, field)
            p.add_argument(flag, dest=field, type=_range, metavar="A|LO,HI",
                           help=f"{what}: one value or a range sampled per scene (bag: per drive, plus the "
                                "world's per-frame jitter of 5 mm / 0.15 deg in height / pitch); "
                                f"default {lo:g},{hi:g}")
        p.add_argument("--hfov", dest="hfov_deg", type=float, default=None,
                       help=f"horizontal field of view, degrees; default {defaults.hfov_deg:g}")
        p.add_argument("--crowd-probability", type=float, default=None,
                       help="chance a scene is crowded (parked rows, groups of people): traffic and pedestrian "
                            f"density; default {defaults.crowd_probability:g}")
        p.add_argument("--condition", dest="conditions", default=None, metavar="NAME",
                       help="imaging condition: " + ", ".join(PRESETS) + f", or {MIXED} (a random condition per "
                            "frame, 35%% clear, for training data); see panoptic_ros/data/conditions.py; "
                            "default clear")

    p = sub.add_parser("generate", help="write a COCO- or Cityscapes-panoptic data set of random scenes",
                       description="Render independent random scenes into a panoptic data set.")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--format", choices=["coco", "cityscapes"], default="coco",
                   help="coco: without --split a panoptic-world folder (annotations.json, panoptic/, images/), with "
                        "--split a COCO root as distributed (annotations/panoptic_SPLIT.json, "
                        "annotations/panoptic_SPLIT/, SPLIT/*.jpg); cityscapes: a Cityscapes root (gtFine/, "
                        "leftImg8bit/) as cityscapesscripts' csCreatePanopticImgs leaves it")
    p.add_argument("--split", default=None, help="split name (COCO: e.g. val2017; Cityscapes: default val)")
    p.add_argument("--classes", choices=["cityscapes", "coco"], default="cityscapes",
                   help="class list: the world's Cityscapes classes, or relabelled to COCO-panoptic's 133 "
                        "(see panoptic_ros/data/relabel.py)")
    common(p, 100)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("bag", help="record a drive with ground truth as a rosbag2",
                       description="Drive along one street and record camera, camera info, tf and ground truth.")
    p.add_argument("--out", type=Path, required=True, help="bag folder to create (must not exist)")
    p.add_argument("--fps", type=float, default=10.0, help="camera frame rate")
    p.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap", help="rosbag2 storage plugin")
    common(p, 100)
    p.set_defaults(func=cmd_bag)

    p = sub.add_parser("sheet", help="a PNG contact sheet: image | semantic | panoptic per frame",
                       description="Render frames side by side with their semantic and panoptic colours.")
    p.add_argument("--out", type=Path, required=True, help="output PNG")
    common(p, 6)
    p.set_defaults(func=cmd_sheet)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bag" and args.out.exists():
        print(f"panoptic-world: error: {args.out} exists; rosbag2 writes a new folder", file=sys.stderr)
        return 2
    if args.command == "bag" and not args.fps > 0:
        print(f"panoptic-world: error: --fps must be positive, got {args.fps}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except ValueError as err:  # bad option values surface as ValueError from the world / writers
        print(f"panoptic-world {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
