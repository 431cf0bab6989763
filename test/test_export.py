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


@pytest.fixture(scope="module")
def world_folder(tmp_path_factory):
    from panoptic_ros.data.cli import main as world_main

    out = tmp_path_factory.mktemp("world")
    assert world_main(["generate", "--out", str(out), "--seed", "3", "--frames", "4", "--width", str(INPUT[1]),
                       "--height", str(INPUT[0]), "--quiet"]) == 0
    return out


@pytest.mark.slow  # builds ONNX + OpenVINO models (and calibrates): ~1 min on a shared 2-core machine
def test_int8_export_writes_the_model_caches_it_and_prints_heldout_pq(checkpoint, world_folder, tmp_path, capsys,
                                                                      monkeypatch):
    pytest.importorskip("nncf", reason="nncf is not installed (pip install nncf)")
    pytest.importorskip("openvino", reason="openvino is not installed (pip install openvino)")
    import onnx

    from panoptic_ros.runtime import create_backend

    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    cache, out = tmp_path / "cache", tmp_path / "int8"
    status = main([str(checkpoint[0]), "--out", str(out), "--int8", "--calibration", str(world_folder),
                   "--calibration-frames", "3", "--eval", str(world_folder), "--eval-frames", "2",
                   "--cache-dir", str(cache)])
    printed = capsys.readouterr().out
    assert status == 0
    assert "calibrated on 3 frames" in printed and "held-out PQ" in printed and "int8" in printed
    ops = [n.op_type for n in onnx.load(str(out / "network_int8.onnx")).graph.node]
    assert "QuantizeLinear" in ops
    manifest = json.loads((out / "export.json").read_text())
    pq = manifest["int8"]["heldout_pq"]
    assert pq["fp32"]["frames"] == 2 and pq["delta"] == pytest.approx(pq["int8"]["all"] - pq["fp32"]["all"], abs=0.01)
    # the backends find the calibrated model in the cache now
    backend = create_backend("onnxruntime", checkpoint[1], INPUT, precision="int8", threads=1, cache_dir=cache)
    assert backend.describe()["cache"]["status"] == "hit"


@pytest.mark.parametrize("args, message", [
    (["--int8"], "--int8 needs --calibration"),
    (["--int8", "--calibration", "/nonexistent"], "no annotations.json"),
    (["--int8", "--calibration", "WORLD", "--keep-float", "middle"], "--keep-float takes"),
    (["--int8", "--calibration", "WORLD", "--format", "exported"], "not exported"),
])
def test_int8_bad_arguments_are_one_line_and_exit_2(checkpoint, world_folder, tmp_path, capsys, args, message):
    args = [str(world_folder) if a == "WORLD" else a for a in args]
    assert main([str(checkpoint[0]), "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_int8_tensorrt_without_gpu_exits_2_with_the_reason(checkpoint, world_folder, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA works here: the no-GPU message path is not taken")
    assert main([str(checkpoint[0]), "--out", str(tmp_path / "o"), "--int8", "--calibration", str(world_folder),
                 "--calibration-frames", "2", "--format", "tensorrt"]) == 2
    assert "tensorrt int8: not built:" in capsys.readouterr().err


def test_int8_without_nncf_says_what_to_install(checkpoint, world_folder, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "nncf", None)  # `import nncf` raises ImportError
    assert main([str(checkpoint[0]), "--out", str(tmp_path / "o"), "--int8", "--calibration", str(world_folder),
                 "--calibration-frames", "1", "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip()
    assert "INT8 quantization needs nncf" in err and "Traceback" not in err and len(err.splitlines()) == 1
