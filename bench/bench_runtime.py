"""Whole-pipeline cost per frame vs the network alone, per backend, side by side in one run (panoptic-bench).

Runs ``panoptic-bench`` (decode, preprocess, network, head, grid, encode on synthetic frames of world seed 2)
on the default model, or on ``--model``, or, when neither exists, on a random-weight ResNet-18-FPN (64
channels) at 192 x 384 saved to a temporary checkpoint (timings only: random weights detect little, so the
head and grid work less than with a trained model; the output says so). Goal: end to end / network <= 1.15.

    .venv/bin/python bench/bench_runtime.py --frames 20 --threads 2 --out bench_runtime.json
    .venv/bin/python bench/bench_runtime.py --backends onnxruntime,cpu --threads 1 --head-strides 1,2,4
    .venv/bin/python bench/bench_runtime.py --backends cpu --threads 1 --detection-levels 2,3,4,5,6,7
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from panoptic_ros.resources import default_model_path  # noqa: E402
from panoptic_ros.runtime import bench  # noqa: E402

GOAL = 1.15


def random_checkpoint(folder: Path) -> Path:
    import torch

    from panoptic_ros.model.checkpoint import build_metadata, save_checkpoint
    from panoptic_ros.model.network import PanopticNet
    from panoptic_ros.taxonomy import Taxonomy

    torch.manual_seed(0)
    taxonomy = Taxonomy.cityscapes()
    model = PanopticNet.from_config({"backbone": "resnet18", "fpn_channels": 64, "head_channels": 64},
                                    taxonomy=taxonomy).eval()
    metadata = build_metadata(model, taxonomy, (192, 384), {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
    return save_checkpoint(folder / "random_r18.pt", model, metadata)


def with_detection_levels(path: Path, levels: list[int], folder: Path) -> Path:
    """A copy of checkpoint ``path`` whose detection branch runs on ``levels`` (its weights fit any levels: the
    RetinaNet head is shared across them), in ``folder``: times a p2 model before one is trained."""
    from panoptic_ros.model.checkpoint import load_checkpoint, save_checkpoint
    from panoptic_ros.model.network import PanopticNet

    model, metadata = load_checkpoint(path)
    network = dict(metadata["network"], detection_levels=list(levels))
    rebuilt = PanopticNet.from_config(network).eval()
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    return save_checkpoint(folder / f"levels_{'_'.join(map(str, levels))}.pt", rebuilt,
                           dict(metadata, network=network))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path)
    p.add_argument("--backends", default="tensorrt,cuda,onnxruntime,cpu")
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--threads", type=int)
    p.add_argument("--head-strides", default="1", help="Predictor head_stride values to time (e.g. 1,2)")
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "bench_runtime.json")
    p.add_argument("--detection-levels", help="rerun the model's weights with these detection levels, e.g. "
                                              "2,3,4,5,6,7 (adds p2: 4x the anchors); saved in a temporary folder")
    args = p.parse_args()
    model = args.model or default_model_path()
    with tempfile.TemporaryDirectory() as tmp:
        if not model.is_file():
            print(f"no model at {model}: timing a random-weight ResNet-18-FPN at 192x384 instead")
            model = random_checkpoint(Path(tmp))
        if args.detection_levels:
            levels = [int(v) for v in args.detection_levels.split(",")]
            print(f"detection levels {levels} (the weights of {model})")
            model = with_detection_levels(model, levels, Path(tmp))
        argv = ["--model", str(model), "--backends", args.backends, "--frames", str(args.frames), "--out", str(args.out),
                "--head-strides", args.head_strides]
        if args.threads:
            argv += ["--threads", str(args.threads)]
        code = bench.main(argv)
    if code != 0:
        return code
    for entry in json.loads(args.out.read_text())["results"]:
        ratio, cpu_ratio = entry["end_to_end_over_network"], entry["cpu_end_to_end_over_network"]
        verdict = "meets" if ratio <= GOAL else "misses"
        print(f"{entry['backend']:>12} head_stride {entry['head_stride']} on {entry['device']}: end to end / network "
              f"= {ratio:.3f} wall ({verdict} the goal <= {GOAL}; ratio of the medians {entry['ratio_of_medians']:.3f}), "
              f"{cpu_ratio:.3f} in process CPU time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
