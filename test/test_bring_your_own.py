"""The issue's must-show, as a user runs it: a COCO root and a Cityscapes root (the world, laid out as the data
sets are distributed) each train 5 steps from a torchvision ResNet-18 state_dict file with norm frozen_bn, then
are evaluated with panoptic-eval model -- no traceback; a wrong path, a missing split, a foreign weights file and
an .onnx model each give one line and exit 2. Every command runs as its own process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
import yaml

from _distributed_roots import cityscapes_root, coco_root

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("byo")
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), base / "resnet18.pth")
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), base / "mobilenet.pth")  # foreign
    cfg = {"input": {"height": 64, "width": 96},
           "model": {"backbone": "resnet18", "backbone_weights": str(base / "resnet18.pth"), "norm": "frozen_bn",
                     "freeze_at": 1, "fpn_channels": 32, "head_channels": 16},
           "optim": {"warmup_steps": 1},
           "train": {"batch_size": 2, "workers": 0, "log_every": 1, "ckpt_every": 5}}
    (base / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    cfg["model"]["backbone_weights"] = str(base / "mobilenet.pth")
    (base / "foreign.yaml").write_text(yaml.safe_dump(cfg))
    return {"base": base, "coco": coco_root(base / "coco"), "cityscapes": cityscapes_root(base / "cityscapes")}


def run(module: str, *args, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="2")
    if cache is not None:
        env["PANOPTIC_ROS_CACHE"] = str(cache)
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return proc


def one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("kind, train_split, val_split", [("coco", "train2017", "val2017"),
                                                           ("cityscapes", "train", "val")])
def test_train_then_evaluate_a_distributed_root(setup, kind, train_split, val_split):
    base, data = setup["base"], setup[kind]
    out = base / f"run_{kind}"
    proc = run("panoptic_ros.model.train", "--config", base / "tiny.yaml", "--data", data, "--split", train_split,
               "--steps", 5, "--out", out, "--device", "cpu", "--no-val")
    assert proc.returncode == 0, proc.stderr
    assert "loaded 100 tensors from" in proc.stderr and "norm frozen_bn" in proc.stderr
    assert sorted(p.name for p in out.glob("*.pt")) == ["last.pt", "model.pt"]
    # COCO with onnxruntime and an empty cache (the slow first run must say so); Cityscapes on the cpu backend.
    backend = "onnxruntime" if kind == "coco" else "cpu"
    proc = run("panoptic_ros.evaluation.cli", "model", out / "model.pt", data, "--split", val_split,
               "--backend", backend, "--out", base / f"report_{kind}", cache=base / f"cache_{kind}")
    assert proc.returncode == 0, proc.stderr
    if backend == "onnxruntime":
        assert "building ONNX model" in proc.stderr and "first run" in proc.stderr
    assert "PQ" in proc.stdout and (base / f"report_{kind}" / "report.md").is_file()


def test_errors_are_one_line(setup):
    base = setup["base"]
    tiny = ["--config", base / "tiny.yaml", "--out", base / "err", "--steps", 1, "--device", "cpu", "--no-val"]
    one_line_error(run("panoptic_ros.model.train", *tiny, "--data", base / "nowhere"), "nowhere does not exist")
    one_line_error(run("panoptic_ros.model.train", *tiny, "--data", setup["coco"], "--split", "val2018"),
                   "panoptic_val2018.json", "train2017, val2017")
    one_line_error(run("panoptic_ros.model.train", "--config", base / "foreign.yaml", "--data", setup["cityscapes"],
                       "--split", "train", "--out", base / "err", "--steps", 1, "--device", "cpu", "--no-val"),
                   "mobilenet.pth do not fit resnet18")
    one_line_error(run("panoptic_ros.model.train", *tiny, "--data", setup["coco"], "--init", base / "resnet18.pth"),
                   "model.backbone_weights")
    ckpt = ROOT / "models" / "panoptic_r18_synthetic.pt"
    one_line_error(run("panoptic_ros.evaluation.cli", "model", ckpt, base / "nowhere"), "nowhere does not exist")
    one_line_error(run("panoptic_ros.evaluation.cli", "model", ckpt, setup["cityscapes"], "--split", "tset"),
                   "cityscapes_panoptic_tset.json", "test, train, val")
    # a model of other classes is refused before its backend is built (no 20-30 s ONNX build first)
    one_line_error(run("panoptic_ros.evaluation.cli", "model", ckpt, setup["coco"], "--split", "val2017",
                       cache=base / "unused_cache"), "133 categories", "model's 19")
    assert not (base / "unused_cache").exists()
    onnx = base / "model.onnx"
    onnx.write_bytes(b"\x08\x07")
    one_line_error(run("panoptic_ros.evaluation.cli", "model", onnx, setup["cityscapes"]), "is an ONNX file")
