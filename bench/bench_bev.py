"""Per-frame cost of the bird's-eye projection (lookup already built) next to the network's forward pass.

Input: panoptic ids of synthetic-world frames at 256x512; grid: 400x400 cells (0.1 m, 40 m x 40 m). Both
timed on the same thread count in one run; prints the median per-frame times and their ratio against the goal
of < 1 ms for the projection. CPU only.

    .venv/bin/python bench/bench_bev.py --iters 300
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy / torch / cv2 start their thread pools

import argparse  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this tree's code, not an installed copy

from panoptic_ros.bev import DEFAULT_FOOTPRINT_DEPTHS, GroundProjector  # noqa: E402
from panoptic_ros.data.world import SyntheticWorld, WorldConfig  # noqa: E402
from panoptic_ros.geometry import GridSpec  # noqa: E402

GOAL_MS = 1.0


def network():
    """The shipped architecture when importable, else a torchvision ResNet-18 FPN (say which)."""
    try:
        from panoptic_ros.model.network import PanopticNet

        return PanopticNet(num_classes=19, thing_train_ids=list(range(11, 19)), backbone="resnet18").eval(), \
            "PanopticNet(resnet18)"
    except ImportError as e:
        from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

        return resnet_fpn_backbone(backbone_name="resnet18", weights=None).eval(), \
            f"torchvision resnet_fpn_backbone(resnet18) (PanopticNet not importable: {e})"


def median_ms(fn, iters: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=300, help="projections timed per setting")
    ap.add_argument("--net-iters", type=int, default=5, help="network forwards timed")
    ap.add_argument("--frames", type=int, default=8, help="distinct world frames cycled through")
    ap.add_argument("--threads", type=int, default=1, help="torch / cv2 threads (numpy is single-threaded)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    height, width = 256, 512
    grid = GridSpec(resolution=0.1, x_min=0.0, x_max=40.0, y_min=-20.0, y_max=20.0)
    world = SyntheticWorld(WorldConfig(width=width, height=height, grid=grid), seed=0)
    frames = [world.frame(i) for i in range(args.frames)]
    camera = frames[0].camera  # one camera for all, so the lookup is built once (ids from other mounts are fine)
    print(f"input {height}x{width} ids, grid {grid.height}x{grid.width} cells ({grid.resolution} m), "
          f"{args.threads} thread(s), CPU")

    t0 = time.perf_counter()
    projector = GroundProjector(camera, grid, world.taxonomy)
    print(f"lookup build (once per camera): {(time.perf_counter() - t0) * 1e3:.1f} ms, "
          f"{projector.lookup.cell_index.size} cells in view")
    results = {}
    for name, depth in (("footprint_depth=0.3", 0.3), ("typical depths", DEFAULT_FOOTPRINT_DEPTHS)):
        proj = GroundProjector(camera, grid, world.taxonomy, footprint_depth=depth, lookup=projector.lookup)
        k = iter(range(10 ** 9))
        results[name] = median_ms(lambda: proj.project(frames[next(k) % len(frames)].panoptic), args.iters)

    net, net_name = network()
    x = torch.randn(1, 3, height, width)
    with torch.inference_mode():
        net_ms = median_ms(lambda: net(x), args.net_iters, warmup=1)
    print(f"network forward, {net_name}: {net_ms:.1f} ms")
    for name, ms in results.items():
        print(f"bev projection ({name}): {ms:.3f} ms per frame = {100 * ms / net_ms:.2f}% of the forward; "
              f"goal {GOAL_MS:.0f} ms / measured = {GOAL_MS / ms:.2f}x "
              f"({'meets' if ms < GOAL_MS else 'MISSES'} the < {GOAL_MS:.0f} ms goal)")


if __name__ == "__main__":
    main()
