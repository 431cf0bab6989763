"""Imaging conditions of the world (fog, dusk, blur, ...) and the photometric training jitter."""
import numpy as np
import pytest

from panoptic_ros.data import conditions as imaging
from panoptic_ros.data.cli import main as world_main
from panoptic_ros.data.world import SyntheticWorld, WorldConfig


@pytest.fixture(scope="module")
def clear_frame():
    return SyntheticWorld(WorldConfig(width=160, height=80), seed=4).frame(1)


def test_default_world_is_unchanged_by_the_conditions_option(clear_frame):
    again = SyntheticWorld(WorldConfig(width=160, height=80, conditions="clear"), seed=4).frame(1)
    assert np.array_equal(again.image, clear_frame.image)
    assert np.array_equal(again.panoptic, clear_frame.panoptic)


def test_fog_follows_distance_and_keeps_labels(clear_frame):
    fog = SyntheticWorld(WorldConfig(width=160, height=80, conditions="fog"), seed=4).frame(1)
    assert np.array_equal(fog.panoptic, clear_frame.panoptic)  # conditions change pixels, never the truth
    gray = imaging.PRESETS["fog"].fog_gray
    change = np.abs(fog.image.astype(float) - clear_frame.image.astype(float)).mean(axis=2)
    near = np.isfinite(clear_frame.depth) & (clear_frame.depth < 8)
    far = np.isfinite(clear_frame.depth) & (clear_frame.depth > 40)
    assert near.any() and far.any()
    assert change[far].mean() > 2 * change[near].mean()
    # far pixels are pulled toward the airlight level: their distance to it shrinks
    d_clear = np.abs(clear_frame.image[far].astype(float) - gray).mean()
    d_fog = np.abs(fog.image[far].astype(float) - gray).mean()
    assert d_fog < 0.6 * d_clear


def test_koschmieder_transmission_is_exact():
    img = np.full((2, 3, 3), 40.0, np.float32)
    dist = np.array([[0.0, 50.0, np.inf], [10.0, 100.0, 25.0]], np.float32)
    out = imaging.apply(img, dist, imaging.Conditions(fog_density=0.02, fog_gray=200.0), np.random.default_rng(0))
    t = np.exp(-0.02 * np.minimum(dist, 1e4))
    assert np.allclose(out[..., 0], 40 * t + 200 * (1 - t), atol=1e-3)


@pytest.mark.parametrize("name,check", [
    ("night", lambda clear, img: img.mean() < 0.4 * clear.mean()),
    ("low_contrast", lambda clear, img: img.std() < 0.65 * clear.std()),
    ("defocus", lambda clear, img: np.abs(np.diff(img.astype(float), axis=1)).mean()
     < 0.7 * np.abs(np.diff(clear.astype(float), axis=1)).mean()),
    ("noise", lambda clear, img: np.abs(img.astype(float) - clear).mean() > 10),
])
def test_presets_do_what_they_say(clear_frame, name, check):
    frame = SyntheticWorld(WorldConfig(width=160, height=80, conditions=name), seed=4).frame(1)
    assert check(clear_frame.image.astype(float), frame.image)


def test_mixed_is_deterministic_and_varies_per_frame():
    world = SyntheticWorld(WorldConfig(width=96, height=48, conditions="mixed"), seed=3)
    stamps = [world._conditions(i * 10 ** 8) for i in range(40)]
    assert stamps == [world._conditions(i * 10 ** 8) for i in range(40)]
    clear = sum(c.is_clear for c in stamps)
    assert 3 <= clear <= 30 and len({c for c in stamps}) > 20


def test_bad_conditions_are_one_line_errors(capsys, tmp_path):
    with pytest.raises(ValueError, match="unknown condition 'foggy'"):
        WorldConfig(conditions="foggy")
    with pytest.raises(ValueError, match="fog_density"):
        imaging.Conditions(fog_density=-1)
    assert world_main(["generate", "--out", str(tmp_path / "x"), "--frames", "1", "--condition", "foggy"]) == 2
    assert "unknown condition" in capsys.readouterr().err


def test_photometric_jitter_changes_pixels_not_shape():
    rng = np.random.default_rng(0)
    image = np.random.default_rng(1).integers(0, 256, (32, 64, 3), dtype=np.uint8)
    outs = [imaging.photometric_jitter(image, rng) for _ in range(20)]
    assert all(o.shape == image.shape and o.dtype == np.uint8 for o in outs)
    assert sum(not np.array_equal(o, image) for o in outs) >= 10
    assert np.array_equal(imaging.photometric_jitter(image, rng, strength=0.0), image)
