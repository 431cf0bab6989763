"""Small hand-made street samples (Cityscapes taxonomy) for the model and training tests."""
from __future__ import annotations

import numpy as np

from panoptic_ros.data.frame import Sample
from panoptic_ros.panoptic import encode_id, segments_from_ids
from panoptic_ros.taxonomy import Taxonomy


def street_samples(n: int, height: int = 96, width: int = 192, seed: int = 0, crowd: bool = False) -> list[Sample]:
    """Sky / building / road bands with car and person boxes drawn in their class colours plus noise."""
    taxonomy = Taxonomy.cityscapes()
    rng = np.random.default_rng(seed)
    out = []
    for index in range(n):
        ids = np.zeros((height, width), np.int32)
        ids[: height // 3] = encode_id(taxonomy.by_name["sky"].id)
        ids[height // 3: height // 2] = encode_id(taxonomy.by_name["building"].id)
        ids[height // 2:] = encode_id(taxonomy.by_name["road"].id)
        ids[:, :2] = 0  # a void strip
        instance = {"car": 0, "person": 0}
        crowd_ids = []
        for k in range(int(rng.integers(1, 4))):
            name = "car" if k % 2 == 0 else "person"
            bh = int(rng.integers(height // 5, height // 3))
            bw = int(bh * (1.6 if name == "car" else 0.45))
            y = int(rng.integers(height // 3, height - bh))
            x = int(rng.integers(2, width - bw))
            instance[name] += 1
            seg_id = int(encode_id(taxonomy.by_name[name].id, instance[name]))
            ids[y: y + bh, x: x + bw] = seg_id
        if crowd:
            seg_id = int(encode_id(taxonomy.by_name["person"].id, 99))
            ids[height - 8:, width - 12:] = seg_id
            crowd_ids.append(seg_id)
        sem = np.where(ids > 0, taxonomy.id_to_train[np.clip(ids // 1000, 0, 255)], 255)
        colors = np.vstack([taxonomy.colors, np.zeros((256 - len(taxonomy), 3), np.uint8)])
        image = colors[sem].astype(np.int16) + rng.integers(-20, 21, (height, width, 3))
        image = np.clip(image, 0, 255).astype(np.uint8)
        out.append(Sample(image, ids, segments_from_ids(ids, taxonomy, crowd_ids=crowd_ids), f"street_{index:03d}"))
    return out
