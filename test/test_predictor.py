"""Predictor: any image size in, panoptic result at that size out; batching, settings, bad input."""
import numpy as np
import pytest
import torch

from panoptic_ros.model.checkpoint import build_metadata
from panoptic_ros.model.network import PanopticNet
from panoptic_ros.panoptic import segments_from_ids, semantic_from_ids
from panoptic_ros.predictor import PAPER_SCORE_THRESHOLD, Predictor
from panoptic_ros.taxonomy import Taxonomy

INPUT = (64, 128)
LOW_SCORE = 0.011  # random weights score ~0.01: keep detections so the thing path runs


@pytest.fixture(scope="module")
def model_and_meta():
    torch.manual_seed(0)
    taxonomy = Taxonomy.cityscapes()
    model = PanopticNet.from_config({"backbone": "resnet18", "fpn_channels": 32, "head_channels": 32},
                                    taxonomy=taxonomy).eval()
    meta = build_metadata(model, taxonomy, INPUT, {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
    return model, meta


def images(seed, shapes):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]


def test_any_size_in_same_size_out_with_consistent_tables(model_and_meta):
    model, meta = model_and_meta
    p = Predictor(model, meta, backend="cpu", score_threshold=LOW_SCORE, stuff_area_threshold=0)
    things = 0
    for image in images(1, [(64, 128), (100, 150), (480, 640), (37, 301)]):
        r = p.predict(image)
        assert r.panoptic.shape == image.shape[:2] and r.panoptic.dtype == np.int32
        np.testing.assert_array_equal(r.semantic, semantic_from_ids(r.panoptic, p.taxonomy))
        expected = segments_from_ids(r.panoptic, p.taxonomy)
        assert [(s.id, s.area, s.bbox) for s in r.segments] == [(s.id, s.area, s.bbox) for s in expected]
        things += sum(s.is_thing for s in r.segments)
        det = r.detections  # the detection branch's own output, scaled to this image
        h, w = image.shape[:2]
        assert len(det["boxes"]) == len(det["scores"]) == len(det["category_ids"])
        assert (det["scores"] >= LOW_SCORE).all() and set(det["category_ids"]) <= set(p.taxonomy.ids[p.taxonomy.thing_train_ids])
        assert (det["boxes"][:, [0, 2]] <= w + 1e-3).all() and (det["boxes"][:, [1, 3]] <= h + 1e-3).all()
        assert (det["boxes"] >= -1e-3).all()
        assert set(r.timings_ms) == {"preprocess", "network", "head", "postprocess"}
    assert things > 0, "no thing segment at all: the detection path was not exercised"


def test_batch_equals_one_by_one(model_and_meta):
    model, meta = model_and_meta
    p = Predictor(model, meta, backend="cpu", score_threshold=LOW_SCORE)
    batch = images(2, [(64, 128), (120, 200), (64, 128)])
    for single, batched in zip([p.predict(i) for i in batch], p.predict_batch(batch)):
        np.testing.assert_array_equal(single.panoptic, batched.panoptic)
        # Batched convolutions round differently in the last float32 bits: scores equal to 1e-6.
        assert [(s.id, s.area, s.bbox) for s in single.segments] == [(s.id, s.area, s.bbox) for s in batched.segments]
        assert [s.score for s in single.segments] == pytest.approx([s.score for s in batched.segments], abs=1e-6)


def test_coarse_head_grid_gives_blocks_at_input_size(model_and_meta):
    model, meta = model_and_meta
    image = images(3, [INPUT])[0]
    fine = Predictor(model, meta, backend="cpu", score_threshold=LOW_SCORE).predict(image).panoptic
    coarse = Predictor(model, meta, backend="cpu", score_threshold=LOW_SCORE, head_stride=4).predict(image).panoptic
    assert coarse.shape == fine.shape
    blocks = coarse.reshape(INPUT[0] // 4, 4, INPUT[1] // 4, 4)
    assert (blocks == blocks[:, :1, :, :1]).all(), "stride-4 ids must be constant on 4x4 blocks"
    assert not (fine.reshape(blocks.shape) == fine.reshape(blocks.shape)[:, :1, :, :1]).all()
    with pytest.raises(ValueError, match="head_stride"):
        Predictor(model, meta, backend="cpu", head_stride=3)


def test_settings_come_from_the_checkpoint_unless_given(model_and_meta):
    model, meta = model_and_meta
    assert Predictor(model, meta, backend="cpu").score_threshold == PAPER_SCORE_THRESHOLD
    tuned = dict(meta, inference={"score_threshold": 0.55, "stuff_area_threshold": 77})
    p = Predictor(model, tuned, backend="cpu")
    assert (p.score_threshold, p.stuff_area_threshold) == (0.55, 77)
    p = Predictor(model, tuned, backend="cpu", score_threshold=0.2, stuff_area_threshold=5)
    assert (p.score_threshold, p.stuff_area_threshold) == (0.2, 5)


def test_bad_images_and_non_finite_outputs_are_refused(model_and_meta):
    model, meta = model_and_meta
    p = Predictor(model, meta, backend="cpu")
    for bad in (np.zeros((64, 128), np.uint8), np.zeros((64, 128, 4), np.uint8), np.zeros((64, 128, 3), np.float32),
                np.zeros((4, 4, 3), np.uint8)):
        with pytest.raises(ValueError):
            p.predict(bad)
    clean = p.backend.run(p.preprocess(images(4, [INPUT])))
    p.fuse(clean)
    rng = np.random.default_rng(0)
    for key in ("semantic", "centers", "cls_logits"):
        for value in (float("nan"), float("inf"), -float("inf")):
            outputs = {k: v.clone() for k, v in clean.items()}
            flat = outputs[key].view(-1)
            flat[int(rng.integers(0, flat.numel()))] = value  # anywhere, not only the first element
            with pytest.raises(FloatingPointError, match="NaN or inf"):
                p.fuse(outputs)


def test_bench_times_each_head_stride_side_by_side(model_and_meta, tmp_path, monkeypatch):
    import json

    from panoptic_ros.model.checkpoint import save_checkpoint
    from panoptic_ros.runtime import bench

    model, meta = model_and_meta
    ckpt = save_checkpoint(tmp_path / "m.pt", model, meta)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # keep this process's thread setting
    out = tmp_path / "bench.json"
    assert bench.main(["--model", str(ckpt), "--backends", "cpu", "--frames", "1", "--warmup", "0",
                       "--head-strides", "1,4", "--out", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert [(r["backend"], r["head_stride"]) for r in results] == [("cpu", 1), ("cpu", 4)]
    assert all(r["end_to_end_over_network"] > 1 for r in results)
    for r in results:  # one frame: the CPU time of the stages partitions the frame's CPU time
        cpu = r["cpu_ms"]
        assert set(cpu) == {"network", "decode", "preprocess+head", "grid", "encode", "end_to_end"}
        parts = cpu["network"] + cpu["decode"] + cpu["preprocess+head"] + cpu["grid"] + cpu["encode"]
        assert parts == pytest.approx(cpu["end_to_end"], abs=0.01) and cpu["preprocess+head"] > 0
    assert bench.main(["--model", str(ckpt), "--backends", "cpu", "--head-strides", "3"]) == 2


def test_preprocess_is_the_float32_normalisation_in_nchw(model_and_meta):
    import cv2

    model, meta = model_and_meta
    p = Predictor(model, meta, backend="cpu")
    h, w = INPUT
    batch = images(7, [INPUT, (50, 90), (INPUT[0] * 2, INPUT[1] * 3)])
    batch += [batch[0][..., ::-1], batch[2][::2, ::3]]  # views: reversed channels (BGR input), strided
    got = p.preprocess(batch)
    assert got.shape == (5, 3, h, w) and got.dtype == torch.float32 and got.is_contiguous()
    for i, image in enumerate(batch):
        resized = image if image.shape[:2] == INPUT else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        want = (resized.astype(np.float32) - p.mean) / p.std  # float32 per value, HWC
        assert np.array_equal(got[i].numpy(), want.transpose(2, 0, 1))


@pytest.mark.parametrize("shape, size", [((1, 19, 12, 24), (48, 96)), ((2, 3, 7, 9), (14, 27)),
                                         ((1, 2, 16, 32), (16, 32)), ((1, 4, 40, 64), (13, 21)),
                                         ((1, 3, 7, 9), (20, 33)), ((2, 5, 6, 4), (18, 8)), ((1, 2, 1, 3), (4, 6))])
def test_opencv_bilinear_resize_equals_torch_to_float_rounding(shape, size):
    import torch.nn.functional as F

    from panoptic_ros.predictor import resize_bilinear

    x = torch.randn(shape, generator=torch.Generator().manual_seed(1)) * 8
    x[..., 0, 0] = 30.0  # a corner: the clamped border rule decides these rows and columns
    want = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    got = resize_bilinear(x, size)
    assert got.shape == want.shape and got.dtype == torch.float32
    whole = size[0] % shape[2] == 0 and size[1] % shape[3] == 0
    if whole:  # OpenCV's path
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    else:  # torch's own kernel
        assert torch.equal(got, want)
    # Other dtypes take torch's kernel itself.
    assert torch.equal(resize_bilinear(x.double(), size), F.interpolate(x.double(), size=size, mode="bilinear",
                                                                        align_corners=False))


def test_network_input_size_keeps_aspect_and_pixel_budget():
    from panoptic_ros.predictor import network_input_size

    budget = 192 * 384
    assert network_input_size((192, 384), budget) == (192, 384)  # the checkpoint's own shape is unchanged
    assert network_input_size((480, 640), budget) == (224, 320)
    assert network_input_size((720, 1280), budget) == (192, 352)
    for hw in [(480, 640), (720, 1280), (1080, 1920), (1200, 1600), (100, 900)]:
        h, w = network_input_size(hw, budget)
        assert h % 32 == 0 and w % 32 == 0
        assert abs(h * w / budget - 1) < 0.25
        assert abs(np.log((w / h) / (hw[1] / hw[0]))) < 0.2  # the aspect ratio to within the rounding


def test_image_aspect_ratio_runs_its_own_network_size(model_and_meta):
    """Auto size = the fixed-size predictor at the computed size; sizes get their own backends, reused."""
    model, meta = model_and_meta
    auto = Predictor(model, meta, backend="cpu", score_threshold=LOW_SCORE)
    square = images(3, [(128, 128)])[0]
    r = auto.predict(square)
    assert auto.backend.input_size == (96, 96)  # 64 x 128 = 8192 px -> sqrt = 90.5 -> 96 (a multiple of 32)
    fixed = Predictor(model, meta, backend="cpu", score_threshold=LOW_SCORE, input_size=(96, 96))
    np.testing.assert_array_equal(r.panoptic, fixed.predict(square).panoptic)
    wide = images(4, [(64, 128)])[0]
    auto.predict(wide)
    assert auto.backend.input_size == (64, 128)
    backends = {size: rt[0] for size, rt in auto._runtimes.items()}
    auto.predict(square)
    assert auto.backend is backends[(96, 96)]  # built once per size
    squashed = Predictor(model, meta, backend="cpu", score_threshold=LOW_SCORE, input_size=(64, 128))
    squashed.predict(square)
    assert squashed.backend.input_size == (64, 128)
    with pytest.raises(ValueError, match="multiples of 32"):
        Predictor(model, meta, backend="cpu", input_size=(100, 128))


@pytest.mark.parametrize("picked", ["int8", "bf16"])
def test_auto_is_probed_once_and_its_pick_serves_other_sizes(model_and_meta, monkeypatch, picked):
    """A second network size reuses the backend and precision auto picked; only where that one cannot be
    built (an INT8 model calibrated at another size) does auto probe again, at that size."""
    import panoptic_ros.runtime as runtime
    from panoptic_ros.runtime import BackendUnavailable, EagerBackend

    model, meta = model_and_meta
    calls = []

    def fake_create(name, model, size, precision="auto", **_):
        calls.append((name, tuple(size), precision))
        if name == "auto":
            backend = EagerBackend(model, size, "cpu")
            backend.name, backend.precision, backend.skipped = "openvino", picked, {"tensorrt": "no GPU"}
            return backend
        if precision == "int8" and tuple(size) != INPUT:
            raise BackendUnavailable("no INT8 model calibrated at this size")
        backend = EagerBackend(model, size, "cpu")
        backend.name = name
        return backend

    monkeypatch.setattr(runtime, "create_backend", fake_create)
    p = Predictor(model, meta, backend="auto", score_threshold=LOW_SCORE)
    assert calls == [("auto", INPUT, "auto")]
    p.predict(images(7, [(64, 128)])[0])  # the checkpoint's size: built already
    assert len(calls) == 1
    p.predict(images(8, [(96, 96)])[0])  # another aspect ratio: auto's pick, and a probe only if it fails
    size = p.network_size((96, 96))
    if picked == "int8":
        assert calls[1:] == [("openvino", size, "int8"), ("auto", size, "auto")]
    else:
        assert calls[1:] == [("openvino", size, "bf16")]
        assert p.backend.name == "openvino" and p.backend.skipped == {"tensorrt": "no GPU"}
    assert p.skipped == {"tensorrt": "no GPU"}
