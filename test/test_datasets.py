"""COCO and Cityscapes roots as distributed: detection, splits, class lists, and one-line errors."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from _distributed_roots import cityscapes_root, coco_root, world_frames
from panoptic_ros.data.datasets import DataError, detect_layout, open_dataset
from panoptic_ros.data.relabel import relabel
from panoptic_ros.taxonomy import Taxonomy


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("roots")
    return {"coco": coco_root(base / "coco"), "cityscapes": cityscapes_root(base / "cityscapes")}


def test_coco_root_is_read_with_cocos_categories(roots):
    root = roots["coco"]
    assert detect_layout(root) == "coco"
    assert sorted(p.name for p in (root / "val2017").iterdir()) == ["000000000001.jpg", "000000000002.jpg"]
    data = json.loads((root / "annotations" / "panoptic_val2017.json").read_text())
    assert set(data) == {"info", "licenses", "images", "annotations", "categories"}
    assert set(data["categories"][0]) == {"supercategory", "isthing", "id", "name"}  # no colours, as COCO's
    assert max(s["id"] for a in data["annotations"] for s in a["segments_info"]) > 200_000  # not our convention
    reader = open_dataset(root, "val2017")
    assert reader.taxonomy == Taxonomy.coco_panoptic() and len(reader.taxonomy) == 133
    assert reader.taxonomy.by_name["road"].id == 149 and reader.taxonomy.by_name["car"].is_thing
    assert reader.taxonomy.by_name["road"].color == (128, 64, 128)  # panopticapi's colour, the JSON has none
    # Ground truth read back equals the world's frames relabelled (images are JPEG: close, not equal).
    frames, taxonomy = world_frames(2, 100)
    for expected, got in zip(relabel(frames, taxonomy, Taxonomy.coco_panoptic()), reader):
        np.testing.assert_array_equal(got.panoptic, expected.panoptic)
        assert sorted((s.id, s.area, s.iscrowd) for s in got.segments) == \
            sorted((s.id, s.area, s.iscrowd) for s in expected.segments)
        assert np.abs(got.image.astype(int) - expected.image).mean() < 6
    # the default split is the one starting with the asked-for name
    assert open_dataset(root, default_split="train").json_path.name == "panoptic_train2017.json"


def test_coco_root_is_what_panopticapi_reads(roots):
    from panopticapi.evaluation import pq_compute

    ann = roots["coco"] / "annotations"
    with contextlib.redirect_stdout(io.StringIO()):
        result = pq_compute(str(ann / "panoptic_val2017.json"), str(ann / "panoptic_val2017.json"),
                            str(ann / "panoptic_val2017"), str(ann / "panoptic_val2017"))
    assert result["All"]["pq"] == pytest.approx(1.0) and result["All"]["n"] > 5


def test_cityscapes_root_from_createPanopticImgs(roots):
    root = roots["cityscapes"]
    assert detect_layout(root) == "cityscapes"
    data = json.loads((root / "gtFine" / "cityscapes_panoptic_val.json").read_text())
    assert data["images"][0]["file_name"].endswith("_gtFine_leftImg8bit.png")  # the tool's quirk: no such file
    reader = open_dataset(root, "val")
    assert reader.taxonomy == Taxonomy.cityscapes()
    frames, _ = world_frames(2, 100)
    by_name = {got.name: got for got in reader}  # the tool sorts by file name: aachen_* before bremen_*
    assert sorted(by_name) == ["aachen_000100_000001", "bremen_000100_000000"]
    for k, expected in enumerate(frames):
        got = by_name[f"{'aachen' if k % 2 else 'bremen'}_000100_{k:06d}"]
        np.testing.assert_array_equal(got.image, expected.image)
        np.testing.assert_array_equal(got.panoptic // 1000, expected.panoptic // 1000)
    assert len(open_dataset(root, default_split="train")) == 4


def _one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text
    return text


def test_data_errors_name_the_file(roots, tmp_path):
    with pytest.raises(DataError) as err:
        open_dataset(tmp_path / "nowhere")
    assert "nowhere does not exist" in _one_line(err)
    with pytest.raises(DataError) as err:
        open_dataset(tmp_path)
    assert "is not a panoptic data set" in _one_line(err)
    with pytest.raises(DataError) as err:
        open_dataset(roots["coco"], "test2017")
    assert "panoptic_test2017.json" in _one_line(err) and "train2017, val2017" in _one_line(err)
    with pytest.raises(DataError) as err:
        open_dataset(roots["cityscapes"], "trian")
    assert "cityscapes_panoptic_trian.json" in _one_line(err) and "test, train, val" in _one_line(err)
    with pytest.raises(DataError) as err:
        open_dataset(roots["coco"], "val2017", fmt="cityscapes")
    assert "not a Cityscapes root" in _one_line(err)
    # a broken JSON, a missing image, a PNG folder gone
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(roots["coco"], broken)
    (broken / "annotations" / "panoptic_val2017.json").write_text("{not json")
    with pytest.raises(DataError) as err:
        open_dataset(broken, "val2017")
    assert "panoptic_val2017.json: not valid JSON" in _one_line(err)
    (broken / "train2017" / "000000000003.jpg").unlink()
    with pytest.raises(DataError) as err:
        open_dataset(broken, "train2017")
    assert "000000000003.jpg: listed in panoptic_train2017.json but missing" in _one_line(err)
    shutil.rmtree(broken / "annotations" / "panoptic_train2017")
    with pytest.raises(DataError) as err:
        open_dataset(broken, "train2017")
    assert "annotations/panoptic_train2017: panoptic PNG folder does not exist" in _one_line(err)
