"""Fusions through the Predictor and panoptic-eval: compare's table, --fusion, and the one-line refusal of a
checkpoint trained for another fusion."""
import json

import pytest
import torch

from panoptic_ros.data.coco import write_coco_panoptic
from panoptic_ros.data.world import SyntheticWorld, WorldConfig
from panoptic_ros.evaluation.cli import main
from panoptic_ros.fusion import FusionMismatch, build_fusion
from panoptic_ros.fusion.train import save_fusion_checkpoint
from panoptic_ros.model.checkpoint import build_metadata, save_checkpoint
from panoptic_ros.model.network import PanopticNet
from panoptic_ros.predictor import Predictor
from panoptic_ros.taxonomy import Taxonomy

pytestmark = pytest.mark.slow  # nine predictors over a data set (the module took 19 min at load average ~15)
NORM = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("fusioneval")
    taxonomy = Taxonomy.cityscapes()
    torch.manual_seed(0)
    model = PanopticNet.from_config({"backbone": "resnet18", "fpn_channels": 32, "head_channels": 32},
                                    taxonomy=taxonomy)
    save_checkpoint(root / "plain.pt", model, build_metadata(model, taxonomy, (64, 128), NORM))
    for name in ("learned_conv", "hps", "hps_isi"):
        meta = dict(build_metadata(model, taxonomy, (64, 128), NORM), fusion=name)
        fusion = build_fusion(name, taxonomy, feature_channels=32)
        save_fusion_checkpoint(root / f"{name}.pt", model, fusion, meta)
    world = SyntheticWorld(WorldConfig(width=128, height=64), seed=5)
    write_coco_panoptic(root / "data", (world.frame(i) for i in range(2)), taxonomy, progress=False)
    return root


def test_compare_writes_one_row_per_fusion(setup):
    out = setup / "compare"
    assert main(["compare", str(setup / "data"), "--model", str(setup / "plain.pt"), "--score-threshold", "0.011",
                 "--trained", f"control={setup / 'plain.pt'}", "--trained", f"hps={setup / 'hps.pt'}",
                 "--trained", f"hps_isi={setup / 'hps_isi.pt'}",
                 "--trained", f"learned_conv={setup / 'learned_conv.pt'}", "--threads", "1", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    names = [row["name"] for row in report["rows"]]
    assert names == ["parameter_free (closest_center)", "parameter_free (highest_confidence)",
                     "parameter_free (smallest_first)", "heuristic", "center_vote",
                     "parameter_free (fine-tuned control)", "hps", "hps_isi", "learned_conv"]
    for row in report["rows"]:
        assert 0 <= row["all"]["pq"] <= 1 and 0 < row["head_ms"] <= row["end_to_end_ms"]
    assert report["frames"] == 2 and report["score_threshold"] == 0.011
    assert report["threads"] == 1  # the rows ran on the threads asked for (the backends' default is every core)
    assert (out / "compare.png").stat().st_size > 1000 and "| hps_isi |" in (out / "report.md").read_text()


def test_eval_model_runs_a_fusion_and_refuses_a_mismatch_in_one_line(setup, capsys):
    out = setup / "model_heuristic"
    assert main(["model", str(setup / "plain.pt"), str(setup / "data"), "--backend", "cpu", "--fusion", "heuristic",
                 "--score-threshold", "0.011", "--out", str(out)]) == 0
    assert json.loads((out / "report.json").read_text())["extra"]["fusion"] == "heuristic"
    capsys.readouterr()
    assert main(["model", str(setup / "hps.pt"), str(setup / "data"), "--backend", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "trained for fusion 'hps'" in err


def test_predictor_runs_every_fusion_on_its_checkpoint(setup):
    image = (torch.rand(70, 130, 3) * 255).to(torch.uint8).numpy()
    for name, path in (("parameter_free", "plain"), ("heuristic", "plain"), ("center_vote", "plain"),
                       ("learned_conv", "learned_conv"), ("hps", "hps"), ("hps_isi", "hps_isi")):
        predictor = Predictor.from_checkpoint(setup / f"{path}.pt", backend="cpu", fusion=name, score_threshold=0.011)
        result = predictor.predict(image)
        assert result.panoptic.shape == (70, 130) and result.panoptic.dtype.name == "int32"
    with pytest.raises(FusionMismatch):
        Predictor.from_checkpoint(setup / "plain.pt", backend="cpu", fusion="learned_conv")
    with pytest.raises(ValueError, match="hps_isi .* runs on the cpu or cuda backend"):
        Predictor.from_checkpoint(setup / "hps_isi.pt", backend="onnxruntime", fusion="hps_isi")


@pytest.mark.parametrize("fusion,checkpoint", [("parameter_free", "plain"), ("heuristic", "plain"),
                                               ("center_vote", "plain"), ("learned_conv", "learned_conv"),
                                               ("hps", "hps"), ("hps_isi", "hps_isi")])
def test_every_fusion_runs_in_panoptic_eval_bag(setup, fusion, checkpoint):
    """The node's offline mode: `panoptic-eval bag --fusion` runs the fusion over a rosbag2 and says so."""
    pytest.importorskip("panoptic_ros.msg", reason="messages not generated: run bash tools/build_msgs.sh .venv")
    from panoptic_ros.data.cli import main as world_main

    bag = setup / "drive"
    if not bag.exists():
        assert world_main(["bag", "--out", str(bag), "--frames", "2", "--fps", "10", "--width", "128",
                           "--height", "64", "--quiet"]) == 0
    out = setup / f"bag_{fusion}"
    assert main(["bag", str(bag), "--model", str(setup / f"{checkpoint}.pt"), "--fusion", fusion,
                 "--backend", "cpu", "--score-threshold", "0.011", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["extra"]["fusion"] == fusion and len(report["frames"]) == 2
