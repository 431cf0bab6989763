"""Run a Predictor over ground-truth frames (a data-set folder or a rosbag2) and write the evaluation report.

    panoptic-eval model CKPT DATA_ROOT [--split SPLIT] [--format auto|coco|cityscapes] --out DIR
    panoptic-eval bag BAG --model CKPT --out DIR
    panoptic-eval bag BAG --model CKPT --out DIR --write-bag OUT_BAG   # the node's pipeline; outputs to a bag
    panoptic-eval bag BAG --predictions REC_BAG --out DIR              # outputs recorded from a live replay

Recorded outputs are matched to the input bag's ground truth by header stamp (:func:`evaluate_recorded`); this
part needs no ROS install (rosbags reads them, with the panoptic_ros types parsed from msg/*.msg).
"""
from __future__ import annotations

import heapq
import itertools
import sys
import time
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm import tqdm

from ..data.frame import Sample
from .detection import DetectionAccumulator
from .pq import PQAccumulator, format_table
from .report import write_report
from .semantic import SemanticAccumulator

# = predictor.HEAD_STRIDES (tested); a copy, as importing the predictor loads torch for every subcommand
HEAD_STRIDES = (1, 2, 4)
from ..fusion import FUSIONS  # noqa: E402 (torch-free)


def evaluate_predictor(predictor, samples: Iterable[Sample], out: Path | None, title: str, worst: int = 6,
                       total: int | None = None, extra: dict | None = None) -> dict:
    """PQ, mIoU and latency of ``predictor`` on ``samples``; writes the report to ``out`` when given.

    Only the ``worst`` lowest-PQ frames are kept in memory (a heap), so bags of any length fit.
    """
    taxonomy = predictor.taxonomy
    pq = PQAccumulator(taxonomy)
    semantic = SemanticAccumulator(taxonomy)
    boxes = DetectionAccumulator(taxonomy)  # the detection branch alone, at the panoptic score threshold
    latencies, stage_times, worst_heap = [], [], []
    for k, sample in enumerate(tqdm(samples, total=total, desc="evaluate", unit="frame")):
        t0 = time.perf_counter()
        result = predictor.predict(sample.image)
        latencies.append(1000.0 * (time.perf_counter() - t0))
        stage_times.append(result.timings_ms)
        stats = pq.add(result.panoptic, result.segments, sample.panoptic, sample.segments,
                       name=sample.name or f"frame_{k:06d}")
        semantic.add(result.semantic, sample.semantic(taxonomy))
        things = [seg for seg in sample.segments if seg.is_thing]
        gt_xyxy = np.array([[x, y, x + bw, y + bh] for x, y, bw, bh in (seg.bbox for seg in things)], np.float32)
        det = result.detections
        boxes.add(det["boxes"], det["scores"], det["category_ids"], gt_xyxy.reshape(-1, 4),
                  [seg.category_id for seg in things], [seg.iscrowd for seg in things],
                  height=sample.image.shape[0], width=sample.image.shape[1])
        if worst and np.isfinite(stats.pq):
            # heap of the worst frames: keep the `worst` lowest PQ (max-heap by -pq); k breaks ties
            item = (-stats.pq, k, (stats.name, sample.image, sample.panoptic, result.panoptic, stats.pq))
            (heapq.heappush if len(worst_heap) < worst else heapq.heappushpop)(worst_heap, item)
    if not latencies:
        raise ValueError("no frames to evaluate")
    result = pq.result()
    result["semantic"] = semantic.result()
    result["detection"] = boxes.result()
    print(format_table(result, per_class=True))
    print(f"mIoU {100 * result['semantic']['miou']:.1f}; box AP {100 * result['detection']['AP']:.1f} "
          f"(AP50 {100 * result['detection']['AP50']:.1f}); latency median {np.median(latencies):.1f} ms, "
          f"p95 {np.percentile(latencies, 95):.1f} ms over {len(latencies)} frames ({predictor.backend_name})")
    if out is not None:
        stages = {s: float(np.median([t[s] for t in stage_times])) for s in stage_times[0]}
        facts = {"backend": predictor.backend_name, "model": predictor.metadata.get("checkpoint_path", ""),
                 "median_stage_ms": stages, "miou": result["semantic"]["miou"],
                 "box_ap": {k: result["detection"][k] for k in ("AP", "AP50", "AP75")}, **(extra or {})}
        worst_frames = [item[2] for item in sorted(worst_heap, key=lambda i: (i[2][4], i[1]))]
        paths = write_report(out, result, pq.frames, latencies_ms=latencies, worst_frames=worst_frames,
                             title=title, taxonomy=taxonomy, extra=facts)
        print(f"report: {paths['md']}")
    return result


def _predictor(args):
    from ..predictor import Predictor

    return Predictor.from_checkpoint(args.model, backend=args.backend, score_threshold=args.score_threshold,
                                     stuff_area_threshold=args.stuff_area_threshold, policy=args.policy,
                                     unknown=args.unknown, head_stride=args.head_stride,
                                     input_size=args.input_size, fusion=args.fusion)


def run_model(args) -> int:
    """``panoptic-eval model``: the predictor over a COCO-panoptic or Cityscapes-panoptic folder."""
    from ..data.datasets import open_dataset
    from ..model.checkpoint import CheckpointError, read_checkpoint
    from ..taxonomy import Taxonomy

    reader = open_dataset(args.data, args.split, args.format, default_split="val")
    try:  # the class lists are compared before the backend is built (a first ONNX build takes 20-30 s)
        model_taxonomy = Taxonomy.from_dict(read_checkpoint(args.model)["metadata"]["taxonomy"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {args.model} has no valid taxonomy: {exc}") from exc
    if reader.taxonomy != model_taxonomy:
        ours, theirs = reader.taxonomy.names(), model_taxonomy.names()
        raise ValueError(f"{reader.json_path}: its {len(ours)} categories ({', '.join(ours[:4])}, ...) are not the "
                         f"model's {len(theirs)} ({', '.join(theirs[:4])}, ...)")
    predictor = _predictor(args)
    n = len(reader) if args.frames is None else min(args.frames, len(reader))
    samples = (reader[i] for i in range(n))
    evaluate_predictor(predictor, samples, args.out, f"{Path(args.model).name} on {args.data}", args.worst,
                       total=n, extra={"data": str(args.data), "frames": n, **_settings(predictor, args)})
    return 0


def run_bag(args) -> int:
    """``panoptic-eval bag``: the predictor over every frame of a rosbag2 with ground-truth topics."""
    from ..data.bag import read_bag

    predictor = _predictor(args)

    def samples():
        for k, frame in enumerate(read_bag(args.bag, image_topic=args.image_topic)):
            if frame.panoptic is None or frame.segments is None:
                raise ValueError(f"frame {k} (stamp {frame.stamp_ns} ns) of {args.bag} has no panoptic ground truth")
            yield Sample(frame.image, frame.panoptic, frame.segments, f"{k:06d}_{frame.stamp_ns}")

    frames = samples() if args.frames is None else itertools.islice(samples(), args.frames)
    evaluate_predictor(predictor, frames, args.out, f"{Path(args.model).name} on bag {args.bag}", args.worst,
                       extra={"bag": str(args.bag), **_settings(predictor, args)})
    pipeline, has_grid = _pipeline_for(args, predictor)
    if has_grid:  # the grid as the node makes it: a second pass, through the node's pipeline
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            _, grid_eval = _grid_pass(args, pipeline, Path(tmp) / "outputs", ("grid",))
        _report_grid(grid_eval, args.out)
    return 0


def _settings(predictor, args) -> dict:
    return {"score_threshold": predictor.score_threshold, "stuff_area_threshold": predictor.stuff_area_threshold,
            "policy": args.policy, "unknown": args.unknown, "head_stride": predictor.head_stride,
            "input_size": list(args.input_size) if args.input_size else "image aspect at the checkpoint's pixels",
            "fusion": predictor.fusion}


def add_predictor_args(parser) -> None:
    parser.add_argument("--backend", default="auto", help="auto | tensorrt | cuda | openvino | onnxruntime | cpu (README \"Backends\")")
    parser.add_argument("--score-threshold", type=float, default=None,
                        help="detection score threshold (default: the model's, else the paper's 0.4)")
    parser.add_argument("--stuff-area-threshold", type=int, default=None,
                        help="stuff segments below this many px (network input scale) become void "
                             "(default: the model's, else the paper's 4096 px scaled)")
    parser.add_argument("--policy", default="closest_center",
                        choices=("closest_center", "highest_confidence", "smallest_first"))
    parser.add_argument("--unknown", action=__import__("argparse").BooleanOptionalAction, default=True,
                        help="predict unknown for thing pixels no detection explains")
    parser.add_argument("--fusion", default="parameter_free", choices=FUSIONS,
                        help="panoptic fusion (parameter_free = the head; --policy / --unknown apply to it only)")
    parser.add_argument("--head-stride", type=int, default=1, choices=HEAD_STRIDES,
                        help="panoptic head on a grid this many times coarser than the network input (1 = exact)")
    parser.add_argument("--input-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="network input every image is resized to (multiples of 32); default: each image's "
                             "aspect ratio at the checkpoint's pixel budget")
    parser.add_argument("--frames", type=int, default=None, help="evaluate only the first N frames")
    parser.add_argument("--worst", type=int, default=6, help="how many lowest-PQ frames to draw")


# -- the node's pipeline offline, and recorded node outputs ------------------------------------------------------
PREDICTION_TOPIC = "/panoptic_node/panoptic"
TF_TOPIC = "/tf"
OUTPUT_TYPES = {"panoptic_ids": "sensor_msgs/msg/Image", "panoptic": "panoptic_ros/msg/PanopticSegmentation",
                "semantic": "sensor_msgs/msg/Image", "overlay": "sensor_msgs/msg/Image",
                "grid": "nav_msgs/msg/OccupancyGrid", "markers": "visualization_msgs/msg/MarkerArray"}


def node_config_from_file(path: Path | None, **overrides):
    """A :class:`~panoptic_ros.ros.params.NodeConfig` from a ``--params-file`` YAML (``ros__parameters`` of its
    first node entry, nested keys joined with '.'), defaults for what it leaves out."""
    import yaml

    from ..ros.params import NodeConfig

    values: dict = {}
    if path is not None:
        doc = yaml.safe_load(Path(path).read_text()) or {}
        params = next((v["ros__parameters"] for v in doc.values() if isinstance(v, dict) and "ros__parameters" in v),
                      None)
        if params is None:
            raise ValueError(f"{path} has no '<node>: ros__parameters:' section")

        def flatten(prefix: str, d: dict) -> None:
            for k, v in d.items():
                if isinstance(v, dict):
                    flatten(f"{prefix}{k}.", v)
                else:
                    values[f"{prefix}{k}"] = v
        flatten("", params)
    values.update(overrides)
    return NodeConfig.from_values(values)


class TruthLabels:
    """Stands in for the Predictor in the node's pipeline: hands out a bag's ground-truth panoptic ids, so the
    grid's own error (projection, footprints) is measured without the network's (``--labels truth``)."""

    backend_name = "ground truth"

    def __init__(self, taxonomy):
        self.taxonomy = taxonomy
        self.metadata = {"checkpoint_path": "ground truth"}
        self.ids = None  # set per frame

    def predict(self, rgb: np.ndarray):
        from ..panoptic import PanopticResult, segments_from_ids, semantic_from_ids

        if self.ids is None or self.ids.shape != rgb.shape[:2]:
            raise ValueError("no ground-truth panoptic ids of this image's size and stamp in the bag")
        ids = self.ids.astype(np.int32)
        return PanopticResult(ids, semantic_from_ids(ids, self.taxonomy), segments_from_ids(ids, self.taxonomy))


def write_pipeline_bag(bag: Path, pipeline, out_bag: Path, image_topic: str = "/camera/image_raw",
                       camera_info_topic: str = "/camera/camera_info", outputs=None,
                       node_name: str = "panoptic_node", frames: int | None = None,
                       grid_eval=None, truth_labels: TruthLabels | None = None) -> dict:
    """Run the node's :class:`~panoptic_ros.ros.pipeline.FramePipeline` over every image of ``bag`` and write
    its outputs to a new bag ``out_bag`` on the node's topics (``/<node_name>/<output>``), each with the
    input's header stamp as log time. CameraInfo is taken as the node takes it: the latest one before the image.
    The camera pose comes from the bag's ``/tf_static`` and ``/tf`` (``grid.frame_id`` <- the image's optical
    frame at its stamp) through the node's built-in :class:`~panoptic_ros.tf_buffer.TransformBuffer`, as the node
    takes it from TF; a frame without it gets the pipeline's parameter pose (said once on stderr).

    ``grid_eval`` (a :class:`~panoptic_ros.evaluation.grid.GridEvaluation`) gets every frame's grid against the
    bag's bird's-eye truth (``/ground_truth/grid``, same stamp). ``truth_labels``: the pipeline's predictor is a
    :class:`TruthLabels`, fed the bag's ``/ground_truth/panoptic`` of each frame.

    Returns ``{"frames": n, "bad_input": n, "processing_ms": [per frame], "stamps": [input stamps],
    "pose_from_tf": n}``.
    """
    from rclpy.serialization import deserialize_message, serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer

    from ..data.bag import GRID_TOPIC, PANOPTIC_TOPIC, TF_STATIC_TOPIC, bag_topics, read_raw
    from ..ros.camera_pose import BufferCameraPose, CameraPoseUnavailable
    from ..ros.tf_listener import add_tf_message
    from ..tf_buffer import TransformBuffer
    from ..ros.image_conversion import image_to_numpy
    from ..ros.pipeline import OUTPUTS, BadImage, stamp_ns
    from ..ros.record import panoptic_typestore
    from ..ros.replay import message_class

    outputs = tuple(outputs or OUTPUTS)
    if grid_eval is not None and "grid" not in outputs:
        outputs = outputs + ("grid",)
    if Path(out_bag).exists():
        raise FileExistsError(f"{out_bag} exists; --write-bag writes a new bag")
    topics = bag_topics(bag)
    if image_topic not in topics:
        raise ValueError(f"{bag} has no topic {image_topic}; it has {sorted(topics)}")
    wanted = [image_topic, camera_info_topic, TF_STATIC_TOPIC, TF_TOPIC]
    if grid_eval is not None:
        wanted.append(GRID_TOPIC)
    if truth_labels is not None:
        if PANOPTIC_TOPIC not in topics:
            raise ValueError(f"{bag} has no {PANOPTIC_TOPIC}: no ground-truth labels to project")
        wanted.append(PANOPTIC_TOPIC)
    classes = {t: message_class(topics[t].msgtype) for t in wanted if t in topics}
    store = panoptic_typestore()
    stats = {"frames": 0, "bad_input": 0, "processing_ms": [], "stamps": [], "pose_from_tf": 0}
    warned = set()
    tf = TransformBuffer(cache_s=60.0)
    poses = BufferCameraPose(tf, pipeline.grid.frame_id, camera_frame=pipeline.camera_frame)
    info = None
    group: dict = {}  # the messages of one stamp: a frame's image, truth and labels share their header stamp

    def say(key: str, text: str) -> None:
        if key not in warned:
            warned.add(key)
            print(f"panoptic-eval: {text}", file=sys.stderr)

    def run_frame(writer, conns, parts: dict) -> None:
        msg = parts.get(image_topic)
        if msg is None:
            return
        t = stamp_ns(msg.header.stamp)
        if truth_labels is not None:
            m = parts.get(PANOPTIC_TOPIC)
            truth_labels.ids = None if m is None else image_to_numpy(m)
        try:
            pose = poses.pose_for(msg.header.frame_id, msg.header.stamp)
            stats["pose_from_tf"] += 1
        except CameraPoseUnavailable as exc:
            pose = None
            say("no_tf", f"{exc}: the grid uses the camera.* parameters")
        try:
            out = pipeline.process(msg, info, outputs, pose)
        except BadImage as exc:
            stats["bad_input"] += 1
            print(f"panoptic-eval: frame {t} ns: {exc}", file=sys.stderr)
            return
        for level, key, text in out.events:
            if level == "error" or (level == "warning" and key not in warned):
                warned.add(key)
                print(f"panoptic-eval: frame {t} ns: {text}", file=sys.stderr)
        stats["processing_ms"].append(out.processing_ms)
        stats["stamps"].append(t)
        for name, built in out.messages.items():
            writer.write(conns[name], t, serialize_message(built))
        truth = parts.get(GRID_TOPIC)
        if grid_eval is not None and truth is not None and "grid" in out.messages:
            used = pose or pipeline.camera_pose
            grid_eval.add(f"{stats['frames'] - 1:06d}_{t}", np.asarray(out.messages["grid"].data, np.int8),
                          np.asarray(truth.data, np.int8), pipeline.grid, (used.x, used.y))

    with Writer(out_bag, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {name: writer.add_connection(f"/{node_name}/{name}", OUTPUT_TYPES[name], typestore=store)
                 for name in outputs}
        total = sum(topics[t].count for t in classes)
        group_stamp = None
        for raw in tqdm(read_raw(bag, classes), total=total, desc="pipeline", unit="msg"):
            msg = deserialize_message(raw.data, classes[raw.topic])
            if raw.topic == TF_TOPIC:
                add_tf_message(tf, msg, static=False)
                continue
            if raw.topic == TF_STATIC_TOPIC:
                if image_topic in group:  # a transform recorded after an image is not that image's: run it first
                    run_frame(writer, conns, group)
                    group, group_stamp = {}, None
                    if frames is not None and stats["frames"] >= frames:
                        break
                add_tf_message(tf, msg, static=True)
                continue
            t = stamp_ns(msg.header.stamp)
            if t != group_stamp:  # a new frame begins: the previous one is complete
                run_frame(writer, conns, group)
                group, group_stamp = {}, t
                if frames is not None and stats["frames"] >= frames:
                    break
            if raw.topic == camera_info_topic:
                info = msg
                continue
            if raw.topic == image_topic:
                stats["frames"] += 1
            group[raw.topic] = msg
        else:
            run_frame(writer, conns, group)
    return stats


def read_predictions(path: Path, topic: str = PREDICTION_TOPIC) -> dict:
    """Recorded node outputs: ``{"by_stamp": {stamp: (log ns, raw CDR)}, "order": [stamps in log order],
    "published": {input stamp: publish ns}}`` (the last from the recorder's input topic, when present)."""
    from ..data.bag import bag_topics, read_raw
    from ..ros.record import INPUTS_TOPIC, panoptic_typestore

    topics = bag_topics(path)
    if topic not in topics:
        raise ValueError(f"{path} has no topic {topic}; it has {sorted(topics)}")
    store = panoptic_typestore()
    by_stamp, order, published = {}, [], {}
    for raw in read_raw(path, [topic, INPUTS_TOPIC]):
        if raw.topic == INPUTS_TOPIC:
            hdr = store.deserialize_cdr(raw.data, raw.msgtype)
            published.setdefault(hdr.stamp.sec * 1_000_000_000 + hdr.stamp.nanosec, raw.timestamp_ns)
            continue
        msg = store.deserialize_cdr(raw.data, raw.msgtype)
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        order.append(stamp)
        by_stamp.setdefault(stamp, (raw.timestamp_ns, raw.data, raw.msgtype))
    return {"by_stamp": by_stamp, "order": order, "published": published, "store": store}


def evaluate_recorded(bag: Path, predictions: Path, out: Path | None, title: str,
                      image_topic: str = "/camera/image_raw",
                      prediction_topic: str = PREDICTION_TOPIC, worst: int = 6, latencies_ms=None,
                      latency_name: str = "end-to-end", extra: dict | None = None, frames: int | None = None) -> dict:
    """PQ of recorded ``PanopticSegmentation`` outputs against the ground truth of ``bag``, matched by header stamp.

    Input frames with no output count as dropped (PQ is over the frames with an output). End-to-end latency of
    a frame = the output's log time in ``predictions`` (the recorder's receive time) minus the input's publish
    time (recorded on :data:`~panoptic_ros.ros.record.INPUTS_TOPIC`); ``latencies_ms`` replaces it when given.
    """
    from ..data.bag import read_bag
    from ..panoptic import semantic_from_ids
    from ..ros.segmentation import from_panoptic_segmentation

    pred = read_predictions(predictions, prediction_topic)
    order = pred["order"]
    pq = semantic = taxonomy = None
    inputs, dropped, matched, e2e, worst_heap = [], [], set(), [], []
    for k, frame in enumerate(itertools.islice(read_bag(bag, image_topic=image_topic), frames)):
        if frame.panoptic is None or frame.segments is None:
            raise ValueError(f"frame {k} (stamp {frame.stamp_ns} ns) of {bag} has no panoptic ground truth")
        inputs.append(frame.stamp_ns)
        hit = pred["by_stamp"].get(frame.stamp_ns)
        if hit is None:
            dropped.append(frame.stamp_ns)
            continue
        matched.add(frame.stamp_ns)
        log_ns, data, msgtype = hit
        ids, segments, msg_taxonomy = from_panoptic_segmentation(pred["store"].deserialize_cdr(data, msgtype))
        if pq is None:
            taxonomy = msg_taxonomy
            pq, semantic = PQAccumulator(taxonomy), SemanticAccumulator(taxonomy)
        if ids.shape != frame.panoptic.shape:
            raise ValueError(f"output for stamp {frame.stamp_ns} is {ids.shape[1]}x{ids.shape[0]}, the ground "
                             f"truth {frame.panoptic.shape[1]}x{frame.panoptic.shape[0]}")
        stats = pq.add(ids, segments, frame.panoptic, frame.segments, name=f"{k:06d}_{frame.stamp_ns}")
        semantic.add(semantic_from_ids(ids, taxonomy), semantic_from_ids(frame.panoptic, taxonomy))
        if frame.stamp_ns in pred["published"]:
            e2e.append((log_ns - pred["published"][frame.stamp_ns]) / 1e6)
        if worst and np.isfinite(stats.pq):
            item = (-stats.pq, k, (stats.name, frame.image, frame.panoptic, ids, stats.pq))
            (heapq.heappush if len(worst_heap) < worst else heapq.heappushpop)(worst_heap, item)
    if not inputs:
        raise ValueError(f"{bag} has no images on {image_topic}")
    if pq is None:
        raise ValueError(f"none of the {len(inputs)} input frames has an output in {predictions} "
                         f"({len(order)} messages on {prediction_topic}, none with an input's stamp)")
    latencies = list(latencies_ms) if latencies_ms is not None else e2e
    result = pq.result()
    result["semantic"] = semantic.result()
    unknown = sorted(set(pred["by_stamp"]) - set(inputs))
    # Order among the outputs of this bag's inputs (an output with a foreign stamp is counted apart, below).
    known = [t for t in order if t in matched]
    out_of_order = sum(1 for a, b in zip(known, known[1:]) if b <= a)
    live = {"frames_in": len(inputs), "frames_out": len(matched), "dropped": len(dropped),
            "outputs_recorded": len(order), "duplicates": len(order) - len(pred["by_stamp"]),
            "out_of_order": out_of_order, "outputs_without_input": len(unknown), "latency": latency_name,
            "latency_ms": ({f"p{p}": float(np.percentile(latencies, p)) for p in (50, 95, 99)} | {
                "mean": float(np.mean(latencies)), "max": float(np.max(latencies)), "count": len(latencies)}
                           if latencies else None),
            "dropped_stamps": dropped[:50]}
    result["live"] = live
    print(format_table(result, per_class=True))
    print(f"mIoU {100 * result['semantic']['miou']:.1f}; frames in {live['frames_in']}, out {live['frames_out']}, "
          f"dropped {live['dropped']}, out of order {out_of_order}, outputs without input {len(unknown)}")
    if live["latency_ms"]:
        lat = live["latency_ms"]
        print(f"{latency_name} latency p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms, p99 {lat['p99']:.1f} ms "
              f"over {lat['count']} frames")
    else:
        print("latency: not available (the recording has no input publish times; record with --inputs)")
    if out is not None:
        worst_frames = [item[2] for item in sorted(worst_heap, key=lambda i: (i[2][4], i[1]))]
        facts = {"bag": str(bag), "predictions": str(predictions), "prediction_topic": prediction_topic,
                 "miou": result["semantic"]["miou"], "live": live, **(extra or {})}
        paths = write_report(out, result, pq.frames, latencies_ms=latencies or None, worst_frames=worst_frames,
                             title=title, taxonomy=taxonomy, extra=facts)
        with paths["md"].open("a") as f:
            f.write(_live_markdown(live))
        print(f"report: {paths['md']}")
    return result


def _live_markdown(live: dict) -> str:
    lines = ["", "## Frames in and out", "",
             "PQ above is over the frames with an output; dropped = input frames with no output.", "",
             "| frames in | frames out | dropped | out of order | duplicates | outputs without input |",
             "|---:|---:|---:|---:|---:|---:|",
             f"| {live['frames_in']} | {live['frames_out']} | {live['dropped']} | {live['out_of_order']} "
             f"| {live['duplicates']} | {live['outputs_without_input']} |"]
    lat = live["latency_ms"]
    if lat:
        lines += ["", f"Latency ({live['latency']}, ms): p50 {lat['p50']:.1f}, p95 {lat['p95']:.1f}, "
                      f"p99 {lat['p99']:.1f}, max {lat['max']:.1f} over {lat['count']} frames."]
    return "\n".join(lines) + "\n"


def _grid_layout(bag: Path) -> dict:
    """Node parameters that lay the grid out like the bag's bird's-eye truth (cells compare one to one), or {}
    when the bag has none."""
    from ..data.bag import GRID_TOPIC, bag_topics, read_raw, typestore

    if GRID_TOPIC not in bag_topics(bag):
        return {}
    raw = next(read_raw(bag, [GRID_TOPIC]))
    g = typestore().deserialize_cdr(raw.data, raw.msgtype)
    res, o = float(g.info.resolution), g.info.origin.position
    return {"grid.resolution": res, "grid.x_min": float(o.x), "grid.x_max": float(o.x + g.info.width * res),
            "grid.y_min": float(o.y), "grid.y_max": float(o.y + g.info.height * res),
            "output_frame": g.header.frame_id}


def _pipeline_for(args, predictor):
    """The node's pipeline with ``--params-file``, its grid laid out like the bag's truth (if any)."""
    from ..ros.pipeline import FramePipeline

    layout = _grid_layout(args.bag)
    config = node_config_from_file(args.params_file, **layout)
    return FramePipeline.from_config(predictor, config, args.camera_info_topic), bool(layout)


def _grid_pass(args, pipeline, out_bag: Path, outputs, truth_labels=None):
    """The pipeline over the bag into ``out_bag``, with grid metrics when the bag has bird's-eye truth."""
    from .grid import GridEvaluation

    grid_eval = GridEvaluation()
    stats = write_pipeline_bag(args.bag, pipeline, out_bag, args.image_topic, args.camera_info_topic,
                               outputs=outputs, frames=args.frames, grid_eval=grid_eval, truth_labels=truth_labels)
    print(f"camera pose from the bag's /tf_static in {stats['pose_from_tf']} of {stats['frames']} frames")
    return stats, (grid_eval if grid_eval.frames else None)


def run_bag_pipeline(args) -> int:
    """``panoptic-eval bag --write-bag``: the node's pipeline over the bag, outputs to a bag, then the report."""
    predictor = _predictor(args)
    pipeline, _ = _pipeline_for(args, predictor)
    stats, grid_eval = _grid_pass(args, pipeline, args.write_bag, None)
    print(f"wrote {len(stats['stamps'])} frames of outputs to {args.write_bag} "
          f"({stats['bad_input']} frames with bad input)")
    evaluate_recorded(args.bag, args.write_bag, args.out, f"panoptic_node pipeline ({Path(args.model).name}) on bag "
                      f"{args.bag}", args.image_topic, PREDICTION_TOPIC, args.worst,
                      latencies_ms=stats["processing_ms"], latency_name="pipeline processing (decode to messages)",
                      extra={"model": str(args.model), "output_bag": str(args.write_bag),
                             **_settings(predictor, args)}, frames=args.frames)
    _report_grid(grid_eval, args.out)
    return 0


def run_bag_truth_labels(args) -> int:
    """``panoptic-eval bag --labels truth``: the node's pipeline on the bag's ground-truth labels; grid metrics."""
    import json
    import tempfile

    from ..data.bag import read_bag
    from ..taxonomy import Taxonomy

    first = next(read_bag(args.bag, image_topic=args.image_topic), None)
    taxonomy = (first.taxonomy() if first is not None else None) or Taxonomy.cityscapes()
    labels = TruthLabels(taxonomy)
    pipeline, has_grid = _pipeline_for(args, labels)
    if not has_grid:
        raise ValueError(f"{args.bag} has no bird's-eye truth (/ground_truth/grid): nothing to score "
                         "ground-truth labels against")
    with tempfile.TemporaryDirectory() as tmp:
        out_bag = args.write_bag or Path(tmp) / "outputs"
        stats, grid_eval = _grid_pass(args, pipeline, out_bag, ("grid",), labels)
    if grid_eval is None:
        raise ValueError(f"no frame of {args.bag} had both a grid and bird's-eye truth")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps({"labels": "ground truth", "bag": str(args.bag),
                                                      "frames": stats["frames"]}, indent=2))
    (args.out / "report.md").write_text(f"# panoptic_node pipeline on the ground-truth labels of bag {args.bag}\n\n"
                                        "The grid's own error: projection and footprints, no network.\n")
    _report_grid(grid_eval, args.out)
    return 0


def _report_grid(grid_eval, out: Path) -> None:
    if grid_eval is None:
        return
    grid_eval.add_to_report(out)
    print(grid_eval.summary())


def run_bag_predictions(args) -> int:
    """``panoptic-eval bag --predictions``: recorded node outputs against the bag's ground truth."""
    evaluate_recorded(args.bag, args.predictions, args.out, f"recorded {args.prediction_topic} on bag {args.bag}",
                      args.image_topic, args.prediction_topic, args.worst, frames=args.frames)
    return 0
