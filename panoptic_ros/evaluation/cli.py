"""``panoptic-eval``: panoptic quality of predictions against ground truth, with a report folder.

    panoptic-eval coco GT_JSON GT_DIR PRED_JSON PRED_DIR --out DIR        # panopticapi's four inputs
    panoptic-eval cityscapes GT_JSON GT_DIR PRED_JSON PRED_DIR --out DIR  # Cityscapes panoptic (labelIds)
    panoptic-eval model CKPT DATA_ROOT --split val2017 --out DIR          # predictor over a COCO / Cityscapes root
    panoptic-eval bag BAG --model CKPT --out DIR                          # predictor over a rosbag2
    panoptic-eval bag BAG --model CKPT --out DIR --write-bag OUT_BAG      # the node's pipeline, outputs to a bag
    panoptic-eval bag BAG --predictions REC_BAG --out DIR                 # recorded node outputs (live replay)
    panoptic-eval bag BAG --labels truth --out DIR                        # the grid from the bag's own labels
    panoptic-eval compare DATA_DIR --model CKPT [--trained NAME=CKPT] --out DIR  # every fusion, one table

With --model on a bag with bird's-eye truth (/ground_truth/grid of panoptic-world bag), the node's pipeline also
makes every frame's grid, with the camera pose from the bag's /tf_static and /tf (the camera.* parameters only without
it), laid out like the truth: report.json gets `grid` (free IoU per range band 0-10 / 10-20 / 20-40 m, occupied
recall and precision within 0-20 m) and report.md a picture of the worst frame's grids.

Prints panopticapi's table and writes DIR/report.json, report.md, per_class_pq.png, worst_frames.png.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from ..taxonomy import Taxonomy
from .files import PanopticFolders
from .pq import format_table
from .report import to_convention, worst_frame_names, write_report
from .run import (add_predictor_args, run_bag, run_bag_pipeline, run_bag_predictions, run_bag_truth_labels,
                  run_model)


def _find_image(images_dir: Path | None, gt_json: dict, image_id) -> np.ndarray | None:
    """The RGB image of ``image_id`` from ``images_dir`` (file name from the gt JSON's ``images``)."""
    if images_dir is None:
        return None
    import cv2

    names = [im.get("file_name") for im in gt_json.get("images", []) if im.get("id") == image_id]
    for name in names + [f"{image_id}.jpg", f"{image_id}.png", f"{image_id}_leftImg8bit.png"]:
        matches = list(images_dir.rglob(Path(name).name)) if name else []
        if matches:
            bgr = cv2.imread(str(matches[0]), cv2.IMREAD_COLOR)
            if bgr is not None:
                return bgr[..., ::-1].copy()
    return None


def evaluate_and_report(folders: PanopticFolders, out: Path | None, title: str, workers: int | None,
                        worst: int, images_dir: Path | None, per_class_table: bool) -> dict:
    acc = folders.evaluate(workers=workers)
    result = acc.result()
    print(format_table(result, per_class=per_class_table))
    if out is None:
        return result
    taxonomy = Taxonomy.from_coco_categories(folders.categories)
    index = {folders.name(pair): k for k, pair in enumerate(folders.pairs)}
    worst_frames = []
    for name in worst_frame_names(acc.frames, worst):
        k = index[name]
        gt, gt_segments, pred, pred_segments = folders.read(k)
        stats = next(f for f in acc.frames if f["name"] == name)
        image = _find_image(images_dir, folders.gt_json, folders.pairs[k][0]["image_id"])
        if image is not None and image.shape[:2] != gt.shape:
            print(f"panoptic-eval: image of {name} is {image.shape[1]}x{image.shape[0]}, its panoptic PNG "
                  f"{gt.shape[1]}x{gt.shape[0]}; drawn without it", file=sys.stderr)
            image = None
        worst_frames.append((name, image, to_convention(gt, gt_segments, taxonomy),
                             to_convention(pred, pred_segments, taxonomy), stats["pq"]))
    paths = write_report(out, result, acc.frames, worst_frames=worst_frames, title=title, taxonomy=taxonomy,
                         extra={"gt_json": str(folders.gt_json_path), "gt_dir": str(folders.gt_dir),
                                "pred_json": str(folders.pred_json_path), "pred_dir": str(folders.pred_dir)})
    print(f"report: {paths['md']}")
    return result


def _add_folder_args(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("gt_json", type=Path, help="ground-truth COCO-panoptic JSON (its 'categories' are evaluated)")
    sub.add_argument("gt_dir", type=Path, help="folder of ground-truth PNGs")
    sub.add_argument("pred_json", type=Path, help="prediction COCO-panoptic JSON (matched by image_id)")
    sub.add_argument("pred_dir", type=Path, help="folder of prediction PNGs")
    sub.add_argument("--out", type=Path, default=None, help="report folder (default: print only)")
    sub.add_argument("--workers", type=int, default=None, help="decoding threads (default: CPU count)")
    sub.add_argument("--worst", type=int, default=6, help="how many lowest-PQ frames to draw")
    sub.add_argument("--images", type=Path, default=None, help="folder with the RGB images, for the drawings")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="panoptic-eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subs = parser.add_subparsers(dest="command", required=True)
    coco = subs.add_parser("coco", help="COCO-panoptic JSON + PNG folders (same inputs as panopticapi pq_compute)",
                           description="PQ / SQ / RQ exactly as panopticapi's pq_compute, plus a report.")
    _add_folder_args(coco)
    city = subs.add_parser("cityscapes", help="Cityscapes panoptic (cityscapes_panoptic_val.json + folder)",
                           description="PQ as cityscapesscripts' evalPanopticSemanticLabeling (category ids = "
                                       "Cityscapes labelIds), with its per-class table, plus a report.")
    _add_folder_args(city)
    bag = subs.add_parser("bag", help="run the predictor (or the node's pipeline) over a rosbag2 with ground truth, "
                                      "or evaluate recorded node outputs",
                          description="Runs the predictor over a rosbag2 holding images and panoptic ground "
                                      "truth, and writes the same report with latencies. With --write-bag, runs "
                                      "panoptic_node's whole per-frame pipeline instead and writes every output to "
                                      "a new bag (log time = input stamp). With --predictions, evaluates "
                                      "PanopticSegmentation outputs recorded during a live replay (panoptic-replay "
                                      "--record), matched by header stamp: PQ, dropped frames, end-to-end latency.")
    bag.add_argument("bag", type=Path, help="rosbag2 folder (images + ground truth, e.g. from panoptic-world bag)")
    bag.add_argument("--model", type=Path, default=None, help="checkpoint of the network (not with --predictions)")
    bag.add_argument("--out", type=Path, required=True, help="report folder")
    bag.add_argument("--image-topic", default="/camera/image_raw", help="camera image topic of the bag")
    bag.add_argument("--camera-info-topic", default="/camera/camera_info", help="CameraInfo topic (--write-bag)")
    bag.add_argument("--write-bag", type=Path, default=None, metavar="OUT_BAG",
                     help="run the node's pipeline and write all its outputs to this new bag (needs rclpy)")
    bag.add_argument("--params-file", type=Path, default=None,
                     help="node parameters YAML for --write-bag (camera pose, grid, frames); default: the node's "
                          "defaults. Model settings come from the options below")
    bag.add_argument("--labels", choices=("model", "truth"), default="model",
                     help="truth: run the node's pipeline on the bag's ground-truth panoptic labels instead of a "
                          "model (the grid's own error; needs /ground_truth/grid); writes only the grid metrics")
    bag.add_argument("--predictions", type=Path, default=None, metavar="REC_BAG",
                     help="bag of recorded node outputs to evaluate instead of running a model")
    bag.add_argument("--prediction-topic", default="/panoptic_node/panoptic",
                     help="PanopticSegmentation topic in --predictions (default /panoptic_node/panoptic)")
    add_predictor_args(bag)
    model = subs.add_parser("model", help="run the predictor over a COCO- or Cityscapes-panoptic folder",
                            description="Runs a checkpoint over every frame of a data-set folder and writes the "
                                        "report with latencies (how the model card's figures are made).")
    model.add_argument("model", type=Path, help="checkpoint of the network (.pt from panoptic-train)")
    model.add_argument("data", type=Path, help="a COCO root (annotations/panoptic_<split>.json, "
                                               "annotations/panoptic_<split>/, <split>/), a Cityscapes root "
                                               "(gtFine/, leftImg8bit/) or a panoptic-world folder "
                                               "(annotations.json, panoptic/, images/)")
    model.add_argument("--format", choices=("auto", "coco", "cityscapes"), default="auto",
                       help="data layout (default: detected from the files)")
    model.add_argument("--split", default=None,
                       help="split of a COCO or Cityscapes root (default: the one starting with 'val')")
    model.add_argument("--out", type=Path, default=None, help="report folder (default: print only)")
    add_predictor_args(model)
    from .compare import add_compare_parser

    add_compare_parser(subs)
    return parser


def show_runtime_log() -> None:
    """The runtime's INFO lines (a first-run ONNX build says so and how long it takes) on stderr."""
    runtime = logging.getLogger("panoptic_ros.runtime")
    if not any(getattr(h, "_panoptic_eval", False) for h in runtime.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("panoptic-eval: %(message)s"))
        handler._panoptic_eval = True
        runtime.addHandler(handler)
        runtime.setLevel(logging.INFO)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    show_runtime_log()
    try:
        if args.command == "bag":
            if args.labels == "truth":
                if args.model is not None or args.predictions is not None:
                    raise ValueError("bag: --labels truth projects the bag's own labels; no --model or --predictions")
                return run_bag_truth_labels(args)
            if (args.predictions is None) == (args.model is None):
                raise ValueError("bag: give --model (run a model) or --predictions (evaluate recorded outputs)")
            if args.write_bag is not None and args.predictions is not None:
                raise ValueError("bag: --write-bag runs the model; it does not go with --predictions")
            if args.predictions is not None:
                return run_bag_predictions(args)
            return (run_bag_pipeline if args.write_bag is not None else run_bag)(args)
        if args.command == "model":
            return run_model(args)
        if args.command == "compare":
            from .compare import compare

            compare(args)
            return 0
        folders = PanopticFolders(args.gt_json, args.gt_dir, args.pred_json, args.pred_dir)
        if args.command == "cityscapes":
            labels = {c.id: c.name for c in Taxonomy.cityscapes().categories}
            odd = [c["id"] for c in folders.categories if labels.get(c["id"]) != c.get("name")]
            if odd:
                print(f"panoptic-eval: warning: categories {odd} are not Cityscapes labelIds with their "
                      "names; evaluating them as given", file=sys.stderr)
        title = ("Cityscapes panoptic evaluation" if args.command == "cityscapes" else "COCO panoptic evaluation")
        evaluate_and_report(folders, args.out, title, args.workers, args.worst, args.images,
                            per_class_table=args.command == "cityscapes")
    except (ValueError, KeyError, FileNotFoundError, FileExistsError) as err:  # incl. DataError, CheckpointError
        print(f"panoptic-eval: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
