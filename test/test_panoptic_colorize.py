"""panoptic.colorize through its tables gives the bytes of the per-pixel formula, for any ids and alpha."""
from __future__ import annotations

import numpy as np
import pytest

from panoptic_ros.panoptic import OFFSET, _blend, colorize, semantic_from_ids
from panoptic_ros.taxonomy import Category, Taxonomy

CITYSCAPES = Taxonomy.cityscapes()


def formula(ids, taxonomy, image=None, alpha=0.5, outline=True):
    """colorize written out per pixel in float64 (what it computed before its tables)."""
    sem = semantic_from_ids(ids, taxonomy)
    rgb = taxonomy.colorize(sem).astype(np.int16)
    inst = (ids % OFFSET).astype(np.int16)
    shade = np.where(inst > 0, ((inst * 37) % 61) - 30, 0)
    rgb = np.clip(rgb + shade[..., None], 0, 255).astype(np.uint8)
    if image is not None:
        rgb = (alpha * rgb + (1 - alpha) * image).astype(np.uint8)
    if outline:
        edge = np.zeros(ids.shape, dtype=bool)
        edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
        edge[1:, :] |= ids[1:, :] != ids[:-1, :]
        rgb[edge & (inst > 0)] = 255
    return rgb


def random_ids(rng, h, w, taxonomy, odd=False):
    """Stuff and thing ids of the taxonomy (instances up to 999: the int16 shading wraps above 885),
    plus void; with ``odd`` also categories unknown to it, ids past its last category, and negative ids."""
    cats = list(taxonomy.ids) + [0]
    if odd:
        cats += [2, 200, 255, 300]
    ids = rng.choice(cats, (h, w)) * OFFSET + rng.integers(0, OFFSET, (h, w)) * (rng.random((h, w)) < 0.5)
    if odd:
        ids[0, 0] = -7
    return ids.astype(np.int32)


@pytest.mark.parametrize("alpha", [0.5, 0.3, 0.75, 0.0, 1.0, np.float32(0.4), 1, 1.5])
def test_colorize_equals_the_per_pixel_formula(alpha):
    rng = np.random.default_rng(0)
    for trial in range(12):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        ids = random_ids(rng, h, w, CITYSCAPES, odd=trial % 3 == 0)
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for outline in (True, False):
            got = colorize(ids, CITYSCAPES, image, alpha=alpha, outline=outline)
            want = formula(ids, CITYSCAPES, image, alpha=alpha, outline=outline)
            assert got.dtype == want.dtype == np.uint8 and got.shape == want.shape
            assert np.array_equal(got, want), (trial, alpha, outline)
        assert np.array_equal(colorize(ids, CITYSCAPES), formula(ids, CITYSCAPES))
        # strided views (transposed ids and image) and float ids take the same formula
        ids_t, image_t = ids.T, image.transpose(1, 0, 2)
        assert np.array_equal(colorize(ids_t, CITYSCAPES, image_t, alpha=alpha),
                              formula(ids_t, CITYSCAPES, image_t, alpha=alpha))
        as_float = ids.astype(np.float64)
        assert np.array_equal(colorize(as_float, CITYSCAPES, image, alpha=alpha),
                              formula(as_float, CITYSCAPES, image, alpha=alpha))


@pytest.mark.parametrize("alpha", [0.5, 0.1, 0.9, 1 / 3, 0.0, 1.0])
def test_blend_matches_the_float_formula_on_every_pair_of_bytes(alpha):
    colour = np.repeat(np.arange(256, dtype=np.uint8), 256 * 3).reshape(256, 256, 3)
    pixel = np.ascontiguousarray(colour.transpose(1, 0, 2))
    assert np.array_equal(_blend(colour, pixel, alpha), (alpha * colour + (1 - alpha) * pixel).astype(np.uint8))


def test_each_taxonomy_gets_its_own_colours():
    recoloured = Taxonomy([Category(c.id, c.train_id, c.name, (255 - c.color[0], c.color[1], 7), c.is_thing)
                           for c in CITYSCAPES.categories], "recoloured")
    rng = np.random.default_rng(1)
    ids = random_ids(rng, 20, 30, CITYSCAPES)
    first = colorize(ids, CITYSCAPES, outline=False)
    second = colorize(ids, recoloured, outline=False)
    assert not np.array_equal(first, second)
    assert np.array_equal(second, formula(ids, recoloured, outline=False))
    assert np.array_equal(colorize(ids, CITYSCAPES, outline=False), first)  # the first table still serves
