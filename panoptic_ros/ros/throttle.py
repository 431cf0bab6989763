"""Log throttling per kind of problem: a repeated problem gets one line a period, a different one its own line.

rclpy's ``throttle_duration_sec`` throttles per call site, so one error path reporting many kinds of bad input
showed only the first kind in each second. Hand-written because no logging library keys throttles by message.
"""
from __future__ import annotations

import re
from collections import OrderedDict

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def reason_code(category: str, reason: str, length: int = 60) -> str:
    """A short key naming the kind of problem: ``category`` plus ``reason`` with quoted words and numbers
    masked, so "data has 10 bytes" and "data has 12 bytes" are one kind and "step ..." is another."""
    masked = _NUMBER.sub("#", _QUOTED.sub("'.'", reason))
    return f"{category}:{masked[:length]}"


class ReasonThrottle:
    """Decides which lines to log: at most one per ``period_s`` for each key.

    Args:
        period_s: seconds between two lines of one key.
        max_keys: keys remembered (least recently seen forgotten first), so random input cannot grow memory.
    """

    def __init__(self, period_s: float = 1.0, max_keys: int = 64):
        if period_s < 0 or max_keys < 1:
            raise ValueError(f"need period_s >= 0 and max_keys >= 1, got {period_s}, {max_keys}")
        self.period_s = float(period_s)
        self.max_keys = int(max_keys)
        self._keys: OrderedDict[str, list] = OrderedDict()  # key -> [time of the last line, lines suppressed since]

    def __len__(self) -> int:
        return len(self._keys)

    def check(self, key: str, now: float) -> tuple[bool, int]:
        """(log this line?, how many lines of ``key`` were suppressed since its last logged line)."""
        entry = self._keys.get(key)
        if entry is None:
            self._keys[key] = [now, 0]
            if len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
            return True, 0
        self._keys.move_to_end(key)
        if now - entry[0] >= self.period_s:
            suppressed, entry[0], entry[1] = entry[1], now, 0
            return True, suppressed
        entry[1] += 1
        return False, 0
