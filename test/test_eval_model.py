"""panoptic-eval model: a checkpoint over a data-set folder, with PQ, mIoU, box AP, latency and the report."""
import json

import numpy as np
import pytest
import torch

from panoptic_ros.data.coco import write_coco_panoptic
from panoptic_ros.data.world import SyntheticWorld, WorldConfig
from panoptic_ros.evaluation.cli import main
from panoptic_ros.model.checkpoint import build_metadata, save_checkpoint
from panoptic_ros.model.network import PanopticNet
from panoptic_ros.taxonomy import Taxonomy


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalmodel")
    taxonomy = Taxonomy.cityscapes()
    torch.manual_seed(0)
    model = PanopticNet.from_config({"backbone": "resnet18", "fpn_channels": 32, "head_channels": 32},
                                    taxonomy=taxonomy)
    meta = build_metadata(model, taxonomy, (64, 128), {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
    save_checkpoint(root / "tiny.pt", model, meta)
    world = SyntheticWorld(WorldConfig(width=128, height=64), seed=5)
    write_coco_panoptic(root / "data", (world.frame(i) for i in range(4)), taxonomy, progress=False)
    return root


def test_model_evaluation_writes_every_metric_and_the_report(setup):
    out = setup / "report"
    assert main(["model", str(setup / "tiny.pt"), str(setup / "data"), "--backend", "cpu",
                 "--score-threshold", "0.011", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["num_frames"] == 4 and set(report["All"]) >= {"pq", "sq", "rq", "n"}
    extra = report["extra"]
    assert extra["frames"] == 4 and extra["score_threshold"] == 0.011 and 0.0 <= extra["miou"] <= 1.0
    assert set(extra["box_ap"]) == {"AP", "AP50", "AP75"} and extra["box_ap"]["AP"] >= 0.0
    latency = report["latency_ms"]
    assert latency["count"] == 4 and 0 < latency["p50"] <= latency["p99"] <= latency["max"]
    for png in ("per_class_pq.png", "latency_hist.png", "worst_frames.png"):
        assert (out / png).stat().st_size > 1000


def test_model_evaluation_runs_the_head_on_a_coarser_grid_when_asked(setup):
    out = setup / "report_stride2"
    assert main(["model", str(setup / "tiny.pt"), str(setup / "data"), "--backend", "cpu", "--frames", "2",
                 "--score-threshold", "0.011", "--head-stride", "2", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["extra"]["head_stride"] == 2 and report["num_frames"] == 2
    with pytest.raises(SystemExit):  # argparse: only 1, 2 or 4
        main(["model", str(setup / "tiny.pt"), str(setup / "data"), "--head-stride", "3"])


def test_model_evaluation_refuses_another_class_list(setup, tmp_path, capsys):
    other = Taxonomy.from_coco_categories([{"id": 1, "name": "thing", "isthing": 1},
                                           {"id": 2, "name": "ground", "isthing": 0}])
    ids = np.full((64, 128), 2000, np.int32)
    from panoptic_ros.data.frame import Sample
    from panoptic_ros.panoptic import segments_from_ids

    write_coco_panoptic(tmp_path / "data", [Sample(np.zeros((64, 128, 3), np.uint8), ids,
                                                   segments_from_ids(ids, other), "a")], other, progress=False)
    assert main(["model", str(setup / "tiny.pt"), str(tmp_path / "data"), "--backend", "cpu"]) == 2
    assert "not the model's" in capsys.readouterr().err
