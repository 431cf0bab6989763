"""Train-step time of PanopticNet variants on this machine's CPU, measured side by side in one run.

    OMP_NUM_THREADS=2 .venv/bin/python bench/train_step_speed.py --steps 3 --batch 8

Prints seconds per optimizer step (forward + losses + backward + AdamW) for each variant on one random batch
with synthetic targets, the ratio to the first variant, the eval forward time of one image (network only)
and the checkpoint size. Use it to size the shipped
model: the step time times the planned number of steps is the training wall time.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing
from panoptic_ros.model.network import PanopticNet

VARIANTS = [  # (backbone, fpn_channels, head_channels, input H, input W)
    ("resnet18", 64, 64, 256, 512),
    ("resnet18", 128, 128, 256, 512),
    ("resnet18", 64, 64, 192, 384),
    ("resnet18", 128, 128, 192, 384),
    ("mobilenet_v3_large", 64, 64, 256, 512),
]


def fake_batch(batch: int, h: int, w: int, num_classes: int, things: list[int]) -> dict:
    g = torch.Generator().manual_seed(0)
    semantic = torch.randint(0, num_classes, (batch, h, w), generator=g)
    boxes = [torch.tensor([[w * 0.1, h * 0.4, w * 0.3, h * 0.8], [w * 0.5, h * 0.5, w * 0.6, h * 0.9]])] * batch
    labels = [torch.tensor(things[:2])] * batch
    return {"image": torch.randn(batch, 3, h, w, generator=g), "semantic": semantic,
            "center_offsets": torch.randn(batch, 2, h, w, generator=g), "center_mask": semantic > 10,
            "boxes": boxes, "labels": labels}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3, help="timed steps per variant (after one warm-up step)")
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args()
    print(f"torch threads {torch.get_num_threads()}, batch {args.batch}, detection on p3-p7")
    first = None
    for backbone, fpn, head, h, w in VARIANTS:
        torch.manual_seed(0)
        model = PanopticNet(19, list(range(11, 19)), backbone=backbone, fpn_channels=fpn, head_channels=head)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batch = fake_batch(args.batch, h, w, 19, list(range(11, 19)))
        times = []
        for i in range(args.steps + 1):
            t0 = time.perf_counter()
            loss = model.compute_loss(model(batch["image"]), batch)["total"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i:
                times.append(time.perf_counter() - t0)
        model.eval()
        with torch.no_grad():
            image = batch["image"][:1]
            model(image)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                model(image)
            infer_ms = (time.perf_counter() - t0) / args.steps * 1000
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        sec = sorted(times)[len(times) // 2]
        first = first or sec
        print(f"{backbone:10s} fpn {fpn:3d} head {head:3d} {h}x{w}: {sec:6.2f} s/step (median of {len(times)}), "
              f"x{sec / first:4.2f} of first, forward 1 image {infer_ms:5.0f} ms, {buf.tell() / 1e6:5.1f} MB, "
              f"{sum(p.numel() for p in model.parameters()) / 1e6:5.2f} M params")


if __name__ == "__main__":
    main()
