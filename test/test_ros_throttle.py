"""Per-kind log throttling of the node's error lines (ros/throttle.py, no ROS needed)."""
from __future__ import annotations

import pytest

from panoptic_ros.ros.throttle import ReasonThrottle, reason_code


def test_numbers_and_quoted_words_do_not_make_a_new_kind():
    a = reason_code("image", "cannot read image: data has 10 bytes, expected 36864 (step 384 x height 96)")
    b = reason_code("image", "cannot read image: data has 3 bytes, expected 1.5e3 (step 12 x height 8)")
    assert a == b
    assert reason_code("image", "unknown image encoding 'h264'") == reason_code("image", "unknown image encoding 'x'")
    assert a != reason_code("image", "cannot read image: step 383 is smaller than width x channels")
    assert reason_code("image", "same text") != reason_code("backend", "same text")


def test_each_kind_is_throttled_on_its_own():
    throttle = ReasonThrottle(period_s=1.0)
    assert throttle.check("a", 0.0) == (True, 0)
    assert throttle.check("b", 0.1) == (True, 0)  # another kind within the second: logged
    assert throttle.check("a", 0.2) == (False, 0)  # the same kind within the second: not
    assert throttle.check("a", 0.5) == (False, 0)
    assert throttle.check("b", 0.6) == (False, 0)
    assert throttle.check("a", 1.0) == (True, 2)  # a period later, with the count of lines it held back
    assert throttle.check("a", 1.5) == (False, 0)
    assert throttle.check("b", 1.2) == (True, 1)


def test_memory_is_bounded_by_max_keys():
    throttle = ReasonThrottle(period_s=10.0, max_keys=3)
    for i in range(100):
        throttle.check(f"k{i}", float(i) * 1e-3)
    assert len(throttle) == 3
    assert throttle.check("k99", 0.5) == (False, 0)  # recent keys are remembered
    assert throttle.check("k0", 0.5) == (True, 0)  # the oldest were forgotten


def test_bad_arguments():
    with pytest.raises(ValueError, match="period_s"):
        ReasonThrottle(period_s=-1.0)
