"""panoptic_node with each fusion over real DDS (the setup of test_ros_node.py): its panoptic ids equal the
Predictor's with the same fusion, and a checkpoint trained for another fusion stops it with one line."""
from __future__ import annotations

import signal
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) is not installed")
pytest.importorskip("panoptic_ros.msg", reason="messages not generated: run bash tools/build_msgs.sh .venv")

from test_ros_node import ROOT, ros_env, run_driver, start_node, stop  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]
FUSIONS = ("parameter_free", "heuristic", "center_vote", "learned_conv", "hps", "hps_isi")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict:
    """A small random-weight network; trainable fusions get it with their (random) fusion weights."""
    import torch

    from panoptic_ros.fusion import TRAINABLE, build_fusion
    from panoptic_ros.fusion.train import save_fusion_checkpoint
    from panoptic_ros.model.checkpoint import build_metadata, save_checkpoint
    from panoptic_ros.model.network import PanopticNet
    from panoptic_ros.taxonomy import Taxonomy

    root = tmp_path_factory.mktemp("fusion_models")
    taxonomy = Taxonomy.cityscapes()
    torch.manual_seed(0)
    model = PanopticNet.from_config(taxonomy=taxonomy, backbone="resnet18", fpn_channels=32, head_channels=16)
    metadata = build_metadata(model, taxonomy, (64, 96), {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)})
    paths = {"plain": save_checkpoint(root / "plain.pt", model, metadata)}
    for name in TRAINABLE:
        fusion = build_fusion(name, taxonomy, feature_channels=16)
        paths[name] = save_fusion_checkpoint(root / f"{name}.pt", model, fusion, dict(metadata, fusion=name))
    return paths


@pytest.mark.timeout(900)
@pytest.mark.parametrize("fusion", FUSIONS)
def test_node_runs_each_fusion(checkpoints, fusion, tmp_path):
    from panoptic_ros.predictor import Predictor

    env = ros_env(tmp_path, 40 + FUSIONS.index(fusion))
    log = tmp_path / "node.log"
    path = checkpoints.get(fusion, checkpoints["plain"])
    node = start_node(path, env, log, "-p", f"fusion:={fusion}", "-p", "score_threshold:=0.01")
    try:
        rec = run_driver("outputs", env, tmp_path / "out.pkl", "--frames", "2")
    finally:
        text = stop(node, signal.SIGINT, log)
    predictor = Predictor.from_checkpoint(path, backend="cpu", threads=1, fusion=fusion, score_threshold=0.01)
    compared = 0
    for stamp, rgb in rec["sent"]:
        got = rec["received"].get(stamp)
        assert got is not None, f"no outputs for {stamp}:\n{text}"
        assert np.array_equal(got["panoptic_ids"]["array"], predictor.predict(rgb).panoptic)
        compared += 1
    assert compared == 2


@pytest.mark.timeout(600)
def test_node_refuses_a_checkpoint_of_another_fusion_in_one_line(checkpoints, tmp_path):
    env = ros_env(tmp_path, 60)
    cmd = [sys.executable, "-m", "panoptic_ros.node", "--ros-args", "--params-file", str(ROOT / "config" / "panoptic.yaml"),
           "-p", f"model_path:={checkpoints['hps']}", "-p", "backend:=cpu", "-p", "fusion:=heuristic"]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=500)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in output
    lines = [line for line in output.splitlines() if "trained for fusion 'hps'" in line]
    assert len(lines) == 1, output
