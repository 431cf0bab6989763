"""panoptic-bench: per-stage latency of the whole per-frame pipeline, per backend, side by side.

Stages of one frame (as the node runs them): ``decode`` (sensor_msgs/Image fields -> numpy), ``preprocess``
(resize + normalise), ``network`` (backend forward, synchronised on CUDA), ``head`` (box decoding + NMS +
panoptic head + ids at the image size + segment table), ``grid`` (bird's-eye projection, lookup built once
per camera in the warm-up), ``encode`` (the output messages: ROS messages when ``panoptic_ros.ros.messages``
imports, else the same images as sensor_msgs/Image fields plus the occupancy bytes).

Frames: ``SyntheticWorld(WorldConfig(width=W, height=H), seed=2).frame(i)``, rendered before timing, with
the camera of frame 0 for the grid (a vehicle's camera does not move). Reports medians over ``--frames``
after ``--warmup`` frames, the end-to-end median (each frame timed as a whole) and end-to-end / network.
Figures are for the device each backend ran on (recorded from torch); nothing is extrapolated.

``end_to_end_over_network`` is the median over frames of each frame's end to end / network: both parts of
one ratio are timed on the same frame, under the same load. On a shared machine the network alone can take
85 ms in one second and 150 ms in the next (seen here within one 60-frame run), and the ratio of the two
medians (``ratio_of_medians``, also reported) then divides a median total from one stretch by a median
network time from another: it swung from 1.14 to 1.19 between runs whose per-stage medians agreed.

On a shared machine wall time also counts the time spent waiting for a core, so the same ratio is also
given in process CPU time (``cpu_end_to_end_over_network``; with ``--threads 1`` it is what the wall-time ratio
would be on an idle core; meaningless for GPU backends, whose network time is not host CPU time), and per stage
(``cpu_ms``: network, decode, preprocess+head, grid, encode, end_to_end).
``--head-strides 1,2`` times the Predictor's ``head_stride`` options side by side (2 and 4 approximate the
head on a coarser grid: see the README for their PQ).

Backends and precisions: ``--backends`` lists ``name`` or ``name/precision`` (default: every one this
package has: the GPU ones, then openvino int8 / bf16 / fp32, onnxruntime int8 / fp32, cpu); unavailable ones
are reported with their reason and skipped (INT8 needs ``panoptic-export --int8`` first). Every result is
also given as a ratio to ``onnxruntime/fp32`` measured in the same run (network and end to end: how many
times faster). ``--eval DATA`` adds held-out PQ per backend and precision (the first ``--eval-frames``
frames of a COCO-panoptic folder, exact head) and its difference to the FP32 result of the same backend.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from .auto import CPU_CANDIDATES, GPU_ORDER
from .backends import AUTO_ORDER, PRECISIONS, Backend, BackendUnavailable, create_backend

DEFAULT_VARIANTS = tuple(GPU_ORDER) + tuple(f"{n}/{p}" for n, p in CPU_CANDIDATES)
REFERENCE = "onnxruntime/fp32"
STAGES = ("decode", "preprocess", "network", "head", "grid", "encode")
# Process CPU time per stage (the predictor times preprocess and head in wall time only, so here they are
# one figure: its CPU time minus the network's).
CPU_STAGES = ("decode", "preprocess+head", "grid", "encode")


class _Synchronised(Backend):
    """Wraps a backend so its ``run`` returns only when the device is done (honest network timings)."""

    def __init__(self, inner: Backend):
        self.inner, self.name, self.device, self.input_size = inner, inner.name, inner.device, inner.input_size
        self.last_cpu_ms = 0.0  # process CPU time of the last run

    def run(self, images):
        start = time.process_time()
        out = self.inner.run(images)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.last_cpu_ms = 1e3 * (time.process_time() - start)
        return out


def _encoder(taxonomy):
    """(how, encode(result, rgb, bev, stamp_ns)): ROS messages when importable, else Image fields + bytes."""
    try:
        from builtin_interfaces.msg import Time

        from ..ros import messages
    except Exception as exc:  # noqa: BLE001 - no ROS message packages here: encode without them
        from ..imaging import image_to_fields
        from ..panoptic import colorize

        def encode_fields(result, rgb, bev, stamp_ns):
            out = [image_to_fields(result.panoptic, "32SC1"), image_to_fields(result.semantic, "mono8"),
                   image_to_fields(colorize(result.panoptic, taxonomy, rgb, alpha=0.5), "rgb8")]
            if bev is not None:
                out.append(bev.occupancy_data().astype("int8").tobytes())
            return out

        return f"imaging.image_to_fields (panoptic_ros.ros.messages not importable: {exc})", encode_fields

    def encode_ros(result, rgb, bev, stamp_ns):
        stamp = Time(sec=int(stamp_ns // 10**9), nanosec=int(stamp_ns % 10**9))
        hdr = messages.header(stamp, "camera_optical_frame")
        ids_image = messages.panoptic_ids_image(result.panoptic, hdr)
        out = [messages.panoptic_segmentation(result, taxonomy, hdr, ids_image),
               messages.semantic_image(result.semantic, hdr),
               messages.overlay_image(result.panoptic, taxonomy, rgb, hdr)]
        if bev is not None:
            out += [messages.bev_occupancy_grid(bev, stamp, "base_link"),
                    messages.footprint_markers(bev.footprints, taxonomy, stamp, "base_link")]
        return out

    return "panoptic_ros.ros.messages (panoptic, semantic, overlay, occupancy grid, footprint markers)", encode_ros


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def paired_ratio(totals: Sequence[float], parts: Sequence[float]) -> float:
    """Median over frames of total / part, each pair from the same frame (see the module docstring)."""
    return statistics.median(t / max(p, 1e-9) for t, p in zip(totals, parts, strict=True))


def measure(backend: Backend, model, metadata: dict, frames: list, grid, warmup: int, encode,
            head_stride: int = 1) -> dict:
    """Per-stage and end-to-end medians (ms) of ``backend`` over ``frames`` (the first ``warmup`` untimed)."""
    from ..bev import ProjectorCache
    from ..imaging import fields_to_image, image_to_fields
    from ..predictor import Predictor

    synchronised = _Synchronised(backend)
    predictor = Predictor(model, metadata, backend=synchronised, head_stride=head_stride)
    projector = ProjectorCache(grid, predictor.taxonomy)
    camera = frames[0].camera
    messages = [image_to_fields(f.image, "rgb8") for f in frames]
    times = {s: [] for s in STAGES}
    cpu_times = {s: [] for s in CPU_STAGES}
    total, cpu_total, cpu_network = [], [], []
    for i, (frame, fields) in enumerate(zip(frames, messages)):
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        rgb = fields_to_image(**fields)
        t1, cpu1 = time.perf_counter(), time.process_time()
        result = predictor.predict(rgb)
        t2, cpu2 = time.perf_counter(), time.process_time()
        bev = projector.project(camera, result.panoptic)
        t3, cpu3 = time.perf_counter(), time.process_time()
        encode(result, rgb, bev, frame.stamp_ns)
        t4 = time.perf_counter()
        cpu4 = time.process_time()
        if i < warmup:
            continue
        for stage, value in (("decode", cpu1 - cpu0), ("preprocess+head", cpu2 - cpu1 - synchronised.last_cpu_ms / 1e3),
                             ("grid", cpu3 - cpu2), ("encode", cpu4 - cpu3)):
            cpu_times[stage].append(1e3 * value)
        ms = result.timings_ms
        for stage, value in (("decode", 1e3 * (t1 - t0)), ("preprocess", ms["preprocess"]),
                             ("network", ms["network"]), ("head", ms["head"] + ms["postprocess"]),
                             ("grid", 1e3 * (t3 - t2)), ("encode", 1e3 * (t4 - t3))):
            times[stage].append(value)
        total.append(1e3 * (t4 - t0))
        cpu_total.append(1e3 * (cpu4 - cpu0))
        cpu_network.append(synchronised.last_cpu_ms)
    stages = {s: round(statistics.median(v), 3) for s, v in times.items()}
    end_to_end = statistics.median(total)
    ratio, cpu_ratio = paired_ratio(total, times["network"]), paired_ratio(cpu_total, cpu_network)
    return {"backend": backend.name, "device": _device_name(backend.device),
            "input_size": list(predictor.input_size), "image_size": [int(v) for v in frames[0].image.shape[:2]],
            "stages_ms": stages, "end_to_end_ms": round(end_to_end, 3),
            "end_to_end_over_network": round(ratio, 4),
            "ratio_of_medians": round(end_to_end / stages["network"], 4),
            # Process CPU time: what a loaded machine inflates least (wall time also counts waiting for a core).
            "cpu_ms": {"network": round(statistics.median(cpu_network), 3),
                       **{s: round(statistics.median(v), 3) for s, v in cpu_times.items()},
                       "end_to_end": round(statistics.median(cpu_total), 3)},
            "cpu_end_to_end_over_network": round(cpu_ratio, 4),
            "frames": len(total), "head_stride": head_stride, "describe": backend.describe(),
            # Each timed frame, for checking the medians or seeing the machine's load change.
            "per_frame_ms": {"network": [round(v, 3) for v in times["network"]], "end_to_end": [round(v, 3) for v in total]}}


def _label(result: dict) -> str:
    precision = result["describe"].get("precision")
    return result["backend"] + (f"/{precision}" if precision else "")


def add_ratios(results: list[dict]) -> None:
    """``vs_reference``: onnxruntime fp32's median network and end to end (same head stride, same run) divided
    by this result's (> 1: faster)."""
    for r in results:
        ref = next((x for x in results if _label(x) == REFERENCE and x["head_stride"] == r["head_stride"]), None)
        if ref is not None:
            r["vs_reference"] = {"reference": REFERENCE,
                                 "network_speedup": float(f"{ref['stages_ms']['network'] / r['stages_ms']['network']:.4g}"),
                                 "end_to_end_speedup": float(f"{ref['end_to_end_ms'] / r['end_to_end_ms']:.4g}")}


def _table(results: list[dict]) -> str:
    strided = any(r["head_stride"] != 1 for r in results)
    names = [_label(r) + (f" s{r['head_stride']}" if strided else "") for r in results]
    width = max(12, *(len(n) + 2 for n in names))
    lines = ["stage (median ms)".ljust(20) + "".join(n.rjust(width) for n in names)]
    for stage in STAGES:
        lines.append(stage.ljust(20) + "".join(f"{r['stages_ms'][stage]:{width}.2f}" for r in results))
    lines.append("end to end".ljust(20) + "".join(f"{r['end_to_end_ms']:{width}.2f}" for r in results))
    lines.append("end to end / network".ljust(20) + "".join(f"{r['end_to_end_over_network']:{width}.3f}"
                                                           for r in results))
    lines.append("  ratio of medians".ljust(20) + "".join(f"{r['ratio_of_medians']:{width}.3f}" for r in results))
    lines.append("same, CPU time".ljust(20) + "".join(f"{r['cpu_end_to_end_over_network']:{width}.3f}"
                                                     for r in results))
    if any("vs_reference" in r for r in results):
        for key, text in (("network_speedup", "network x faster"), ("end_to_end_speedup", "end to end x faster")):
            lines.append(text.ljust(20) + "".join(f"{r['vs_reference'][key]:{width}.2f}" if "vs_reference" in r
                                                  else "-".rjust(width) for r in results))
        lines.append(f"  (ratios: {REFERENCE}'s median / this one's, same run)")
    if any("heldout_pq" in r for r in results):
        lines.append("held-out PQ".ljust(20) + "".join(f"{r['heldout_pq']['all']:{width}.2f}" if "heldout_pq" in r
                                                      else "-".rjust(width) for r in results))
        lines.append("  minus fp32 PQ".ljust(20) + "".join(
            f"{r['heldout_pq']['minus_fp32']:+{width}.2f}" if r.get("heldout_pq", {}).get("minus_fp32") is not None
            else "-".rjust(width) for r in results))
    lines.append("CPU time (median ms)")
    for stage in ("network",) + CPU_STAGES + ("end_to_end",):
        lines.append(f"  {stage}".ljust(20) + "".join(f"{r['cpu_ms'][stage]:{width}.2f}" for r in results))
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="panoptic-bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--model", type=Path, help="checkpoint (default: the package's default model)")
    p.add_argument("--backends", default=",".join(DEFAULT_VARIANTS),
                   help="comma-separated backends to compare, each name or name/precision; unavailable ones are "
                        f"reported and skipped (default {','.join(DEFAULT_VARIANTS)})")
    p.add_argument("--frames", type=int, default=20, help="timed frames per backend")
    p.add_argument("--warmup", type=int, default=3, help="untimed frames first (builds lookups, warms caches)")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("W", "H"),
                   help="camera image size (default: the network input size, so no resize)")
    p.add_argument("--head-strides", default="1",
                   help="comma-separated Predictor head_stride values to time per backend (1 = exact head at "
                        "the input size; 2, 4 = coarser head grid, an approximation: see the README's PQ)")
    p.add_argument("--threads", type=int, help="CPU threads for torch, onnxruntime and openvino (default: the "
                                               "physical cores)")
    p.add_argument("--eval", type=Path, metavar="DATA", help="also held-out PQ per backend and precision on this "
                                                            "COCO-panoptic folder")
    p.add_argument("--eval-frames", type=int, help="evaluate the first N frames of --eval (default all)")
    p.add_argument("--cache-dir", type=Path, help="cache of compiled models (default $PANOPTIC_ROS_CACHE or "
                                                  "~/.cache/panoptic_ros)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from ..data.world import SyntheticWorld, WorldConfig
    from ..model.checkpoint import CheckpointError, load_checkpoint
    from ..resources import default_model_path

    path = args.model or default_model_path()
    if not path.is_file():
        print(f"panoptic-bench: no model at {path}; pass --model CHECKPOINT", file=sys.stderr)
        return 2
    if args.frames < 1 or args.warmup < 0:
        print("panoptic-bench: --frames must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 2
    try:
        model, metadata = load_checkpoint(path)
    except CheckpointError as exc:
        print(f"panoptic-bench: {exc}", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    variants = [(n.split("/")[0], n.split("/")[1] if "/" in n else "auto") for n in names]
    unknown = [n for n, (b, p) in zip(names, variants) if (b not in AUTO_ORDER and b != "auto")
               or p not in ("auto",) + PRECISIONS or n.count("/") > 1]
    if not names or unknown:
        print(f"panoptic-bench: unknown backends {unknown}; choose from auto, {', '.join(AUTO_ORDER)}, each "
              f"optionally /{'|'.join(PRECISIONS)}", file=sys.stderr)
        return 2
    if args.eval is not None and not (args.eval / "annotations.json").is_file():
        print(f"panoptic-bench: --eval {args.eval}: no annotations.json there", file=sys.stderr)
        return 2
    try:
        strides = [int(v) for v in args.head_strides.split(",") if v.strip()]
    except ValueError:
        strides = []
    from ..predictor import HEAD_STRIDES

    if not strides or any(v not in HEAD_STRIDES for v in strides):
        print(f"panoptic-bench: --head-strides must list values among 1, 2, 4, got {args.head_strides!r}",
              file=sys.stderr)
        return 2
    h, w = metadata["input_size"]
    width, height = args.image_size or (w, h)
    world = SyntheticWorld(WorldConfig(width=width, height=height), seed=2)
    frames = [world.frame(i) for i in range(args.warmup + args.frames)]
    encode_with, encode = _encoder(world.taxonomy)
    load_before = os.getloadavg()
    results, skipped = [], {}
    for name, (backend_name, precision) in zip(names, variants):
        try:
            backend = create_backend(backend_name, model, (h, w), metadata=metadata, threads=args.threads,
                                     cache_dir=args.cache_dir, precision=precision)
        except BackendUnavailable as exc:
            skipped[name] = str(exc)
            print(f"{name}: skipped ({exc})")
            continue
        for stride in strides:
            print(f"{name}: running {args.warmup} + {args.frames} frames on {_device_name(backend.device)} "
                  f"(head_stride {stride}) ...", flush=True)
            results.append(measure(backend, model, metadata, frames, world.config.grid, args.warmup, encode,
                                   head_stride=stride))
            results[-1]["requested"] = name
        if args.eval is not None:
            from ..predictor import Predictor
            from .quantize import heldout_pq

            print(f"{name}: held-out PQ on {args.eval} ...", flush=True)
            pq = heldout_pq(Predictor(model, metadata, backend=backend), args.eval, args.eval_frames)
            for r in results:
                if r["requested"] == name:
                    r["heldout_pq"] = dict(pq)
        del backend
    fp32_pq = {r["backend"]: r["heldout_pq"]["all"] for r in results
               if "heldout_pq" in r and r["describe"].get("precision") == "fp32"}
    for r in results:
        if "heldout_pq" in r:
            base = fp32_pq.get(r["backend"], fp32_pq.get("onnxruntime"))
            r["heldout_pq"]["minus_fp32"] = None if base is None else round(r["heldout_pq"]["all"] - base, 2)
    add_ratios(results)
    load_after = os.getloadavg()
    report = {"device": _device_name(torch.device("cuda")) if torch.cuda.is_available() else _device_name(torch.device("cpu")),
              "cuda_available": torch.cuda.is_available(), "torch": torch.__version__, "model": str(path),
              "torch_threads": torch.get_num_threads(), "load_average": {"before": load_before, "after": load_after},
              "threads": args.threads or "physical cores", "eval": str(args.eval) if args.eval else None,
              "frames": args.frames, "warmup": args.warmup, "encode_with": encode_with, "results": results,
              "skipped": skipped}
    if args.out:  # first: a long run's figures survive whatever happens after
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1, default=str))
    if results:
        print(_table(results))
    print(f"encode: {encode_with}")
    print(f"load average before / after: {load_before[0]:.2f} / {load_after[0]:.2f} on {os.cpu_count()} cores")
    if args.out:
        print(f"wrote {args.out}")
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
