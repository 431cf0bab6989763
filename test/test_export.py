"""panoptic-export: strict torch.export programs of the network and the head, ONNX checked in onnxruntime,
TensorRT only with a GPU (a clear message and exit status otherwise)."""
from __future__ import annotations

import json

import onnxruntime as ort
import pytest
import torch

from panoptic_ros.head import PanopticHead
from panoptic_ros.model.checkpoint import build_metadata, save_checkpoint
from panoptic_ros.model.network import PanopticNet
from panoptic_ros.runtime.export import OUTPUT_NAMES, export_network, head_example_inputs, main
from panoptic_ros.taxonomy import Taxonomy

TAXONOMY = Taxonomy.cityscapes()
INPUT = (128, 256)
NORM = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = PanopticNet.from_config({"backbone": "resnet18", "fpn_channels": 64, "head_channels": 64},
                                    taxonomy=TAXONOMY).eval()
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, model, build_metadata(model, TAXONOMY, INPUT, NORM))
    return path, model


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    return out, main([str(checkpoint[0]), "--out", str(out), "--format", "all", "--input-size", "96", "160",
                      "--max-detections", "20"])


def test_export_all_writes_checked_programs(checkpoint, exported, capsys):
    _, model = checkpoint
    out, status = exported
    assert status == 0  # no GPU here: tensorrt is reported, not an error, under --format all
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["input_size"] == [96, 160]
    assert set(manifest["files"]) >= {"onnx", "network.pt2", "head.pt2"}
    assert manifest["files"]["head.pt2"]["identical_to_eager"] is True
    x = torch.randn(1, 3, 96, 160, generator=torch.Generator().manual_seed(7))  # not the export's example
    with torch.no_grad():
        want = model(x)
    program = torch.export.load(str(out / "network.pt2"))
    got = program.module()(x)
    for name in OUTPUT_NAMES:
        torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=1e-5)
    session = ort.InferenceSession(str(out / "network.onnx"), providers=["CPUExecutionProvider"])
    for name, value in zip(OUTPUT_NAMES, session.run(None, {"images": x.numpy()})):
        assert value.shape == tuple(want[name].shape) and abs(value - want[name].numpy()).max() < 1e-3
    head = PanopticHead.from_taxonomy(TAXONOMY, stuff_area_threshold=40)
    inputs = head_example_inputs(head, TAXONOMY.num_classes, TAXONOMY.thing_train_ids, (96, 160), 20, seed=5)
    head_program = torch.export.load(str(out / "head.pt2")).module()
    assert [tuple(t.shape) for t in head_program(*inputs)] == [(1, 96, 160)] * 2


def test_network_export_is_strict_and_static(checkpoint):
    _, model = checkpoint
    program = export_network(model, INPUT)
    nodes = {n.name: n for n in program.graph.nodes}
    assert [tuple(nodes[name].meta["val"].shape) for name in program.graph_signature.user_inputs] == [(1, 3, *INPUT)]
    assert not program.range_constraints  # no symbolic sizes: a static-shape program
    x = torch.randn(1, 3, *INPUT)
    with torch.no_grad():
        want = model(x)
    got = program.module()(x)
    for name in OUTPUT_NAMES:
        torch.testing.assert_close(got[name], want[name])


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present: TensorRT export is attempted for real")
def test_explicit_tensorrt_without_gpu_fails_with_a_message(checkpoint, tmp_path, capsys):
    assert main([str(checkpoint[0]), "--out", str(tmp_path), "--format", "tensorrt"]) == 2
    err = capsys.readouterr().err
    assert "tensorrt: not built" in err and "CUDA is not available" in err


def test_unusable_checkpoint_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main([str(bad), "--out", str(tmp_path / "o"), "--format", "onnx"]) == 1
    assert "corrupt" in capsys.readouterr().err
