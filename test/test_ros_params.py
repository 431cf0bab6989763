"""The node's parameter table and its validation (no ROS needed)."""
from __future__ import annotations

import pytest

from panoptic_ros.geometry import GridSpec, Pose
from panoptic_ros.ros.params import (BACKENDS, HEAD_STRIDES, OVERLAP_POLICIES, PARAMETERS, NodeConfig, help_text)


def test_defaults_make_a_valid_config():
    cfg = NodeConfig.from_values({})
    assert cfg.backend == "auto" and cfg.input_size is None and cfg.stuff_area_threshold is None
    assert cfg.grid == GridSpec(0.2, 0.0, 40.0, -20.0, 20.0, "base_link")
    assert cfg.camera_pose == Pose(1.5, 0.0, 1.5, 0.0, 0.0, 0.0)
    assert cfg.input_qos == "sensor_data" and cfg.image_transport == "raw"
    assert cfg.camera_pose_source == "auto" and cfg.tf_timeout == 0.05 and cfg.max_consecutive_failures == 0
    assert cfg.head_stride == 1 and NodeConfig.from_values({"head_stride": 2}).head_stride == 2


def test_values_override_defaults():
    cfg = NodeConfig.from_values({"input_size": [256, 512], "stuff_area_threshold": 100, "output_frame": "odom",
                                  "camera.pitch": 0.1, "grid.resolution": 0.5})
    assert cfg.input_size == (256, 512) and cfg.stuff_area_threshold == 100
    assert cfg.grid.frame_id == "odom" and cfg.grid.resolution == 0.5 and cfg.camera_pose.pitch == 0.1


@pytest.mark.parametrize("values,needle", [
    ({"backend": "gpu"}, "backend='gpu': choose one of auto"),
    ({"score_threshold": 1.5}, r"score_threshold=1.5 is outside \[-1.0, 1.0\]"),
    ({"input_size": [100, 200]}, "multiples of 32"),
    ({"input_size": [256]}, "input_size"),
    ({"grid.x_max": -5.0}, "empty or inverted grid"),
    ({"unknown": "yes"}, "wrong type"),
    ({"image_transport": "theora"}, "image_transport"),
    ({"no_such_parameter": 1}, "unknown parameters"),
    ({"camera_pose_source": "gps"}, "camera_pose_source='gps': choose one of auto, parameters, tf"),
    ({"max_consecutive_failures": -1}, r"max_consecutive_failures=-1 is outside \[0, 1000000\]"),
    ({"max_consecutive_failures": 2.5}, "wrong type"),
    ({"tf_timeout": -0.1}, "tf_timeout"),
    ({"head_stride": 3}, "head_stride=3: choose one of 1, 2, 4"),
    ({"head_stride": 8}, r"head_stride=8 is outside \[1, 4\]"),
])
def test_bad_values_name_the_parameter(values, needle):
    with pytest.raises(ValueError, match=needle):
        NodeConfig.from_values(values)


def test_choices_match_the_core():
    from panoptic_ros.head import POLICIES

    assert set(OVERLAP_POLICIES) == set(POLICIES)
    from panoptic_ros.evaluation import run
    from panoptic_ros.predictor import HEAD_STRIDES as CORE_STRIDES

    assert HEAD_STRIDES == run.HEAD_STRIDES == CORE_STRIDES
    from panoptic_ros.runtime import backends

    assert set(BACKENDS) - {"auto"} == set(backends.AUTO_ORDER)


def test_every_parameter_is_documented_in_help():
    text = help_text()
    for spec in PARAMETERS:
        assert spec.name in text and spec.description
