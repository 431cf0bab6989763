"""panoptic-eval end to end: a small written data set -> printed table, report folder, same figures as
panopticapi; --help of every subcommand; errors a user can act on."""
from __future__ import annotations

import contextlib
import io
import json

import cv2
import numpy as np
import pytest

from panoptic_ros.evaluation import cli
from panoptic_ros.evaluation.synthetic import make_pair, write_pairs
from panoptic_ros.taxonomy import Taxonomy

# panopticapi's pq_compute never closes its multiprocessing pool; its __del__ complains at collection.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in.*Pool.__del__:pytest.PytestUnraisableExceptionWarning")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    tax = Taxonomy.cityscapes()
    rng = np.random.default_rng(21)
    root = tmp_path_factory.mktemp("coco")
    pairs = [make_pair(rng, 48, 96, tax) for _ in range(10)]
    paths = write_pairs(root, pairs, tax.to_coco_categories())
    images = root / "images"  # camera images named as in the gt JSON's "images", for the drawings
    images.mkdir()
    for image in json.loads(paths["gt_json"].read_text())["images"]:
        cv2.imwrite(str(images / image["file_name"]), rng.integers(0, 255, (48, 96, 3), dtype=np.uint8))
    return {**paths, "images": images}


def png_width(path) -> int:
    return int.from_bytes(path.read_bytes()[16:20], "big")


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("command", ["coco", "cityscapes"])
def test_end_to_end_report_equals_panopticapi(dataset, tmp_path, command):
    from panopticapi.evaluation import pq_compute

    args = [str(dataset[k]) for k in ("gt_json", "gt_dir", "pred_json", "pred_dir")]
    extra = ["--images", str(dataset["images"])] if command == "coco" else []
    code, out, err = run([command, *args, "--out", str(tmp_path / "rep"), "--worst", "3", *extra])
    assert code == 0, err
    assert "All" in out and "Things" in out and "Stuff" in out
    assert ("Category" in out) == (command == "cityscapes")  # cityscapesscripts' per-class rows
    with contextlib.redirect_stdout(io.StringIO()):
        ref = pq_compute(args[0], args[2], args[1], args[3])
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    for group in ("All", "Things", "Stuff"):
        for key in ("pq", "sq", "rq"):
            assert abs(report[group][key] - ref[group][key]) <= 1e-9
        assert report[group]["n"] == ref[group]["n"]
    assert f"{100 * ref['All']['pq']:5.1f}" in out
    for name in ("per_class_pq.png", "worst_frames.png"):
        data = (tmp_path / "rep" / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 2000
    assert len(report["worst_frames"]) == 3 and len(report["frames"]) == 10
    # With --images the grid has an image column: three panels per row instead of two.
    assert png_width(tmp_path / "rep" / "worst_frames.png") == (1080 if command == "coco" else 720)
    assert (tmp_path / "rep" / "report.md").stat().st_size > 500


def test_help_of_every_subcommand():
    for argv in ([], ["coco"], ["cityscapes"], ["bag"]):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
            cli.main([*argv, "--help"])
        assert stop.value.code == 0 and "usage: panoptic-eval" in out.getvalue()


def test_missing_prediction_and_missing_folder_are_reported(dataset, tmp_path):
    pred = json.loads(dataset["pred_json"].read_text())
    pred["annotations"] = pred["annotations"][1:]
    short = tmp_path / "short.json"
    short.write_text(json.dumps(pred))
    code, _, err = run(["coco", str(dataset["gt_json"]), str(dataset["gt_dir"]), str(short), str(dataset["pred_dir"])])
    assert code == 2 and "no prediction for the image" in err
    code, _, err = run(["coco", str(dataset["gt_json"]), str(tmp_path / "nope"), str(dataset["pred_json"]),
                        str(dataset["pred_dir"])])
    assert code == 2 and "does not exist" in err


def test_prediction_png_id_missing_from_json_names_the_image(dataset, tmp_path):
    pred = json.loads(dataset["pred_json"].read_text())
    pred["annotations"][2]["segments_info"] = pred["annotations"][2]["segments_info"][1:]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(pred))
    code, _, err = run(["coco", str(dataset["gt_json"]), str(dataset["gt_dir"]), str(broken), str(dataset["pred_dir"])])
    assert code == 2 and "image '3'" in err and "not in its segments" in err
