"""The openvino backend (FP32 / BF16) against eager torch, INT8 quantization (NNCF QDQ) on both CPU backends,
auto's timed probe, its cached decision and its fallback when openvino is missing, the threads setting."""
from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import torch

from panoptic_ros.data.world import SyntheticWorld, WorldConfig
from panoptic_ros.model.checkpoint import build_metadata
from panoptic_ros.model.network import PanopticNet
from panoptic_ros.predictor import Predictor
from panoptic_ros.runtime import BackendUnavailable, create_backend
from panoptic_ros.runtime import auto as auto_module
from panoptic_ros.runtime.auto import CPU_CANDIDATES, relative_error
from panoptic_ros.runtime.export import OUTPUT_NAMES
from panoptic_ros.runtime.quantize import HOW_TO_CALIBRATE, sensitive_nodes
from panoptic_ros.runtime.threads import physical_cores
from panoptic_ros.taxonomy import Taxonomy

ov = pytest.importorskip("openvino", reason="openvino is not installed (pip install openvino)")
pytest.importorskip("nncf", reason="nncf is not installed (pip install nncf)")

TAXONOMY = Taxonomy.cityscapes()
INPUT = (128, 256)
NORM = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
BF16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.fixture(autouse=True)
def _keep_torch_threads(monkeypatch):
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # keep this process's thread setting


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = PanopticNet.from_config({"backbone": "resnet18", "fpn_channels": 64, "head_channels": 64},
                                    taxonomy=TAXONOMY).eval()
    return model, build_metadata(model, TAXONOMY, INPUT, NORM)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ov_cache")


@pytest.fixture(scope="module")
def frames():
    world = SyntheticWorld(WorldConfig(width=INPUT[1], height=INPUT[0]), seed=3)
    return [world.frame(i).image for i in range(10)]


@pytest.fixture(scope="module")
def calibration(net, frames):
    predictor = Predictor(net[0], net[1], backend="cpu")
    return [predictor.preprocess([f]) for f in frames[:8]]  # the predictor's own preprocessing


def _eager(model, x):
    with torch.no_grad():
        return model(x)


def test_openvino_fp32_matches_eager_torch_and_caches(net, cache_dir):
    model, metadata = net
    backend = create_backend("openvino", model, INPUT, metadata=metadata, threads=1, cache_dir=cache_dir)
    info = backend.describe()
    assert info["backend"] == "openvino" and info["precision"] == "fp32" and info["threads"] == 1
    assert info["cache"]["status"] == "built"
    x = torch.randn(2, 3, *INPUT, generator=torch.Generator().manual_seed(3))  # batch 2 on a batch-1 model
    got, want = backend.run(x), _eager(model, x)
    assert list(got) == list(OUTPUT_NAMES)
    for name in OUTPUT_NAMES:
        assert got[name].shape == want[name].shape and got[name].dtype == torch.float32
        # Same tolerance as onnxruntime's test: FP32 with reordered sums (measured ~1e-5 here).
        assert (got[name] - want[name]).abs().max() < 1e-3, name
    again = create_backend("openvino", model, INPUT, threads=1, cache_dir=cache_dir)
    assert again.describe()["cache"]["status"] == "hit"
    assert torch.equal(again.run(x[:1])["semantic"], got["semantic"][:1])
    with pytest.raises(ValueError, match="built for"):
        backend.run(torch.zeros(1, 3, 64, 64))


@pytest.mark.skipif(not BF16, reason="this CPU has no BF16 units (OpenVINO's OPTIMIZATION_CAPABILITIES)")
def test_openvino_bf16_is_close_and_differs_from_fp32(net, cache_dir, frames):
    model, metadata = net
    bf16 = create_backend("openvino", model, INPUT, precision="bf16", threads=1, cache_dir=cache_dir)
    fp32 = create_backend("openvino", model, INPUT, precision="fp32", threads=1, cache_dir=cache_dir)
    assert bf16.describe()["precision"] == "bf16"
    x = Predictor(model, metadata, backend="cpu").preprocess(frames[:1])
    want = _eager(model, x)
    error = relative_error(bf16.run(x), want)
    # bfloat16 keeps 8 mantissa bits (relative rounding 2^-9 per value) through ~30 layers: ~1e-2 relative
    # RMS error is expected; 5e-2 is auto's tolerance. Above 1e-4 proves it really ran in bf16 (fp32: ~1e-6).
    assert 1e-4 < error < 5e-2
    assert relative_error(fp32.run(x), want) < 1e-4


def test_bf16_on_a_cpu_without_it_says_why(net, cache_dir, monkeypatch):
    from panoptic_ros.runtime import openvino_backend

    monkeypatch.setattr(openvino_backend, "cpu_capabilities", lambda core: ["FP32", "INT8"])
    with pytest.raises(BackendUnavailable, match="no BF16 units"):
        create_backend("openvino", net[0], INPUT, precision="bf16", cache_dir=cache_dir)


def test_int8_needs_a_calibrated_model(net, tmp_path):
    for name in ("openvino", "onnxruntime"):
        with pytest.raises(BackendUnavailable, match="panoptic-export CHECKPOINT --int8") as info:
            create_backend(name, net[0], INPUT, precision="int8", threads=1, cache_dir=tmp_path)
        assert str(info.value) == HOW_TO_CALIBRATE


@pytest.mark.slow  # builds ONNX + OpenVINO models (and calibrates): ~1 min on a shared 2-core machine
def test_int8_quantized_keeps_the_heads_in_float_and_stays_close(net, cache_dir, calibration, frames):
    import onnx

    model, metadata = net
    ov_int8 = create_backend("openvino", model, INPUT, precision="int8", threads=1, cache_dir=cache_dir,
                             calibration=calibration)
    from panoptic_ros.runtime.backends import fp32_onnx
    from panoptic_ros.runtime.quantize import int8_onnx

    path, outcome = int8_onnx(model, INPUT, fp32_onnx(model, INPUT, cache_dir)[0], cache_dir)
    assert outcome.status == "hit"  # built by the openvino backend above, found by key
    qdq = onnx.load(str(path))
    ops = [n.op_type for n in qdq.graph.node]
    assert ops.count("QuantizeLinear") > 20 and ops.count("DequantizeLinear") > 20
    # The last conv before each output reads float weights (no DequantizeLinear in front), every other conv
    # reads INT8 ones: found from the graph, as the ONNX checker sees it.
    producer = {o: n for n in qdq.graph.node for o in n.output}
    kept = set(sensitive_nodes(onnx.load(str(fp32_onnx(model, INPUT, cache_dir)[0])), ["heads"]))
    assert len(kept) >= len(OUTPUT_NAMES)
    for node in qdq.graph.node:
        if node.op_type == "Conv":
            weight_from = producer.get(node.input[1])
            quantized = weight_from is not None and weight_from.op_type == "DequantizeLinear"
            assert quantized == (node.name not in kept), node.name
    ort_int8 = create_backend("onnxruntime", model, INPUT, precision="int8", threads=1, cache_dir=cache_dir)
    assert ort_int8.describe()["precision"] == "int8" and ort_int8.describe()["cache"]["status"] == "hit"
    x = Predictor(model, metadata, backend="cpu").preprocess(frames[9:10])  # not a calibration frame
    want = _eager(model, x)
    for backend in (ov_int8, ort_int8):
        got = backend.run(x)
        # INT8 noise: auto's tolerance (0.3 relative RMS); a broken quantization (wrong scales) is ~1.
        assert relative_error(got, want) < 0.3, backend.name
        agree = (got["semantic"].argmax(1) == want["semantic"].argmax(1)).float().mean()
        assert agree > 0.9, (backend.name, float(agree))


def test_sensitive_nodes_find_first_conv_and_heads(net, cache_dir):
    import onnx

    from panoptic_ros.runtime.backends import fp32_onnx

    graph = onnx.load(str(fp32_onnx(net[0], INPUT, cache_dir)[0]))
    first = sensitive_nodes(graph, ["first"])
    assert len(first) == 1
    node = next(n for n in graph.graph.node if n.name == first[0])
    assert node.op_type == "Conv" and node.input[0] == "images"
    assert sensitive_nodes(graph, []) == []
    with pytest.raises(ValueError, match="unknown"):
        sensitive_nodes(graph, ["middle"])


# -- auto -------------------------------------------------------------------------------------------------
@pytest.mark.slow  # builds ONNX + OpenVINO models (and calibrates): ~1 min on a shared 2-core machine
def test_auto_probes_once_then_uses_its_cached_decision(net, cache_dir, caplog, monkeypatch):
    model, metadata = net
    with caplog.at_level(logging.INFO, logger="panoptic_ros.runtime"):
        first = create_backend("auto", model, INPUT, metadata=metadata, threads=1, cache_dir=cache_dir)
    decision = first.describe()["auto"]
    assert decision["decision"] == "probed now" and "probing" in caplog.text
    chosen = decision["chosen"]
    assert f"{first.name}/{first.precision}" == chosen
    # every CPU candidate is either timed or has a reason, and the winner is the fastest timed one
    for name, precision in CPU_CANDIDATES:
        key = f"{name}/{precision}"
        assert key in decision["ms"] or key in decision["reasons"], key
    assert decision["ms"][chosen] == min(decision["ms"].values()) or all(
        decision["ms"][chosen] <= v * 1.0 / (1 - auto_module.TIE) for v in decision["ms"].values())
    assert "tensorrt" in first.skipped and "cuda" in first.skipped
    caplog.clear()

    def no_probe(*args, **kwargs):
        raise AssertionError("probed again although the decision is cached")

    monkeypatch.setattr(auto_module, "probe", no_probe)
    with caplog.at_level(logging.INFO, logger="panoptic_ros.runtime"):
        second = create_backend("auto", model, INPUT, metadata=metadata, threads=1, cache_dir=cache_dir)
    assert second.describe()["auto"]["decision"].startswith("cached") and second.describe()["auto"]["chosen"] == chosen
    assert f"backend auto -> {second.name}" in caplog.text


@pytest.mark.slow  # builds ONNX + OpenVINO models (and calibrates): ~1 min on a shared 2-core machine
def test_auto_without_openvino_falls_back_by_the_documented_order(net, tmp_path, monkeypatch, caplog):
    model, metadata = net
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    # Every probe is won by the first correct candidate: the fallback order decides, not the machine's load.
    monkeypatch.setattr(auto_module, "TIE", 1.0)
    with caplog.at_level(logging.INFO, logger="panoptic_ros.runtime"):
        backend = create_backend("auto", model, INPUT, metadata=metadata, threads=1, cache_dir=tmp_path)
    assert backend.name == "onnxruntime" and backend.precision == "fp32"  # int8: not calibrated in tmp_path
    for precision in ("int8", "bf16", "fp32"):
        assert "openvino cannot be imported" in backend.skipped[f"openvino/{precision}"]
    assert backend.skipped["onnxruntime/int8"] == HOW_TO_CALIBRATE
    assert "openvino/fp32: openvino cannot be imported" in caplog.text
    assert "openvino cannot be imported" in backend.describe()["auto"]["reasons"]["openvino/fp32"]


@pytest.mark.slow  # builds ONNX + OpenVINO models (and calibrates): ~1 min on a shared 2-core machine
def test_auto_rejects_a_wrong_candidate(net, tmp_path, monkeypatch):
    model, metadata = net
    from panoptic_ros.runtime import backends

    real = backends.FACTORIES["openvino"]

    def broken(*args, **kwargs):
        b = real(*args, **kwargs)
        run = b.run
        b.run = lambda x: {k: v * 2 for k, v in run(x).items()}  # e.g. a mis-converted layer
        return b

    monkeypatch.setitem(backends.FACTORIES, "openvino", broken)
    backend = create_backend("auto", model, INPUT, metadata=metadata, threads=1, cache_dir=tmp_path)
    assert backend.name != "openvino"
    assert "wrong: relative error" in backend.skipped["openvino/fp32"]


# -- threads ---------------------------------------------------------------------------------------------
def test_physical_cores_count_cores_not_hyperthreads(tmp_path):
    # two cores with two hyper-threads each, as sysfs lays them out
    for cpu, core in enumerate([0, 1, 0, 1]):
        topo = tmp_path / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "physical_package_id").write_text("0\n")
        (topo / "core_id").write_text(f"{core}\n")
    assert physical_cores({0, 1, 2, 3}, tmp_path) == 2
    assert physical_cores({0, 2}, tmp_path) == 1  # affinity to one core's two threads
    assert physical_cores({0, 1, 7}, tmp_path) == 3  # no topology for cpu7: the logical count


def test_one_threads_setting_reaches_every_library(net, cache_dir, monkeypatch):
    model, _ = net
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    ort_backend = create_backend("onnxruntime", model, INPUT, precision="fp32", threads=2, cache_dir=cache_dir)
    ov_backend = create_backend("openvino", model, INPUT, threads=2, cache_dir=cache_dir)
    assert ov_backend.compiled.get_property("INFERENCE_NUM_THREADS") == 2
    assert ort_backend.session.get_session_options().intra_op_num_threads == 2
    assert ov_backend.describe()["threads"] == 2 and ort_backend.describe()["threads"] == 2
    assert calls == [1, 1]  # torch only runs the head next to them: one thread (runtime.backends.head_torch_threads)
    calls.clear()
    create_backend("cpu", model, INPUT, threads=2)
    assert calls and set(calls) == {2}  # torch runs the network: all the threads
    default = create_backend("openvino", model, INPUT, cache_dir=cache_dir)  # threads unset: the physical cores
    assert default.compiled.get_property("INFERENCE_NUM_THREADS") == physical_cores()
    assert np.isfinite(default.run(torch.zeros(1, 3, *INPUT))["semantic"].numpy()).all()
