"""panoptic-train end to end on a tiny generated COCO-panoptic folder: train, checkpoints, resume, torchrun."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from model_samples import street_samples
from panoptic_ros.data.coco import write_coco_panoptic
from panoptic_ros.model import train
from panoptic_ros.model.checkpoint import load_checkpoint, read_checkpoint
from panoptic_ros.taxonomy import Taxonomy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    write_coco_panoptic(root / "train", street_samples(4, 64, 128, seed=1, crowd=True), Taxonomy.cityscapes(),
                        progress=False)
    write_coco_panoptic(root / "val", street_samples(2, 64, 128, seed=2), Taxonomy.cityscapes(), progress=False)
    cfg = {"input": {"height": 64, "width": 128},
           "model": {"backbone": "resnet18", "fpn_channels": 32, "head_channels": 32},
           "optim": {"warmup_steps": 1},
           "train": {"batch_size": 2, "workers": 0, "log_every": 1, "val_every": 2, "ckpt_every": 1}}
    (root / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    return root


def test_train_two_steps_then_resume(tiny_data, tmp_path):
    out = tmp_path / "run"
    args = ["--config", str(tiny_data / "tiny.yaml"), "--data", str(tiny_data / "train"), "--out", str(out),
            "--device", "cpu"]
    assert train.main(args + ["--steps", "2", "--no-val"]) == 0
    assert sorted(p.name for p in out.glob("*.pt")) == ["last.pt", "model.pt"]  # no snapshots unless asked
    model, meta = load_checkpoint(out / "model.pt", expected_taxonomy=Taxonomy.cityscapes())
    assert meta["step"] == 2 and meta["input_size"] == [64, 128] and meta["dataset_hash"]
    assert meta["network"]["backbone"] == "resnet18" and meta["training"]["train"]["batch_size"] == 2
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "total" in r]
    assert steps == [1, 2] and all(r["total"] > 0 for r in records if "total" in r)
    first = read_checkpoint(out / "last.pt")
    assert first["training_state"]["step"] == 2

    assert train.main(args + ["--steps", "3", "--resume", str(out / "last.pt"), "--no-val", "--snapshots"]) == 0
    assert (out / "step_3.pt").is_file() and "training_state" not in read_checkpoint(out / "step_3.pt")
    resumed = read_checkpoint(out / "last.pt")
    assert resumed["training_state"]["step"] == 3 and resumed["metadata"]["step"] == 3
    # the optimizer continued: Adam's step count is 3, not 1
    state = next(iter(resumed["training_state"]["optimizer"]["state"].values()))
    assert float(state["step"]) == 3
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()
             if "total" in json.loads(line)]
    assert steps == [1, 2, 3]
    changed = any(not torch.equal(v, first["state_dict"][k]) for k, v in resumed["state_dict"].items())
    assert changed


def test_bad_inputs_fail_clearly(tiny_data, tmp_path, capsys):
    def one_line_error(argv) -> str:
        assert train.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and err.startswith("panoptic-train: ") and "Traceback" not in err
        return err

    err = one_line_error(["--config", str(tiny_data / "tiny.yaml"), "--data", str(tmp_path), "--out", str(tmp_path)])
    assert "is not a panoptic data set" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("optimiser: {lr: 1}\n")
    assert "unknown config sections" in one_line_error(["--config", str(bad), "--data", str(tiny_data / "train")])
    assert "no training data" in one_line_error(["--config", str(tiny_data / "tiny.yaml"), "--out", str(tmp_path / "x")])


def test_shipped_configs_build():
    from panoptic_ros.model.network import PanopticNet

    for name in ("train_synthetic.yaml", "train_synthetic_stage2.yaml", "train_synthetic_stage3.yaml",
                 "train_synthetic_stage4.yaml",
                 "train_resnet50.yaml", "train_cityscapes_r50.yaml", "train_coco_r50.yaml"):
        cfg = train.load_config(ROOT / "config" / name)
        network = {k: v for k, v in cfg["model"].items() if k != "backbone_weights"}
        model = PanopticNet.from_config(network, taxonomy=Taxonomy.cityscapes())
        assert model.config["backbone"] == cfg["model"]["backbone"]
        train.lr_lambda(10, cfg["optim"], cfg["train"]["steps"])


def test_second_stage_starts_from_weights_with_a_fresh_schedule(tiny_data, tmp_path, capsys):
    first = tmp_path / "first"
    common = ["--data", str(tiny_data / "train"), "--device", "cpu", "--no-val"]
    assert train.main(["--config", str(tiny_data / "tiny.yaml"), "--out", str(first), "--steps", "2", *common]) == 0
    stage2 = tmp_path / "stage2.yaml"  # states only what differs; the rest comes from its base
    stage2.write_text(f"base: {tiny_data / 'tiny.yaml'}\noptim: {{lr: 1.0e-5}}\n")
    cfg = train.load_config(stage2)
    assert cfg["optim"]["lr"] == 1.0e-5 and cfg["input"]["height"] == 64 and cfg["model"]["fpn_channels"] == 32

    second = tmp_path / "second"
    assert train.main(["--config", str(stage2), "--out", str(second), "--steps", "1",
                       "--init", str(first / "model.pt"), *common]) == 0
    start, after = read_checkpoint(first / "model.pt"), read_checkpoint(second / "last.pt")
    assert after["training_state"]["step"] == 1  # a new run, not a resumed one
    assert after["metadata"]["training"]["train"]["init"] == str(first / "model.pt")
    # One Adam step at lr 1e-5 moves each weight by at most ~1e-5: it started from the first stage's weights.
    diffs = [float((after["state_dict"][k].float() - v.float()).abs().max())
             for k, v in start["state_dict"].items() if v.is_floating_point()]
    assert max(diffs) < 1e-4 and max(diffs) > 0

    other = tmp_path / "other.yaml"
    other.write_text(f"base: {tiny_data / 'tiny.yaml'}\nmodel: {{fpn_channels: 16}}\n")
    assert train.main(["--config", str(other), "--out", str(tmp_path / "x"), "--init", str(first / "model.pt"),
                       *common]) == 2
    assert "holds network" in capsys.readouterr().err
    # An extra detection level adds anchors, not weights (the RetinaNet head is shared across levels).
    more_levels = tmp_path / "levels.yaml"
    levels = read_checkpoint(first / "model.pt")["metadata"]["network"]["detection_levels"]
    more_levels.write_text(f"base: {tiny_data / 'tiny.yaml'}\nmodel: {{detection_levels: {[levels[0] - 1, *levels]}}}\n")
    assert train.main(["--config", str(more_levels), "--out", str(tmp_path / "z"), "--steps", "1",
                       "--init", str(first / "model.pt"), *common]) == 0
    wider = read_checkpoint(tmp_path / "z" / "last.pt")
    assert wider["metadata"]["network"]["detection_levels"] == [levels[0] - 1, *levels]
    assert train.main(["--config", str(stage2), "--out", str(tmp_path / "y"), "--init", str(first / "model.pt"),
                       "--resume", str(first / "last.pt"), *common]) == 2
    assert "give one" in capsys.readouterr().err


def _validation_missing() -> str:
    try:
        from panoptic_ros.evaluation.pq import PQAccumulator  # noqa: F401
        from panoptic_ros.predictor import Predictor  # noqa: F401
    except ImportError as exc:
        return f"validation needs Predictor and PQAccumulator: {exc}"
    return ""


@pytest.mark.skipif(bool(_validation_missing()), reason=_validation_missing() or "-")
def test_validation_pq_and_best_checkpoint(tiny_data, tmp_path):
    out = tmp_path / "val"
    assert train.main(["--config", str(tiny_data / "tiny.yaml"), "--data", str(tiny_data / "train"),
                       "--val-data", str(tiny_data / "val"), "--out", str(out), "--steps", "2",
                       "--device", "cpu"]) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    val = [r["val"] for r in records if "val" in r]
    assert len(val) == 1 and 0.0 <= val[0]["All"]["pq"] <= 1.0 and val[0]["All"]["n"] > 0
    model, meta = load_checkpoint(out / "best.pt")
    assert meta["step"] == 2


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tiny_data, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
           "-m", "panoptic_ros.model.train", "--config", str(tiny_data / "tiny.yaml"), "--data",
           str(tiny_data / "train"), "--out", str(out), "--steps", "2", "--device", "cpu", "--no-val"]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    model, meta = load_checkpoint(out / "model.pt")
    assert meta["step"] == 2
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2]  # only rank 0 logs


def test_several_roots_of_other_shapes_train_as_one_set_with_photometric_jitter(tiny_data, tmp_path):
    """Training data rendered in several shapes / conditions: --data takes several roots, read as one set."""
    from panoptic_ros.data.datasets import ConcatReader, DataError

    wide = tmp_path / "wide43"
    write_coco_panoptic(wide, street_samples(3, 96, 128, seed=5), Taxonomy.cityscapes(), progress=False)
    reader = train.open_reader("auto", [str(tiny_data / "train"), str(wide)], None)
    assert isinstance(reader, ConcatReader) and len(reader) == 7
    assert reader[3].image.shape[:2] == (64, 128) and reader[4].image.shape[:2] == (96, 128)
    assert reader[6].name == train.open_reader("auto", str(wide), None)[2].name
    with pytest.raises(IndexError):
        reader[7]
    from panoptic_ros.model.targets import PanopticDataset

    def images(photometric):
        torch.manual_seed(0)
        ds = PanopticDataset(reader, reader.taxonomy, (64, 128), scale_range=(1.0, 1.0), flip=False,
                             photometric=photometric)
        return [ds[i] for i in range(len(ds))]
    plain, jittered = images(0.0), images(1.0)
    assert all(torch.equal(a["semantic"], b["semantic"]) for a, b in zip(plain, jittered))  # labels untouched
    assert sum(not torch.equal(a["image"], b["image"]) for a, b in zip(plain, jittered)) >= 3
    cfg = yaml.safe_load((tiny_data / "tiny.yaml").read_text())
    cfg["input"]["photometric"] = 1.0
    (tmp_path / "photo.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert train.main(["--config", str(tmp_path / "photo.yaml"), "--data", str(tiny_data / "train"), str(wide),
                       "--out", str(out), "--device", "cpu", "--steps", "1", "--no-val"]) == 0
    _, meta = load_checkpoint(out / "model.pt", expected_taxonomy=Taxonomy.cityscapes())
    assert meta["training"]["input"]["photometric"] == 1.0
    assert meta["dataset_hash"] != train.open_reader("auto", str(wide), None).hash()
    with pytest.raises(DataError, match="different categories"):
        ConcatReader([reader, _RelabelledTaxonomy(reader)])


class _RelabelledTaxonomy:
    """A reader whose categories differ (COCO's 133) from the Cityscapes ones it wraps."""

    def __init__(self, reader):
        self.taxonomy = Taxonomy.coco_panoptic()
        self._reader = reader

    def __len__(self):
        return len(self._reader)
