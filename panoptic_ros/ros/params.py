"""The node's parameters, declared in one table: names, defaults, descriptions, ranges, choices.

The table drives ``declare_parameter`` (with a ``ParameterDescriptor`` each), ``panoptic_node --help`` and
the cross-check against ``config/panoptic.yaml`` in the tests, so the three never disagree. No rclpy import
at module level: :class:`NodeConfig` is built and validated without ROS.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..bev import DEFAULT_FOOTPRINT_DEPTHS
from ..fusion import FUSIONS
from ..geometry import GridSpec, Pose

BACKENDS = ("auto", "tensorrt", "cuda", "openvino", "onnxruntime", "cpu")  # = runtime AUTO_ORDER + auto (tested)
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")  # = runtime PRECISIONS + auto
INPUT_QOS = ("sensor_data", "reliable")
IMAGE_TRANSPORTS = ("raw", "compressed")
CAMERA_POSE_SOURCES = ("auto", "parameters", "tf")
OVERLAP_POLICIES = ("highest_confidence", "smallest_first", "closest_center")  # = head.POLICIES (tested)
HEAD_STRIDES = (1, 2, 4)  # = predictor.HEAD_STRIDES (tested)


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    range: tuple[float, float] | None = None  # inclusive bounds for numbers
    choices: tuple[Any, ...] | None = None
    constraints: str = ""
    item_type: type | None = None  # element type of a list parameter whose default is empty


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("model_path", "", "Checkpoint (.pt) to load; empty = the shipped model in share/panoptic_ros/models."),
    ParamSpec("backend", "auto", "Inference backend; auto: tensorrt or cuda if one works, else the fastest correct "
              "of openvino, onnxruntime, cpu (and their precisions) by a timed probe cached per machine and model.",
              choices=BACKENDS),
    ParamSpec("precision", "auto", "Network precision; auto = the backend's default (auto backend: the probe's "
              "fastest correct; int8 only with a calibrated model from panoptic-export --int8).",
              choices=PRECISIONS),
    ParamSpec("threads", 0, "CPU threads for torch, ONNX Runtime and OpenVINO alike; 0 = the physical cores.",
              range=(0, 256)),
    ParamSpec("input_size", [0, 0], "Network input [height, width] in pixels, every image resized to it; [0, 0] = "
              "each image's own aspect ratio at the checkpoint's pixel budget (sides multiples of 32; 640x480 "
              "images run at 320x224 with the shipped 384x192 model). Each input size builds its backend once.",
              constraints="two integers, both 0 or both positive multiples of 32"),
    ParamSpec("score_threshold", -1.0, "Detections below this score are dropped before the panoptic head; "
              "-1 = the model's value chosen on validation data (the paper's 0.4 if it has none).",
              range=(-1.0, 1.0)),
    ParamSpec("fusion", "parameter_free",
              "Panoptic fusion of semantic logits and detections (README 'Fusions'): parameter_free (the head "
              "below), heuristic, center_vote, or learned_conv / hps / hps_isi with a checkpoint trained for them.",
              choices=FUSIONS),
    ParamSpec("overlap_policy", "closest_center",
              "How the head splits pixels claimed by two boxes of one class.", choices=OVERLAP_POLICIES),
    ParamSpec("unknown", True, "Label thing-class pixels that no detection explains as unknown (void)."),
    ParamSpec("stuff_area_threshold", -1,
              "Stuff segments smaller than this many pixels (network input scale) become void; "
              "-1 = the model's value chosen on validation data, else the paper's 4096 px scaled to the input "
              "size.", range=(-1, 1 << 24)),
    ParamSpec("head_stride", 1, "Run the panoptic head on a grid this many times coarser than the network input "
              "(1, 2 or 4) and upscale its ids: 1 = the exact head; 2 = about half the head's cost at a small PQ "
              "cost (README).", range=(1, 4), choices=HEAD_STRIDES),
    ParamSpec("camera_frame", "", "frame_id of the image outputs; empty = the input image's frame_id."),
    ParamSpec("output_frame", "base_link", "frame_id of the occupancy grid and the footprint markers."),
    ParamSpec("camera_pose_source", "auto",
              "Where the camera pose in output_frame comes from: tf = look up output_frame <- the image's frame "
              "(camera_frame if set, else header.frame_id; an optical frame, z forward) in TF at the image's stamp "
              "(tf2_ros' buffer when it can be imported, else the node's built-in buffer of /tf and /tf_static); "
              "a frame without its transform gets no grid. auto = the same, but a frame without its transform "
              "uses the camera.* values, with a warning and a diagnostics WARN. parameters = always the camera.* "
              "values.", choices=CAMERA_POSE_SOURCES),
    ParamSpec("tf_timeout", 0.05, "Seconds to wait for the camera's transform in TF before that frame goes "
              "without it (tf2_ros' buffer only; the built-in buffer does not wait).", range=(0.0, 10.0)),
    ParamSpec("tf_buffer_s", 10.0, "Seconds of /tf history the built-in TF buffer keeps (used when tf2_ros cannot "
              "be imported; /tf_static is kept forever).", range=(0.1, 3600.0)),
    ParamSpec("camera.x", 1.5, "Camera body position in output_frame, metres (forward).", range=(-100.0, 100.0)),
    ParamSpec("camera.y", 0.0, "Camera body position in output_frame, metres (left).", range=(-100.0, 100.0)),
    ParamSpec("camera.z", 1.5, "Camera body height above the ground plane z = 0 of output_frame, metres.",
              range=(0.01, 100.0)),
    ParamSpec("camera.roll", 0.0, "Camera body roll in output_frame, radians.", range=(-3.1416, 3.1416)),
    ParamSpec("camera.pitch", 0.0, "Camera body pitch, radians; positive looks down.", range=(-1.5708, 1.5708)),
    ParamSpec("camera.yaw", 0.0, "Camera body yaw, radians; positive looks left.", range=(-3.1416, 3.1416)),
    ParamSpec("grid.resolution", 0.2, "Occupancy grid cell size, metres.", range=(0.01, 10.0)),
    ParamSpec("grid.x_min", 0.0, "Grid extent along x (forward), metres.", range=(-1000.0, 1000.0)),
    ParamSpec("grid.x_max", 40.0, "Grid extent along x (forward), metres.", range=(-1000.0, 1000.0)),
    ParamSpec("grid.y_min", -20.0, "Grid extent along y (left), metres.", range=(-1000.0, 1000.0)),
    ParamSpec("grid.y_max", 20.0, "Grid extent along y (left), metres.", range=(-1000.0, 1000.0)),
    ParamSpec("grid.max_range", 40.0, "Cells farther than this from the camera stay unknown, metres.",
              range=(0.1, 1000.0)),
    ParamSpec("grid.transient_local", False,
              "Publish the grid with transient-local durability (late subscribers get the last grid)."),
    ParamSpec("free_classes", [],
              "Category names whose ground cells are free (occupancy 0); empty = the model's classes named in "
              "panoptic_ros/ground_classes.py (Cityscapes: road, sidewalk, terrain; COCO-panoptic: road, "
              "pavement-merged, dirt-merged, grass-merged, ...).", item_type=str),
    ParamSpec("obstacle_classes", [],
              "Stuff category names that occupy the cells where they meet the ground (things always do); empty = "
              "the model's classes named in panoptic_ros/ground_classes.py (Cityscapes: building, wall, fence, "
              "pole, vegetation, traffic light, traffic sign; COCO-panoptic: building-other-merged, "
              "wall-other-merged, fence-merged, tree-merged, ...).", item_type=str),
    ParamSpec("ego_mask", "", "PNG of the vehicle's own body as the camera sees it (non-zero = body; the image's "
              "size, else resized with nearest neighbour); those pixels are void (id 0) in every output and never "
              "make a grid cell free or occupied. Empty = no mask."),
    *(ParamSpec(f"footprint_depth.{name.replace(' ', '_')}", depth,
                f"How far a {name} reaches behind its ground contact along the camera ray, metres (occupied where "
                f"the camera sees it); 0 = the contact cell only.", range=(0.0, 100.0))
      for name, depth in DEFAULT_FOOTPRINT_DEPTHS.items()),
    ParamSpec("input_qos", "sensor_data",
              "QoS of the image subscriptions: sensor_data (best effort, depth 1) or reliable (depth 1).",
              choices=INPUT_QOS),
    ParamSpec("image_transport", "raw",
              "raw: subscribe sensor_msgs/Image on 'image'; compressed: sensor_msgs/CompressedImage on "
              "'image/compressed' (image_transport naming).", choices=IMAGE_TRANSPORTS),
    ParamSpec("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", range=(0.05, 60.0)),
    ParamSpec("max_consecutive_failures", 0,
              "Stop the node (FATAL log line, exit code 1) after this many frames in a row failed in the "
              "inference backend (exceptions, NaN / inf output); 0 = never stop, keep reporting and retrying.",
              range=(0, 1_000_000)),
)

SPEC_BY_NAME = {p.name: p for p in PARAMETERS}


@dataclass(frozen=True)
class NodeConfig:
    """The validated parameter values the node runs with."""

    model_path: str
    backend: str
    precision: str
    threads: int
    input_size: tuple[int, int] | None
    score_threshold: float | None
    overlap_policy: str
    unknown: bool
    stuff_area_threshold: int | None
    camera_frame: str
    output_frame: str
    camera_pose: Pose
    grid: GridSpec
    max_range: float
    grid_transient_local: bool
    free_classes: tuple[str, ...]
    obstacle_classes: tuple[str, ...]
    input_qos: str
    image_transport: str
    diagnostics_period: float
    camera_pose_source: str = "auto"
    tf_timeout: float = 0.05
    tf_buffer_s: float = 10.0
    max_consecutive_failures: int = 0
    head_stride: int = 1
    ego_mask: str = ""
    footprint_depths: tuple[tuple[str, float], ...] = tuple(DEFAULT_FOOTPRINT_DEPTHS.items())  # (class, metres)
    fusion: str = "parameter_free"

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "NodeConfig":
        """Validate ``values`` (parameter name -> value; missing names take their defaults).

        Raises ValueError naming the parameter, the value and what is allowed.
        """
        unknown = set(values) - set(SPEC_BY_NAME)
        if unknown:
            raise ValueError(f"unknown parameters {sorted(unknown)}; known: {sorted(SPEC_BY_NAME)}")
        v = {p.name: values.get(p.name, p.default) for p in PARAMETERS}
        for spec in PARAMETERS:
            _check(spec, v[spec.name])
        size = [int(s) for s in v["input_size"]]
        if len(size) != 2 or (any(size) and not all(s > 0 and s % 32 == 0 for s in size)):
            raise ValueError(f"parameter input_size={size}: need [0, 0] or [height, width], positive multiples of 32")
        grid = GridSpec(float(v["grid.resolution"]), float(v["grid.x_min"]), float(v["grid.x_max"]),
                        float(v["grid.y_min"]), float(v["grid.y_max"]), str(v["output_frame"]))
        pose = Pose(*(float(v[f"camera.{k}"]) for k in ("x", "y", "z", "roll", "pitch", "yaw")))
        if not str(v["output_frame"]):
            raise ValueError("parameter output_frame must not be empty")
        return cls(
            model_path=str(v["model_path"]), backend=str(v["backend"]), precision=str(v["precision"]),
            threads=int(v["threads"]),
            input_size=tuple(size) if any(size) else None, score_threshold=None if float(v["score_threshold"]) < 0 else float(v["score_threshold"]),
            overlap_policy=str(v["overlap_policy"]), unknown=bool(v["unknown"]),
            stuff_area_threshold=None if int(v["stuff_area_threshold"]) < 0 else int(v["stuff_area_threshold"]),
            camera_frame=str(v["camera_frame"]), output_frame=str(v["output_frame"]), camera_pose=pose,
            grid=grid, max_range=float(v["grid.max_range"]), grid_transient_local=bool(v["grid.transient_local"]),
            free_classes=tuple(v["free_classes"]), obstacle_classes=tuple(v["obstacle_classes"]),
            input_qos=str(v["input_qos"]), image_transport=str(v["image_transport"]),
            diagnostics_period=float(v["diagnostics_period"]), camera_pose_source=str(v["camera_pose_source"]),
            tf_timeout=float(v["tf_timeout"]), tf_buffer_s=float(v["tf_buffer_s"]),
            max_consecutive_failures=int(v["max_consecutive_failures"]),
            head_stride=int(v["head_stride"]), ego_mask=str(v["ego_mask"]),
            footprint_depths=tuple((name, float(v[f"footprint_depth.{name.replace(' ', '_')}"]))
                                   for name in DEFAULT_FOOTPRINT_DEPTHS),
            fusion=str(v["fusion"]))


def _check(spec: ParamSpec, value: Any) -> None:
    default = spec.default
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:  # lists
        item = spec.item_type or type(default[0])
        ok = isinstance(value, (list, tuple)) and all(isinstance(x, item) for x in value)
    if not ok:
        raise ValueError(f"parameter {spec.name}={value!r} has the wrong type; expected like {default!r}")
    if spec.range is not None and not spec.range[0] <= value <= spec.range[1]:
        raise ValueError(f"parameter {spec.name}={value!r} is outside [{spec.range[0]}, {spec.range[1]}]")
    if spec.choices is not None and value not in spec.choices:
        raise ValueError(f"parameter {spec.name}={value!r}: choose one of {', '.join(map(str, spec.choices))}")


def help_text() -> str:
    """The parameter list for ``panoptic_node --help``."""
    lines = ["parameters (set with --ros-args -p name:=value or --params-file config/panoptic.yaml):"]
    for p in PARAMETERS:
        extra = f" {{{', '.join(map(str, p.choices))}}}" if p.choices else (f" [{p.range[0]}, {p.range[1]}]" if p.range else "")
        lines.append(f"  {p.name} (default {p.default!r}){extra}\n      {p.description}")
    return "\n".join(lines)
