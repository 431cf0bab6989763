"""Runtime backends: ONNX Runtime vs eager torch, identical panoptic ids through the Predictor, the ``auto``
choice and its reasons, the on-disk cache (stale / corrupt entries rebuilt), GPU backends, the bench CLI."""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
import statistics

import numpy as np
import pytest
import torch

from panoptic_ros.data.world import SyntheticWorld, WorldConfig
from panoptic_ros.model.checkpoint import build_metadata, save_checkpoint
from panoptic_ros.model.network import PanopticNet
from panoptic_ros.predictor import Predictor
from panoptic_ros.runtime import (FACTORIES, ArtifactCache, BackendUnavailable, create_backend,
                                  default_cache_dir, model_hash)
from panoptic_ros.runtime import bench
from panoptic_ros.runtime.auto import CPU_CANDIDATES
from panoptic_ros.runtime.backends import _import_torch_tensorrt
from panoptic_ros.taxonomy import Taxonomy

TAXONOMY = Taxonomy.cityscapes()
INPUT = (128, 256)
NORM = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
CUDA = torch.cuda.is_available()
NO_CUDA = "needs CUDA: torch.cuda.is_available() is False on this machine"


def _tensorrt_problem() -> str | None:
    try:
        _import_torch_tensorrt()
    except BackendUnavailable as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = PanopticNet.from_config({"backbone": "resnet18", "fpn_channels": 64, "head_channels": 64},
                                    taxonomy=TAXONOMY).eval()
    return model, build_metadata(model, TAXONOMY, INPUT, NORM)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("runtime_cache")


@pytest.fixture(scope="module")
def ort_backend(net, cache_dir):
    model, metadata = net
    return create_backend("onnxruntime", model, INPUT, metadata=metadata, threads=1, cache_dir=cache_dir)


# -- onnxruntime ----------------------------------------------------------------------------------------
def test_onnxruntime_matches_eager_torch(net, ort_backend, cache_dir):
    model, metadata = net
    assert ort_backend.describe()["cache"]["status"] == "built"
    assert "CPUExecutionProvider" in ort_backend.describe()["providers"]
    images = torch.randn(2, 3, *INPUT, generator=torch.Generator().manual_seed(3))  # batch 2 on a batch-1 model
    got = ort_backend.run(images)
    with torch.no_grad():
        want = model(images)
    assert list(got) == list(want)
    for name in want:
        assert got[name].shape == want[name].shape and got[name].dtype == torch.float32
        assert (got[name] - want[name]).abs().max() < 1e-3, name
    again = create_backend("onnxruntime", model, INPUT, metadata=metadata, threads=1, cache_dir=cache_dir)
    assert again.describe()["cache"]["status"] == "hit"
    with pytest.raises(ValueError, match="built for"):
        ort_backend.run(torch.zeros(1, 3, 64, 64))


def test_predictor_ids_identical_onnxruntime_vs_cpu(net, ort_backend):
    model, metadata = net
    # Random weights score every anchor near the focal-loss prior 0.01: a threshold just above it keeps a
    # few dozen detections, so the head's thing path is exercised too.
    cpu = Predictor(model, metadata, backend="cpu", score_threshold=0.011)
    ort = Predictor(model, metadata, backend=ort_backend, score_threshold=0.011)
    world = SyntheticWorld(WorldConfig(width=INPUT[1], height=INPUT[0]), seed=2)
    things = 0
    for i in range(3):
        image = world.frame(i).image
        a, b = cpu.predict(image), ort.predict(image)
        np.testing.assert_array_equal(a.panoptic, b.panoptic)
        assert [s.id for s in a.segments] == [s.id for s in b.segments]
        things += sum(s.is_thing for s in a.segments)
    assert things > 0, "no thing segment: the comparison did not exercise detections"


# -- auto -------------------------------------------------------------------------------------------------
def test_auto_logs_its_choice_and_the_reasons(net, cache_dir, caplog):
    model, metadata = net
    with caplog.at_level(logging.INFO, logger="panoptic_ros.runtime"):
        backend = create_backend("auto", model, INPUT, metadata=metadata, cache_dir=cache_dir)
    skipped = backend.describe()["skipped"]
    assert f"backend auto -> {backend.name}" in caplog.text
    for name, reason in skipped.items():
        assert reason and f"{name}: {reason}" in caplog.text
    if not CUDA:  # the GPU backends first, with their reasons; then every CPU candidate but the chosen one
        assert list(skipped)[:2] == ["tensorrt", "cuda"]
        assert "CUDA is not available" in skipped["cuda"] and "CUDA is not available" in skipped["tensorrt"]
        chosen = f"{backend.name}/{backend.describe()['precision']}"
        assert set(skipped) == {"tensorrt", "cuda"} | {f"{n}/{p}" for n, p in CPU_CANDIDATES} - {chosen}


def test_auto_falls_back_past_a_failing_backend(net, monkeypatch, caplog, tmp_path):
    model, metadata = net

    def broken(*args, **kwargs):
        raise BackendUnavailable("exporting the network to ONNX failed: test")

    for name in ("tensorrt", "cuda", "openvino", "onnxruntime"):
        monkeypatch.setitem(FACTORIES, name, broken)
    with caplog.at_level(logging.INFO, logger="panoptic_ros.runtime"):
        backend = create_backend("auto", model, INPUT, metadata=metadata, cache_dir=tmp_path)
    assert backend.name == "cpu"
    assert backend.describe()["skipped"]["onnxruntime/fp32"] == "exporting the network to ONNX failed: test"
    assert "backend auto -> cpu" in caplog.text
    with pytest.raises(ValueError, match="unknown backend"):
        create_backend("tpu", model, INPUT)


def test_tensorrt_says_why_it_is_unavailable(net):
    model, metadata = net
    problem = _tensorrt_problem()
    if problem is None:
        pytest.skip("torch_tensorrt and CUDA work here: nothing to report")
    with pytest.raises(BackendUnavailable) as info:
        create_backend("tensorrt", model, INPUT, metadata=metadata)
    assert str(info.value) == problem and ("torch_tensorrt" in problem or "CUDA" in problem)


# -- cache ------------------------------------------------------------------------------------------------
def _text_cache(root):
    builds = []

    def build(path):
        builds.append(path)
        path.write_text("artefact")

    def load(path):
        text = path.read_text()
        if text != "artefact":
            raise ValueError(f"bad content {text!r}")
        return text

    def fetch(env="1.0"):
        return ArtifactCache(root).fetch_or_build("demo", {"model": "abc"}, {"torch": env}, "a.txt", build, load)

    return builds, fetch


def test_cache_rebuilds_stale_and_corrupt_entries_with_a_message(tmp_path, caplog):
    builds, fetch = _text_cache(tmp_path)
    assert fetch()[1].status == "built" and fetch()[1].status == "hit" and len(builds) == 1
    entry = fetch()[1].path
    cases = [
        (lambda: None, "1.1", "was built for another setup: torch '1.0' (now '1.1')"),  # version upgrade
        (lambda: entry.write_text("artefac"), "1.1", "does not match its checksum"),  # truncated file
        (lambda: (entry.parent / "key.json").write_text("{not json"), "1.1", "unreadable key.json"),
        (lambda: entry.unlink(), "1.1", "a.txt is missing"),
    ]
    for damage, env, message in cases:
        damage()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="panoptic_ros.runtime"):
            value, outcome = fetch(env)
        assert value == "artefact" and outcome.status == "rebuilt" and message in outcome.reason
        assert message in caplog.text and "rebuilding" in caplog.text
        assert fetch(env)[1].status == "hit"
    # Content that passes the checksum but does not load (e.g. written by an incompatible library).
    key_file = entry.parent / "key.json"
    entry.write_text("garbage")
    stored = json.loads(key_file.read_text())
    stored["sha256"] = hashlib.sha256(b"garbage").hexdigest()
    key_file.write_text(json.dumps(stored))
    value, outcome = fetch("1.1")
    assert value == "artefact" and "loading failed: ValueError" in outcome.reason


def test_corrupt_onnx_entry_is_rebuilt(net, ort_backend, cache_dir, tmp_path, caplog):
    model, metadata = net
    shutil.copytree(cache_dir, tmp_path, dirs_exist_ok=True)  # a private copy of the built entry
    first = create_backend("onnxruntime", model, INPUT, threads=1, cache_dir=tmp_path)
    assert first.describe()["cache"]["status"] == "hit"
    onnx_file = first.cache_outcome.path
    onnx_file.write_bytes(onnx_file.read_bytes()[:1000])  # an interrupted copy
    with caplog.at_level(logging.WARNING, logger="panoptic_ros.runtime"):
        second = create_backend("onnxruntime", model, INPUT, threads=1, cache_dir=tmp_path)
    assert second.describe()["cache"]["status"] == "rebuilt" and "checksum" in caplog.text
    x = torch.zeros(1, 3, *INPUT)
    assert torch.equal(second.run(x)["semantic"], first.run(x)["semantic"])


def test_cache_location_and_model_hash(net, monkeypatch, tmp_path):
    model, _ = net
    monkeypatch.setenv("PANOPTIC_ROS_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" and ArtifactCache().root == tmp_path / "c"
    monkeypatch.delenv("PANOPTIC_ROS_CACHE")
    assert default_cache_dir().parts[-2:] == (".cache", "panoptic_ros")
    other = PanopticNet.from_config(model.config)
    other.load_state_dict(model.state_dict())
    assert model_hash(other) == model_hash(model)
    with torch.no_grad():
        next(other.parameters())[0, 0, 0, 0] += 1e-3
    assert model_hash(other) != model_hash(model)


# -- GPU backends (run wherever CUDA is present) --------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason=NO_CUDA)
def test_cuda_backend_matches_cpu(net):
    model, metadata = net
    gpu = create_backend("cuda", copy.deepcopy(model), INPUT)
    x = torch.randn(1, 3, *INPUT)
    got = gpu.run(x)
    with torch.no_grad():
        want = model(x)
    for name in want:
        assert got[name].device.type == "cuda"
        torch.testing.assert_close(got[name].cpu(), want[name], atol=0.05, rtol=0.05)  # FP16 autocast


@pytest.mark.gpu
@pytest.mark.skipif(_tensorrt_problem() is not None, reason=f"TensorRT backend unavailable: {_tensorrt_problem()}")
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_tensorrt_backend_matches_eager_and_caches(net, tmp_path, precision):
    model, metadata = net
    trt = create_backend("tensorrt", model, INPUT, precision=precision, cache_dir=tmp_path)
    assert trt.describe()["cache"]["status"] == "built"
    x = torch.randn(1, 3, *INPUT)
    got = trt.run(x)
    with torch.no_grad():
        want = model(x)
    tol = 0.05 if precision == "fp16" else 1e-3
    for name in want:
        torch.testing.assert_close(got[name].cpu(), want[name], atol=tol, rtol=tol)
    again = create_backend("tensorrt", model, INPUT, precision=precision, cache_dir=tmp_path)
    assert again.describe()["cache"]["status"] == "hit"


@pytest.mark.gpu
@pytest.mark.skipif(_tensorrt_problem() is not None, reason=f"TensorRT backend unavailable: {_tensorrt_problem()}")
def test_tensorrt_int8_from_world_frames_stays_close(net, tmp_path):
    """INT8 (ModelOpt PTQ) calibrated on world frames through the Predictor's preprocessing, as panoptic-export
    --int8 does; relative error within auto's INT8 tolerance on a frame not in the calibration set."""
    from panoptic_ros.runtime.auto import TOLERANCE, relative_error

    model, metadata = net
    predictor = Predictor(model, metadata, backend="cpu")
    world = SyntheticWorld(WorldConfig(width=INPUT[1], height=INPUT[0]), seed=3)
    batches = [predictor.preprocess([world.frame(i).image]) for i in range(9)]
    trt = create_backend("tensorrt", model, INPUT, precision="int8", cache_dir=tmp_path, calibration=batches[:8])
    with torch.no_grad():
        want = model(batches[8])
    assert relative_error({k: v.cpu() for k, v in trt.run(batches[8]).items()}, want) < TOLERANCE["int8"]


# -- bench ------------------------------------------------------------------------------------------------
def test_bench_smoke_writes_the_json_keys(net, cache_dir, tmp_path, capsys, monkeypatch):
    model, metadata = net
    ckpt = save_checkpoint(tmp_path / "m.pt", model, metadata)
    out = tmp_path / "bench.json"
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # keep this process's thread setting
    code = bench.main(["--model", str(ckpt), "--backends", "cpu,onnxruntime,tensorrt", "--frames", "2",
                       "--warmup", "1", "--threads", "1", "--cache-dir", str(cache_dir), "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert [r["backend"] for r in report["results"]] == ["cpu", "onnxruntime"] + (["tensorrt"] if not _tensorrt_problem() else [])
    if _tensorrt_problem():
        assert report["skipped"]["tensorrt"] == _tensorrt_problem() and "tensorrt: skipped" in printed
    for entry in report["results"]:
        assert set(entry) >= {"device", "backend", "input_size", "stages_ms", "end_to_end_ms", "end_to_end_over_network"}
        assert list(entry["stages_ms"]) == ["decode", "preprocess", "network", "head", "grid", "encode"]
        assert all(v > 0 for v in entry["stages_ms"].values())
        assert entry["input_size"] == list(INPUT) and entry["frames"] == 2
        # Each frame is timed as a whole, so end to end covers at least the network.
        assert entry["end_to_end_ms"] >= entry["stages_ms"]["network"]
        # The ratio is paired: the median over frames of each frame's end to end / network.
        frames = entry["per_frame_ms"]
        assert len(frames["network"]) == len(frames["end_to_end"]) == 2
        assert entry["end_to_end_over_network"] == pytest.approx(
            bench.paired_ratio(frames["end_to_end"], frames["network"]), rel=1e-4)
        assert entry["end_to_end_over_network"] >= 1 and entry["stages_ms"]["network"] == pytest.approx(
            statistics.median(frames["network"]), abs=2e-3)
        assert entry["ratio_of_medians"] == pytest.approx(entry["end_to_end_ms"] / entry["stages_ms"]["network"], rel=1e-3)
        if not CUDA:
            assert entry["device"].startswith("cpu")
    assert "end to end / network" in printed


@pytest.mark.slow  # builds ONNX + OpenVINO models (and calibrates): ~1 min on a shared 2-core machine
def test_bench_compares_precisions_to_onnxruntime_fp32_with_heldout_pq(net, cache_dir, tmp_path, capsys, monkeypatch):
    from panoptic_ros.data.cli import main as world_main
    from panoptic_ros.runtime.quantize import HOW_TO_CALIBRATE

    model, metadata = net
    ckpt = save_checkpoint(tmp_path / "m.pt", model, metadata)
    data = tmp_path / "heldout"
    assert world_main(["generate", "--out", str(data), "--seed", "2", "--frames", "2", "--width", str(INPUT[1]),
                       "--height", str(INPUT[0]), "--quiet"]) == 0
    out = tmp_path / "bench.json"
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    code = bench.main(["--model", str(ckpt), "--backends", "onnxruntime/fp32,onnxruntime/int8,cpu", "--frames", "2",
                       "--warmup", "1", "--threads", "1", "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
                       "--eval", str(data)])
    assert code == 0
    report = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert report["skipped"] == {"onnxruntime/int8": HOW_TO_CALIBRATE}  # no calibrated model in this cache
    ort_result, cpu_result = report["results"]
    assert ort_result["vs_reference"]["network_speedup"] == 1.0
    assert cpu_result["vs_reference"]["network_speedup"] == pytest.approx(
        ort_result["stages_ms"]["network"] / cpu_result["stages_ms"]["network"], rel=1e-2)
    # same weights, both FP32: the same held-out PQ, measured on the 2 frames
    assert ort_result["heldout_pq"]["frames"] == 2 and ort_result["heldout_pq"]["minus_fp32"] == 0.0
    assert cpu_result["heldout_pq"]["all"] == pytest.approx(ort_result["heldout_pq"]["all"], abs=0.5)
    assert "network x faster" in printed and "held-out PQ" in printed
    assert bench.main(["--model", str(ckpt), "--backends", "openvino/fp64"]) == 2


def test_paired_ratio_divides_within_frames():
    network, other = [100.0, 90.0, 110.0], [5.0, 30.0, 5.5]  # the second frame hit a slow moment after the network
    totals = [n + o for n, o in zip(network, other)]
    assert bench.paired_ratio(totals, network) == pytest.approx(1.05)  # the typical frame: 5 % outside the network
    # The ratio of the medians divides the total of frame 3 by the network time of frame 1.
    assert statistics.median(totals) / statistics.median(network) == pytest.approx(1.155)
    with pytest.raises(ValueError):
        bench.paired_ratio([1.0, 2.0], [1.0])


def test_bench_needs_a_model(tmp_path, capsys):
    assert bench.main(["--model", str(tmp_path / "missing.pt"), "--frames", "1"]) == 2
    assert "pass --model" in capsys.readouterr().err


# -- TensorRT INT8: the calibration plumbing runs on the CPU; the engine build needs a GPU ---------------------
def test_tensorrt_int8_calibration_set_is_checked_and_fed_once(net):
    from panoptic_ros.runtime.backends import TensorRTBackend, calibration_loop, check_calibration

    model, metadata = net
    good = [torch.randn(1, 3, *INPUT, dtype=torch.float64) for _ in range(3)]
    for bad, match in ((None, "needs calibration batches"), ([], "empty"),
                       ([torch.zeros(1, 3, 64, 64)], r"batch 0 is .*expected float \(B, 3, 128, 256\)"),
                       ([torch.zeros(1, 3, *INPUT, dtype=torch.uint8)], "batch 0 is torch.uint8")):
        with pytest.raises(ValueError, match=match):  # before any GPU check: the caller's error on every machine
            TensorRTBackend(model, INPUT, precision="int8", calibration=bad)
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append((x.dtype, x.device.type, torch.is_grad_enabled(), x.clone()))
            return x

    calibration_loop(check_calibration(good, INPUT), torch.device("cpu"))(Recorder())
    assert len(seen) == 3 and all(s[:3] == (torch.float32, "cpu", False) for s in seen)
    assert all(torch.equal(s[3], g.float()) for s, g in zip(seen, good))


@pytest.mark.skipif(_tensorrt_problem() is None, reason="TensorRT works here: the message path is not taken")
def test_tensorrt_int8_with_a_valid_calibration_set_says_why_it_cannot_build(net):
    from panoptic_ros.runtime.backends import TensorRTBackend

    with pytest.raises(BackendUnavailable, match="torch_tensorrt cannot be imported|CUDA is not available"):
        TensorRTBackend(net[0], INPUT, precision="int8", calibration=[torch.zeros(1, 3, *INPUT)])
