"""Speed of the synthetic world on ONE core: frames/s and seconds per 1000 frames (goal: < 120 s).

Measures independent frames (``frame``) and a temporally coherent drive (``drive``) side by side, both
including the bird's-eye truth, and prints each against the issue's goal of 1,000 frames in 2 minutes.

    .venv/bin/python bench/bench_world.py --frames 200
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy / cv2 start their thread pools

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing
from panoptic_ros.data.world import SyntheticWorld, WorldConfig  # noqa: E402

GOAL_S_PER_1000 = 120.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200, help="frames timed per mode")
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    world = SyntheticWorld(WorldConfig(width=args.width, height=args.height), seed=args.seed)
    world.frame(0)  # warm-up (imports, caches)
    print(f"synthetic world {args.width}x{args.height}, {args.frames} frames per mode, one core "
          f"(OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, cv2 threads {cv2.getNumThreads()})")
    results = {}
    for mode in ("frame", "drive"):
        t0 = time.perf_counter()
        if mode == "frame":
            for i in range(args.frames):
                world.frame(i)
        else:
            for _ in world.drive(args.frames, fps=10.0):
                pass
        dt = time.perf_counter() - t0
        results[mode] = dt / args.frames * 1000
        print(f"{mode:6s}: {args.frames / dt:6.1f} frames/s  {results[mode]:6.1f} s per 1000 frames  "
              f"goal/measured = {GOAL_S_PER_1000 / results[mode]:.2f}x ({'meets' if results[mode] < GOAL_S_PER_1000 else 'MISSES'} "
              f"the < {GOAL_S_PER_1000:.0f} s goal)")
    print(f"drive / frame time ratio: {results['drive'] / results['frame']:.2f}")


if __name__ == "__main__":
    main()
