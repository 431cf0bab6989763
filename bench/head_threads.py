"""Panoptic head time next to the openvino backend with 1 vs 2 torch threads, interleaved (issue 25: why torch
runs the head on one thread next to openvino / onnxruntime: runtime.backends.head_torch_threads).

    PYTHONPATH=. .venv/bin/python bench/head_threads.py [--frames 20] [--rounds 2]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models/panoptic_r18_synthetic.pt")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2, help="each round times every thread count in turn")
    args = parser.parse_args(argv)
    from panoptic_ros.data.world import SyntheticWorld, WorldConfig
    from panoptic_ros.model.checkpoint import load_checkpoint
    from panoptic_ros.predictor import Predictor
    from panoptic_ros.runtime import create_backend

    model, meta = load_checkpoint(args.model)
    h, w = meta["input_size"]
    predictor = Predictor(model, meta, backend=create_backend("openvino", model, (h, w), precision="bf16"))
    world = SyntheticWorld(WorldConfig(width=w, height=h), seed=2)
    frames = [world.frame(i).image for i in range(args.frames)]
    timings: dict[int, list] = {1: [], 2: []}
    for _ in range(args.rounds):
        for threads in timings:
            torch.set_num_threads(threads)
            for frame in frames:
                ms = predictor.predict(frame).timings_ms
                timings[threads].append((ms["network"], ms["head"] + ms["postprocess"]))
    for threads, values in timings.items():
        print(f"torch threads {threads}: network median {statistics.median(v[0] for v in values):.1f} ms, "
              f"head median {statistics.median(v[1] for v in values):.1f} ms over {len(values)} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
