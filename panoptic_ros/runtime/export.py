"""panoptic-export: a checkpoint -> deployable programs of the network (and the panoptic head).

Formats (``--format``):

- ``onnx``: ``network.onnx`` (torch.export at static shape, then the dynamo ONNX exporter), checked against
  eager torch in onnxruntime;
- ``exported``: ``network.pt2`` and ``head.pt2``: strict ``torch.export`` programs (strict fails on any graph
  break), reloaded and checked against eager torch;
- ``tensorrt``: ``network_<precision>.ep``: a Torch-TensorRT program, only where CUDA and torch_tensorrt work;
- ``all``: everything this machine can build (a missing GPU is reported, not an error).

``export.json`` next to them records the checkpoint metadata, input size, versions and each file's check.
Exit status: 0 on success, 1 on a failed export, 2 when ``--format tensorrt`` was asked for and cannot be built.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

log = logging.getLogger(__name__)

OUTPUT_NAMES = ("semantic", "centers", "cls_logits", "bbox_regression")
DEFAULT_OPSET = 18


def _example_images(input_size: Sequence[int], batch: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, int(input_size[0]), int(input_size[1]), generator=g)


def export_network(model: torch.nn.Module, input_size: Sequence[int], batch: int = 1) -> torch.export.ExportedProgram:
    """Strict ``torch.export`` of ``PanopticNet.forward`` at the static shape (batch, 3, H, W)."""
    model = model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.export.export(model, (_example_images(input_size, batch).to(device),), strict=True)


def head_example_inputs(head: torch.nn.Module, num_classes: int, thing_train_ids: Sequence[int],
                        input_size: Sequence[int], max_detections: int, seed: int = 0) -> tuple:
    """Inputs of the shapes the Predictor feeds the head: logits and centres at the input size, K slots."""
    h, w = int(input_size[0]), int(input_size[1])
    k = int(max_detections)
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(1, k, 2, generator=g) * torch.tensor([w, h])
    wh = torch.rand(1, k, 2, generator=g) * torch.tensor([w, h]) / 4 + 1
    things = torch.tensor([int(t) for t in thing_train_ids])
    return (torch.randn(1, num_classes, h, w, generator=g), torch.cat([xy - wh / 2, xy + wh / 2], -1),
            things[torch.randint(0, len(things), (1, k), generator=g)], torch.rand(1, k, generator=g),
            torch.rand(1, k, generator=g) < 0.5, torch.randn(1, 2, h, w, generator=g) * 3)


def export_head(head: torch.nn.Module, example_inputs: tuple) -> torch.export.ExportedProgram:
    """Strict ``torch.export`` of ``PanopticHead.forward`` (static input shapes; pair count is unbacked)."""
    return torch.export.export(head.eval(), example_inputs, strict=True)


def export_onnx(model: torch.nn.Module, input_size: Sequence[int], path: str | Path, opset: int = DEFAULT_OPSET,
                batch: int = 1) -> Path:
    """``PanopticNet`` -> ONNX file (input ``images``, outputs :data:`OUTPUT_NAMES`) at a static shape."""
    path = Path(path)
    program = export_network(model, input_size, batch)
    onnx_program = torch.onnx.export(program, (_example_images(input_size, batch),), dynamo=True,
                                     opset_version=int(opset), input_names=["images"],
                                     output_names=list(OUTPUT_NAMES), optimize=True, verbose=False)
    onnx_program.save(str(path))
    return path


def max_abs_difference(got: dict, want: dict) -> float:
    return max(float((got[k].detach().float().cpu() - want[k].float().cpu()).abs().max()) for k in OUTPUT_NAMES)


# -- command line ------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="panoptic-export", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("checkpoint", type=Path, help="panoptic_ros checkpoint (.pt)")
    p.add_argument("--out", type=Path, required=True, help="output directory (created)")
    p.add_argument("--format", choices=("onnx", "exported", "tensorrt", "all"), default="all")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                   help="static network input size (default: the checkpoint's)")
    p.add_argument("--precision", choices=("fp16", "fp32"), default="fp16", help="TensorRT precision")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset")
    p.add_argument("--max-detections", type=int, default=100, help="detection slots K of the exported head")
    p.add_argument("--policy", default="closest_center", help="overlap policy of the exported head")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    from ..head import PanopticHead, scale_stuff_area_threshold
    from ..model.checkpoint import CheckpointError, load_checkpoint
    from ..taxonomy import Taxonomy

    try:
        model, metadata = load_checkpoint(args.checkpoint)
    except CheckpointError as exc:
        print(f"panoptic-export: {exc}", file=sys.stderr)
        return 1
    input_size = tuple(args.input_size or metadata["input_size"])
    if min(input_size) < 32:
        print(f"panoptic-export: input size {input_size} is too small (need >= 32 x 32)", file=sys.stderr)
        return 1
    formats = ("onnx", "exported", "tensorrt") if args.format == "all" else (args.format,)
    args.out.mkdir(parents=True, exist_ok=True)
    x = _example_images(input_size, seed=1)
    with torch.no_grad():
        reference = model(x)
    manifest = {"checkpoint": str(args.checkpoint), "input_size": list(input_size), "metadata": metadata,
                "torch": torch.__version__, "files": {}}
    status = 0

    def record(name: str, path: Path, **info) -> None:
        manifest["files"][name] = {"path": path.name, **info}
        details = ", ".join(f"{k} {v}" for k, v in info.items())
        print(f"{name}: {path} ({details})")

    if "onnx" in formats:
        t0 = time.perf_counter()
        path = export_onnx(model, input_size, args.out / "network.onnx", opset=args.opset)
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = dict(zip(OUTPUT_NAMES, (torch.from_numpy(v) for v in session.run(None, {"images": x.numpy()}))))
        record("onnx", path, opset=args.opset, max_abs_diff_vs_torch=f"{max_abs_difference(got, reference):.2e}",
               seconds=round(time.perf_counter() - t0, 1))
    if "exported" in formats:
        t0 = time.perf_counter()
        path = args.out / "network.pt2"
        torch.export.save(export_network(model, input_size), str(path))
        got = torch.export.load(str(path)).module()(x)
        record("network.pt2", path, strict=True, max_abs_diff_vs_torch=f"{max_abs_difference(got, reference):.2e}",
               seconds=round(time.perf_counter() - t0, 1))
        taxonomy = Taxonomy.from_dict(metadata["taxonomy"])
        head = PanopticHead.from_taxonomy(taxonomy, policy=args.policy,
                                          stuff_area_threshold=scale_stuff_area_threshold(*input_size))
        inputs = head_example_inputs(head, taxonomy.num_classes, taxonomy.thing_train_ids, input_size,
                                     args.max_detections)
        t0 = time.perf_counter()
        path = args.out / "head.pt2"
        torch.export.save(export_head(head, inputs), str(path))
        other = head_example_inputs(head, taxonomy.num_classes, taxonomy.thing_train_ids, input_size,
                                    args.max_detections, seed=1)
        same = all(torch.equal(a, b) for a, b in zip(torch.export.load(str(path)).module()(*other), head(*other)))
        if not same:
            print("head.pt2: the reloaded program disagrees with the eager head", file=sys.stderr)
            status = 1
        record("head.pt2", path, strict=True, policy=args.policy, max_detections=args.max_detections,
               identical_to_eager=same, seconds=round(time.perf_counter() - t0, 1))
    if "tensorrt" in formats:
        from .backends import BackendUnavailable, TensorRTBackend

        try:
            backend = TensorRTBackend(model, input_size, precision=args.precision, cache_dir=args.out / "trt_cache")
        except BackendUnavailable as exc:
            print(f"tensorrt: not built: {exc}", file=sys.stderr)
            if args.format == "tensorrt":
                return 2
        else:
            path = args.out / f"network_{args.precision}.ep"
            path.write_bytes(backend.cache_outcome.path.read_bytes())
            got = backend.run(x.to(backend.device))
            record("tensorrt", path, precision=args.precision, gpu=torch.cuda.get_device_name(),
                   max_abs_diff_vs_torch=f"{max_abs_difference(got, reference):.2e}")
    (args.out / "export.json").write_text(json.dumps(manifest, indent=1, default=str))
    return status


if __name__ == "__main__":
    sys.exit(main())
