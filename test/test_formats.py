"""COCO-panoptic and Cityscapes-panoptic writers/readers, checked against the reference evaluators."""
import contextlib
import io
import json
import shutil

import cv2
import numpy as np
import pytest

from _samples import CITYSCAPES, make_sample
from panoptic_ros.data.cityscapes import CityscapesPanopticReader, write_cityscapes_panoptic
from panoptic_ros.data.coco import CocoPanopticReader, convention_ids, ids_to_rgb, rgb_to_ids, write_coco_panoptic
from panoptic_ros.data.frame import Sample
from panoptic_ros.panoptic import segments_from_ids
from panoptic_ros.taxonomy import Taxonomy


def quiet(fn, *args):
    """The reference evaluators print per-core progress; keep the test log readable."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def seg_table(segments):
    return sorted((s.id, s.category_id, s.is_thing, s.area, tuple(s.bbox), s.iscrowd) for s in segments)


def assert_same_sample(a: Sample, b: Sample, exact_crowd_ids=True):
    np.testing.assert_array_equal(a.image, b.image)
    if exact_crowd_ids:
        np.testing.assert_array_equal(a.panoptic, b.panoptic)
        assert seg_table(a.segments) == seg_table(b.segments)
        return
    # Crowd regions may be renumbered: ids must correspond one to one, equal except for crowd segments.
    pairs = np.unique(np.stack([a.panoptic.ravel(), b.panoptic.ravel()]), axis=1).T
    assert len(set(pairs[:, 0])) == len(set(pairs[:, 1])) == len(pairs)
    crowd_a = {s.id for s in a.segments if s.iscrowd}
    rename = {int(x): int(y) for x, y in pairs}
    assert all(x == y for x, y in rename.items() if x not in crowd_a)
    renamed = sorted((rename[s.id], s.category_id, s.is_thing, s.area, tuple(s.bbox), s.iscrowd) for s in a.segments)
    assert renamed == seg_table(b.segments)


@pytest.fixture(scope="module")
def samples():
    return [make_sample(i, name=f"img{i:03d}") for i in range(4)]


def test_png_codec_matches_panopticapi():
    from panopticapi.utils import id2rgb, rgb2id

    ids = np.array([[0, 7000, 26003], [33999, 254999, 16_777_215]])
    np.testing.assert_array_equal(ids_to_rgb(ids), id2rgb(ids))
    np.testing.assert_array_equal(rgb_to_ids(ids_to_rgb(ids)), rgb2id(id2rgb(ids)))
    with pytest.raises(ValueError, match="0..16777215"):
        ids_to_rgb(np.array([[-1]]))


def test_coco_round_trip(tmp_path, samples):
    json_path = write_coco_panoptic(tmp_path / "coco", samples, CITYSCAPES, progress=False)
    assert json_path == tmp_path / "coco" / "annotations.json"
    assert sorted(p.name for p in (tmp_path / "coco" / "panoptic").iterdir()) == [f"img{i:03d}.png" for i in range(4)]
    reader = CocoPanopticReader(json_path)
    assert len(reader) == 4 and reader.taxonomy == CITYSCAPES and reader.taxonomy.name == "cityscapes"
    for original, back in zip(samples, reader):
        assert back.name == original.name and back.panoptic.dtype == np.int32
        assert any(s.iscrowd for s in back.segments) and (back.panoptic == 0).any()
        assert_same_sample(original, back)
    with pytest.raises(IndexError):
        reader[4]


def test_coco_accepted_by_panopticapi_pq(tmp_path, samples):
    from panopticapi.evaluation import pq_compute

    gt = write_coco_panoptic(tmp_path / "gt", samples, CITYSCAPES, progress=False)
    result = quiet(pq_compute, str(gt), str(gt), str(tmp_path / "gt" / "panoptic"), str(tmp_path / "gt" / "panoptic"))
    for group in ("All", "Things", "Stuff"):
        assert result[group]["pq"] == pytest.approx(1.0) and result[group]["n"] > 0
    # The evaluator is not trivially 1: a prediction that loses instances (merged into void) scores below 1.
    pred = []
    for s in samples:
        ids = s.panoptic.copy()
        for seg in s.segments:
            if seg.is_thing and not seg.iscrowd and seg.id % 2:
                ids[ids == seg.id] = 0
        pred.append(Sample(s.image, ids, segments_from_ids(ids, CITYSCAPES, crowd_ids=[x.id for x in s.segments
                                                                                      if x.iscrowd]), s.name))
    pj = write_coco_panoptic(tmp_path / "pred", pred, CITYSCAPES, progress=False)
    result = quiet(pq_compute, str(gt), str(pj), str(tmp_path / "gt" / "panoptic"), str(tmp_path / "pred" / "panoptic"))
    assert result["Things"]["pq"] < 0.9 and result["Stuff"]["pq"] == pytest.approx(1.0)


def test_cityscapes_accepted_by_cityscapesscripts(tmp_path, samples):
    from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import evaluatePanoptic

    json_path = write_cityscapes_panoptic(tmp_path / "cs", samples, CITYSCAPES, split="val", progress=False)
    assert json_path == tmp_path / "cs" / "gtFine" / "cityscapes_panoptic_val.json"
    folder = str(json_path.with_suffix(""))
    result = quiet(evaluatePanoptic, str(json_path), folder, str(json_path), folder, str(tmp_path / "res.json"))
    for group in ("All", "Things", "Stuff"):
        assert result[group]["pq"] == pytest.approx(1.0) and result[group]["n"] > 0
    data = json.loads(json_path.read_text())
    first = data["annotations"][0]
    assert first["image_id"] == "synthetic_000000_000000"
    assert first["file_name"] == "synthetic_000000_000000_gtFine_panoptic.png"
    # Cityscapes id conventions: stuff = labelId, things = labelId * 1000 + k, a lone crowd region = labelId.
    stuff_ids = {s["id"] for s in first["segments_info"] if s["category_id"] < 24}
    assert stuff_ids and all(i == s["category_id"] for s in first["segments_info"] for i in [s["id"]]
                             if i in stuff_ids)
    assert all(s["id"] == s["category_id"] for s in first["segments_info"] if s["iscrowd"])
    assert all(s["id"] // 1000 == s["category_id"] for s in first["segments_info"]
               if s["category_id"] >= 24 and not s["iscrowd"])
    assert (tmp_path / "cs/leftImg8bit/val/synthetic/synthetic_000000_000000_leftImg8bit.png").is_file()
    label_ids = cv2.imread(str(tmp_path / "cs/gtFine/val/synthetic/synthetic_000000_000000_gtFine_labelIds.png"),
                           cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(label_ids, samples[0].panoptic // 1000)


def test_cityscapes_round_trip(tmp_path, samples):
    write_cityscapes_panoptic(tmp_path / "cs", samples, CITYSCAPES, split="train", progress=False)
    reader = CityscapesPanopticReader(tmp_path / "cs", "train")
    assert len(reader) == len(samples) and reader.taxonomy == CITYSCAPES
    for i, (original, back) in enumerate(zip(samples, reader)):
        assert back.name == f"synthetic_000000_{i:06d}"
        assert_same_sample(original, back, exact_crowd_ids=False)
    # Cityscapes' instanceIds hold one crowd region per category (id = labelId): several become one segment.
    many = [make_sample(9, crowd_per_category=2, name="aachen_000001_000019")]
    write_cityscapes_panoptic(tmp_path / "cs2", many, CITYSCAPES, progress=False)
    back = CityscapesPanopticReader(tmp_path / "cs2", "val")[0]
    assert back.name == "aachen_000001_000019"
    crowd_categories = {s.category_id for s in many[0].segments if s.iscrowd}
    assert sorted(s.category_id for s in back.segments if s.iscrowd) == sorted(crowd_categories)
    np.testing.assert_array_equal(back.panoptic > 0, many[0].panoptic > 0)
    np.testing.assert_array_equal(back.panoptic // 1000, many[0].panoptic // 1000)
    assert (tmp_path / "cs2/leftImg8bit/val/aachen/aachen_000001_000019_leftImg8bit.png").is_file()


def test_reader_converts_real_coco_ids(tmp_path):
    """A COCO-style set with arbitrary 24-bit ids, another taxonomy, JPEG images and COCO's folder naming."""
    categories = [{"id": 1, "name": "person", "isthing": 1, "color": [220, 20, 60], "supercategory": "person"},
                  {"id": 3, "name": "car", "isthing": 1, "color": [0, 0, 142], "supercategory": "vehicle"},
                  {"id": 184, "name": "tree-merged", "isthing": 0, "color": [107, 142, 35], "supercategory": "plant"},
                  {"id": 187, "name": "sky-other-merged", "isthing": 0, "supercategory": "sky"}]
    raw = np.zeros((20, 30), np.int64)
    raw[:8] = 4_000_123  # sky
    raw[8:] = 9_876_543  # tree
    raw[10:15, 2:6] = 1_234_567  # person
    raw[10:15, 8:12] = 7_654_321  # person (crowd)
    raw[12:18, 14:25] = 42  # car
    raw[0, 0] = 0
    ann_dir = tmp_path / "panoptic_val2017"
    ann_dir.mkdir()
    img_dir = tmp_path / "val2017"
    img_dir.mkdir()
    cv2.imwrite(str(ann_dir / "000000000139.png"), ids_to_rgb(raw)[..., ::-1])
    image = np.full((20, 30, 3), 128, np.uint8)
    cv2.imwrite(str(img_dir / "000000000139.jpg"), image)
    seg = lambda i, c, crowd=0: {"id": i, "category_id": c, "iscrowd": crowd, "area": 0, "bbox": [0, 0, 0, 0]}
    data = {"images": [{"id": 139, "file_name": "000000000139.jpg", "height": 20, "width": 30}],
            "annotations": [{"image_id": 139, "file_name": "000000000139.png",
                             "segments_info": [seg(4_000_123, 187), seg(9_876_543, 184), seg(1_234_567, 1),
                                               seg(7_654_321, 1, 1), seg(42, 3)]}],
            "categories": categories}
    json_path = tmp_path / "panoptic_val2017.json"
    json_path.write_text(json.dumps(data))
    reader = CocoPanopticReader(json_path, image_dir=img_dir)
    assert reader.taxonomy.names() == ["person", "car", "tree-merged", "sky-other-merged"]
    sample = reader[0]
    assert sample.image.shape == (20, 30, 3)
    expected = {4_000_123: 187_000, 9_876_543: 184_000, 1_234_567: 1001, 7_654_321: 1002, 42: 3001, 0: 0}
    np.testing.assert_array_equal(sample.panoptic, np.vectorize(expected.get)(raw))
    crowd = [s for s in sample.segments if s.iscrowd]
    assert [(s.id, s.area, s.bbox) for s in crowd] == [(1002, 20, (8, 10, 4, 5))]
    assert {s.id: s.is_thing for s in sample.segments} == {1001: True, 1002: True, 3001: True, 184_000: False,
                                                           187_000: False}


def test_convention_ids_rules():
    tax = CITYSCAPES
    assert convention_ids([{"id": 7000, "category_id": 7}, {"id": 26005, "category_id": 26}], tax) == \
        {7000: 7000, 26005: 26005}
    # Ids of another convention are renumbered; instance numbers already taken are skipped.
    assert convention_ids([{"id": 26, "category_id": 26}, {"id": 26001, "category_id": 26},
                           {"id": 11, "category_id": 11}], tax) == {26: 26002, 26001: 26001, 11: 11000}
    with pytest.raises(ValueError, match="two segments of stuff category 7"):
        convention_ids([{"id": 1, "category_id": 7}, {"id": 2, "category_id": 7}], tax)
    with pytest.raises(ValueError, match="not in the categories"):
        convention_ids([{"id": 5000, "category_id": 5}], tax)
    with pytest.raises(ValueError, match="more than 999"):
        convention_ids([{"id": i, "category_id": 26} for i in range(1, 1001)], tax)


def test_reader_rejects_inconsistent_files(tmp_path, samples):
    json_path = write_coco_panoptic(tmp_path / "c", samples[:1], CITYSCAPES, progress=False)
    data = json.loads(json_path.read_text())
    dropped = data["annotations"][0]["segments_info"].pop()
    json_path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"segment id {dropped['id']} is in the PNG but not in segments_info"):
        CocoPanopticReader(json_path)[0]
    data["annotations"][0]["segments_info"] += [dropped, dict(dropped, id=26999, category_id=26)]
    json_path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"\[26999\] are in segments_info but have no pixels"):
        CocoPanopticReader(json_path)[0]
    with pytest.raises(FileNotFoundError, match="image_dir"):
        CocoPanopticReader(json_path, image_dir=tmp_path / "nowhere")


def test_writer_rejects_inconsistent_samples(tmp_path):
    s = make_sample(3)
    with pytest.raises(ValueError, match="in segments but not in pixels"):
        write_coco_panoptic(tmp_path / "a", [Sample(s.image, s.panoptic, s.segments + [
            segments_from_ids(np.full((1, 1), 26998), CITYSCAPES)[0]])], CITYSCAPES, progress=False)
    with pytest.raises(ValueError, match="in pixels but not in segments"):
        write_coco_panoptic(tmp_path / "b", [Sample(s.image, s.panoptic, s.segments[1:])], CITYSCAPES, progress=False)
    with pytest.raises(ValueError, match="area"):
        bad = [type(x)(**{**x.to_dict(), "area": x.area + 1}) if i == 0 else x for i, x in enumerate(s.segments)]
        write_coco_panoptic(tmp_path / "c", [Sample(s.image, s.panoptic, bad)], CITYSCAPES, progress=False)
    with pytest.raises(ValueError, match="named 'x'"):
        write_coco_panoptic(tmp_path / "d", [make_sample(1, name="x"), make_sample(2, name="x")], CITYSCAPES,
                            progress=False)
    with pytest.raises(ValueError, match="plain file name"):
        write_coco_panoptic(tmp_path / "e", [make_sample(1, name="../x")], CITYSCAPES, progress=False)
    with pytest.raises(ValueError, match="does not match"):
        write_coco_panoptic(tmp_path / "f", [Sample(s.image[:-1], s.panoptic, s.segments)], CITYSCAPES,
                            progress=False)


def test_dataset_hash_is_content_based(tmp_path, samples):
    json_path = write_coco_panoptic(tmp_path / "a", samples[:2], CITYSCAPES, progress=False)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    h = CocoPanopticReader(json_path).hash()
    assert len(h) == 64 and CocoPanopticReader(tmp_path / "b" / "annotations.json").hash() == h
    assert CocoPanopticReader(json_path).hash(images=True) != h
    # One changed label pixel changes the hash.
    png = tmp_path / "b" / "panoptic" / "img000.png"
    bgr = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    bgr[-1, -1] = bgr[-1, -2] if (bgr[-1, -1] != bgr[-1, -2]).any() else bgr[0, 0]
    cv2.imwrite(str(png), bgr)
    assert CocoPanopticReader(tmp_path / "b" / "annotations.json").hash() != h


def test_other_taxonomy_round_trip(tmp_path):
    tax = Taxonomy.from_coco_categories([{"id": 1, "name": "ground", "isthing": 0, "color": [1, 2, 3]},
                                        {"id": 2, "name": "box", "isthing": 1, "color": [4, 5, 6]},
                                        {"id": 9, "name": "wall", "isthing": 0, "color": [7, 8, 9]},
                                        {"id": 10, "name": "robot", "isthing": 1, "color": [9, 9, 9]}], "lab")
    s = [make_sample(5, taxonomy=tax, n_things=8)]
    reader = CocoPanopticReader(write_coco_panoptic(tmp_path, s, tax, progress=False))
    assert reader.taxonomy == tax and reader.taxonomy.name == "lab"
    assert_same_sample(s[0], reader[0])


# -- panoptic-world on the synthetic world ---------------------------------------------------------------------
WORLD_ARGS = ["--seed", "4", "--width", "96", "--height", "48", "--quiet"]


def world_frames(n, start=0):
    from panoptic_ros.data.world import SyntheticWorld, WorldConfig

    world = SyntheticWorld(WorldConfig(width=96, height=48), 4)
    return [world.frame(i) for i in range(start, start + n)], world.taxonomy


@pytest.mark.parametrize("command", [[], ["generate"], ["bag"], ["sheet"]])
def test_cli_help(command, capsys):
    from panoptic_ros.data.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(command + ["--help"])
    assert exit_info.value.code == 0
    assert "usage: panoptic-world" in capsys.readouterr().out


def test_cli_generate_coco_and_cityscapes(tmp_path):
    from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import evaluatePanoptic
    from panoptic_ros.data.cli import main

    frames, taxonomy = world_frames(3, start=2)
    assert main(["generate", "--out", str(tmp_path / "coco"), "--frames", "3", "--start", "2", *WORLD_ARGS]) == 0
    reader = CocoPanopticReader(tmp_path / "coco" / "annotations.json")
    assert reader.taxonomy == taxonomy and len(reader) == 3
    for f, back in zip(frames, reader):
        assert back.name == f.name
        assert_same_sample(f, back)
    assert main(["generate", "--out", str(tmp_path / "cs"), "--frames", "3", "--start", "2", "--format",
                 "cityscapes", "--split", "test", *WORLD_ARGS]) == 0
    json_path = tmp_path / "cs" / "gtFine" / "cityscapes_panoptic_test.json"
    folder = str(json_path.with_suffix(""))
    result = quiet(evaluatePanoptic, str(json_path), folder, str(json_path), folder, str(tmp_path / "r.json"))
    assert result["All"]["pq"] == pytest.approx(1.0)
    for f, back in zip(frames, CityscapesPanopticReader(tmp_path / "cs", "test")):
        assert_same_sample(f, back, exact_crowd_ids=False)


def test_cli_sheet(tmp_path):
    from panoptic_ros.data.cli import main
    from panoptic_ros.panoptic import colorize

    out = tmp_path / "sheet.png"
    assert main(["sheet", "--out", str(out), "--frames", "2", *WORLD_ARGS]) == 0
    sheet = cv2.imread(str(out))[..., ::-1]
    caption, gap = 22, 4  # visualize.contact_sheet's layout: a caption line, then tiles with a gap after each
    assert sheet.shape == (caption + 2 * (48 + gap), 3 * (96 + gap), 3)
    frames, taxonomy = world_frames(2)
    row1 = caption + 48 + gap
    np.testing.assert_array_equal(sheet[row1:row1 + 48, :96], frames[1].image)
    np.testing.assert_array_equal(sheet[caption:caption + 48, 100:196], taxonomy.colorize(frames[0].semantic(taxonomy)))
    np.testing.assert_array_equal(sheet[caption:caption + 48, 200:296], colorize(frames[0].panoptic, taxonomy))


def test_cli_reports_bad_options(tmp_path, capsys):
    from panoptic_ros.data.cli import main

    assert main(["generate", "--out", str(tmp_path / "x"), "--frames", "1", "--width", "8", "--quiet"]) == 2
    assert "too small" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "--out", str(tmp_path / "x"), "--frames", "0"])


def test_cityscapes_label_files_agree_with_createPanopticImgs(tmp_path, samples):
    """cityscapesscripts' own converter, run on our *_instanceIds.png, must produce our panoptic files."""
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

    ours = write_cityscapes_panoptic(tmp_path / "cs", samples, CITYSCAPES, split="val", progress=False)
    (tmp_path / "ref").mkdir()
    quiet(convert2panoptic, str(tmp_path / "cs" / "gtFine"), str(tmp_path / "ref"), False, ["val"])
    ref_json = tmp_path / "ref" / "cityscapes_panoptic_val.json"
    ref, mine = json.loads(ref_json.read_text()), json.loads(ours.read_text())
    assert Taxonomy.from_coco_categories(ref["categories"]) == CITYSCAPES
    # The whole JSON, field for field: images (with createPanopticImgs' "_gtFine_leftImg8bit.png" file_name),
    # annotations, segments_info in its order, categories with their supercategories.
    assert mine == ref
    assert ours.read_text() == ref_json.read_text()  # even the formatting (sort_keys, indent 4)
    for a in ref["annotations"]:
        ref_png = cv2.imread(str(ref_json.with_suffix("") / a["file_name"]), cv2.IMREAD_UNCHANGED)
        our_png = cv2.imread(str(ours.with_suffix("") / a["file_name"]), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(ref_png, our_png)
