"""panoptic-export: a checkpoint -> deployable programs of the network (and the panoptic head).

Formats (``--format``):

- ``onnx``: ``network.onnx`` (torch.export at static shape, then the dynamo ONNX exporter), checked against
  eager torch in onnxruntime;
- ``exported``: ``network.pt2`` and ``head.pt2``: strict ``torch.export`` programs (strict fails on any graph
  break), reloaded and checked against eager torch;
- ``tensorrt``: ``network_<precision>.ep``: a Torch-TensorRT program, only where CUDA and torch_tensorrt work;
- ``all``: everything this machine can build (a missing GPU is reported, not an error).

INT8 (``--int8 --calibration DATA``): post-training static quantization calibrated on ``--calibration-frames``
frames of a data-set folder (as ``panoptic-world generate`` writes it), through the Predictor's own
preprocessing. ``onnx`` (the default format with ``--int8``) writes ``network_int8.onnx`` (NNCF, QDQ; run by
the ``openvino`` and ``onnxruntime`` backends with ``precision int8``) and stores it in the runtime cache, where
``backend: auto`` finds it; ``tensorrt`` calibrates a TensorRT INT8 program on the same frames (GPU only).
``--eval DATA`` then prints held-out PQ of FP32 and INT8 side by side (``--eval-backend``).

``export.json`` next to them records the checkpoint metadata, input size, versions and each file's check.
Exit status: 0 on success, 1 on a failed export, 2 on bad arguments or when ``--format tensorrt`` was asked
for and cannot be built.
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

from .quantize import DEFAULT_KEEP_FLOAT, KEEP_FLOAT_CHOICES

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
    p.add_argument("--format", choices=("onnx", "exported", "tensorrt", "all"),
                   help="what to write (default: all; with --int8: onnx)")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                   help="static network input size (default: the checkpoint's)")
    p.add_argument("--precision", choices=("fp16", "fp32"), default="fp16", help="TensorRT precision without --int8")
    p.add_argument("--int8", action="store_true", help="INT8 post-training quantization (needs --calibration)")
    p.add_argument("--calibration", type=Path, metavar="DATA",
                   help="data-set folder (annotations.json + images/) whose frames calibrate INT8")
    p.add_argument("--calibration-frames", type=int, default=300, help="frames used to calibrate (default 300)")
    p.add_argument("--keep-float", default=",".join(DEFAULT_KEEP_FLOAT),
                   help="INT8: layers kept in floating point: comma-separated of first, heads, or none "
                        f"(default {','.join(DEFAULT_KEEP_FLOAT)}, the measured choice: see README)")
    p.add_argument("--eval", type=Path, metavar="DATA", help="INT8: print held-out PQ of FP32 and INT8 on this folder")
    p.add_argument("--eval-frames", type=int, help="INT8: evaluate on the first N frames (default all)")
    p.add_argument("--eval-backend", choices=("openvino", "onnxruntime"), default="openvino",
                   help="INT8: backend whose FP32 and INT8 runs are compared (default openvino)")
    p.add_argument("--cache-dir", type=Path, help="runtime cache the INT8 model is stored in (default "
                                                  "$PANOPTIC_ROS_CACHE or ~/.cache/panoptic_ros)")
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
    if args.int8:
        return export_int8(args, model, metadata, input_size)
    fmt = args.format or "all"
    formats = ("onnx", "exported", "tensorrt") if fmt == "all" else (fmt,)
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
            if fmt == "tensorrt":
                return 2
        else:
            path = args.out / f"network_{args.precision}.ep"
            path.write_bytes(backend.cache_outcome.path.read_bytes())
            got = backend.run(x.to(backend.device))
            record("tensorrt", path, precision=args.precision, gpu=torch.cuda.get_device_name(),
                   max_abs_diff_vs_torch=f"{max_abs_difference(got, reference):.2e}")
    (args.out / "export.json").write_text(json.dumps(manifest, indent=1, default=str))
    return status


def _fail(text: str) -> int:
    print(f"panoptic-export: {text}", file=sys.stderr)
    return 2


def export_int8(args, model, metadata: dict, input_size) -> int:
    """``--int8``: calibrate, write and cache the INT8 model(s); with ``--eval`` print FP32 vs INT8 PQ."""
    import shutil

    from ..predictor import Predictor
    from .backends import BackendUnavailable, create_backend, fp32_onnx
    from .cache import ArtifactCache
    from .quantize import INT8_KIND, calibration_batches, heldout_pq, int8_identity, int8_onnx

    keep = () if args.keep_float.strip() == "none" else tuple(k.strip() for k in args.keep_float.split(",") if k.strip())
    if set(keep) - set(KEEP_FLOAT_CHOICES):
        return _fail(f"--keep-float takes first, heads or none, got {args.keep_float!r}")
    for flag, folder in (("--calibration", args.calibration), ("--eval", args.eval)):
        if flag == "--calibration" and folder is None:
            return _fail("--int8 needs --calibration DATA (a data-set folder with annotations.json)")
        if folder is not None and not (folder / "annotations.json").is_file():
            return _fail(f"{flag} {folder}: no annotations.json there (a folder panoptic-world generate writes)")
    if args.calibration_frames < 1:
        return _fail("--calibration-frames must be >= 1")
    fmt = args.format or "onnx"
    if fmt == "exported":
        return _fail("--int8 writes onnx (openvino / onnxruntime) or tensorrt programs, not exported")
    args.out.mkdir(parents=True, exist_ok=True)
    predictor = Predictor(model, metadata, backend="cpu")  # its preprocessing is the calibration's
    batches = calibration_batches(args.calibration, predictor.preprocess, args.calibration_frames)
    manifest = {"checkpoint": str(args.checkpoint), "input_size": list(input_size), "metadata": metadata,
                "torch": torch.__version__, "int8": {"calibration": str(args.calibration), "frames": len(batches),
                                                     "keep_float": list(keep)}, "files": {}}
    status = 0
    if fmt in ("onnx", "all"):
        t0 = time.perf_counter()
        try:
            source, _ = fp32_onnx(model, input_size, args.cache_dir, args.opset)
        except BackendUnavailable as exc:
            return _fail(f"ONNX export failed: {exc}")
        # A new calibration replaces the cached one (same checkpoint, other data or settings).
        entry = ArtifactCache(args.cache_dir).entry_dir(INT8_KIND, int8_identity(model, input_size, args.opset, keep))
        shutil.rmtree(entry, ignore_errors=True)
        try:
            path, outcome = int8_onnx(model, input_size, source, args.cache_dir, args.opset, batches, keep)
        except BackendUnavailable as exc:  # e.g. nncf not installed
            return _fail(f"INT8 ONNX model not built: {exc}")
        shutil.copyfile(path, args.out / "network_int8.onnx")
        manifest["files"]["onnx_int8"] = {"path": "network_int8.onnx", "cache_entry": str(path),
                                          "seconds": round(time.perf_counter() - t0, 1)}
        print(f"onnx int8: {args.out / 'network_int8.onnx'} (calibrated on {len(batches)} frames of "
              f"{args.calibration}, kept in float: {', '.join(keep) or 'nothing'}; cached at {path})")
        if args.eval is not None:
            pq = {}
            for precision in ("fp32", "int8"):
                try:
                    backend = create_backend(args.eval_backend, model, input_size, precision=precision,
                                             cache_dir=args.cache_dir, keep_float=keep)
                except BackendUnavailable as exc:
                    return _fail(f"--eval-backend {args.eval_backend} {precision}: {exc}")
                pq[precision] = heldout_pq(Predictor(model, metadata, backend=backend), args.eval, args.eval_frames)
            delta = pq["int8"]["all"] - pq["fp32"]["all"]
            manifest["int8"]["heldout_pq"] = {**pq, "backend": args.eval_backend, "delta": round(delta, 2)}
            print(f"held-out PQ on {args.eval} ({pq['fp32']['frames']} frames, {args.eval_backend}): "
                  f"fp32 {pq['fp32']['all']:.2f} (things {pq['fp32']['things']:.2f}, stuff {pq['fp32']['stuff']:.2f}), "
                  f"int8 {pq['int8']['all']:.2f} (things {pq['int8']['things']:.2f}, stuff {pq['int8']['stuff']:.2f}): "
                  f"{delta:+.2f}")
    if fmt in ("tensorrt", "all"):
        from .backends import TensorRTBackend

        try:
            backend = TensorRTBackend(model, input_size, precision="int8", cache_dir=args.out / "trt_cache",
                                      calibration=batches)
        except BackendUnavailable as exc:
            print(f"tensorrt int8: not built: {exc}", file=sys.stderr)
            if fmt == "tensorrt":
                return 2
        else:
            path = args.out / "network_int8.ep"
            path.write_bytes(backend.cache_outcome.path.read_bytes())
            manifest["files"]["tensorrt_int8"] = {"path": path.name, "gpu": torch.cuda.get_device_name()}
            print(f"tensorrt int8: {path}")
    (args.out / "export.json").write_text(json.dumps(manifest, indent=1, default=str))
    return status


if __name__ == "__main__":
    sys.exit(main())
