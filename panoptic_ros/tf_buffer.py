"""A small time-indexed transform buffer with tf2's lookup semantics, for machines without ``tf2_ros`` (no ROS).

Written by hand because tf2's buffer (C++ ``tf2::BufferCore``) only ships with ``tf2_ros``, which no PyPI wheel
provides; the node feeds this one from ``/tf`` and ``/tf_static`` itself (:mod:`panoptic_ros.ros.tf_listener`).

Semantics follow tf2:
- every frame has one parent; ``set_transform(parent, child, ...)`` stores ``parent <- child`` (a child-frame
  point mapped into the parent frame, as ``geometry_msgs/TransformStamped``);
- static transforms hold at every time and are kept forever (the newest replaces the older one); dynamic ones
  are kept for ``cache_s`` seconds behind the newest stamp of their frame;
- :meth:`TransformBuffer.lookup` ``(target, source, stamp)`` = tf2 ``lookupTransform(target, source, time)``:
  the transform taking source-frame points into the target frame, composed along the tree through the two
  frames' closest common ancestor, each dynamic link interpolated at ``stamp`` (translation linearly, rotation by
  slerp); a stamp outside a link's stored span is refused (tf2's ExtrapolationException), never extrapolated;
  ``stamp == 0`` = the latest time all the chain's dynamic links have in common.
"""
from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass

import numpy as np

from .geometry import quaternion_from_rotation, rotation_from_quaternion


class TransformUnavailable(LookupError):
    """No transform for this lookup; the message says why (unknown frame, not connected, extrapolation)."""


@dataclass(frozen=True)
class _Sample:
    stamp_ns: int
    parent: str
    translation: np.ndarray  # (3,)
    quaternion: np.ndarray  # (4,) x y z w, unit


def slerp(q0: np.ndarray, q1: np.ndarray, s: float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions (x, y, z, w) along the shorter arc, s in [0, 1]."""
    d = float(np.dot(q0, q1))
    if d < 0.0:
        q1, d = -q1, -d
    if d > 0.9995:  # nearly equal: normalised lerp avoids dividing by sin(~0)
        q = q0 + s * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(d)
    return (np.sin((1.0 - s) * theta) * q0 + np.sin(s * theta) * q1) / np.sin(theta)


def _matrix(translation: np.ndarray, quaternion: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = rotation_from_quaternion(*quaternion)
    T[:3, 3] = translation
    return T


def _seconds(stamp_ns: int) -> str:
    return f"{stamp_ns / 1e9:.6f}"


class TransformBuffer:
    """Thread-safe store of ``parent <- child`` transforms, looked up as tf2 does (see the module docstring)."""

    def __init__(self, cache_s: float = 10.0):
        if not cache_s > 0:
            raise ValueError(f"cache_s must be positive, got {cache_s}")
        self.cache_ns = int(round(cache_s * 1e9))
        self._static: dict[str, _Sample] = {}
        self._dynamic: dict[str, list[_Sample]] = {}  # child -> samples sorted by stamp
        self._lock = threading.Lock()

    # -- writing -----------------------------------------------------------------------------------------------
    def set_transform(self, parent: str, child: str, stamp_ns: int, translation, quaternion_xyzw,
                      static: bool = False) -> None:
        """Store ``parent <- child`` at ``stamp_ns``. ValueError for empty or equal frame names, a non-finite
        translation or a quaternion that is not a rotation (tf2 rejects those too)."""
        parent, child = parent.lstrip("/"), child.lstrip("/")
        if not parent or not child or parent == child:
            raise ValueError(f"transform {parent!r} <- {child!r}: frame ids must be non-empty and differ")
        t = np.asarray(translation, dtype=np.float64).reshape(3)
        if not np.all(np.isfinite(t)):
            raise ValueError(f"transform {parent} <- {child}: translation {t.tolist()} is not finite")
        q = np.asarray(quaternion_xyzw, dtype=np.float64).reshape(4)
        rotation_from_quaternion(*q)  # raises for a non-rotation
        sample = _Sample(int(stamp_ns), parent, t, q / np.linalg.norm(q))
        with self._lock:
            if static:
                self._static[child] = sample
                self._dynamic.pop(child, None)
                return
            self._static.pop(child, None)
            samples = self._dynamic.setdefault(child, [])
            stamps = [s.stamp_ns for s in samples]
            i = bisect.bisect_left(stamps, sample.stamp_ns)
            if i < len(samples) and samples[i].stamp_ns == sample.stamp_ns:
                samples[i] = sample  # same stamp again: the newer message wins
            else:
                samples.insert(i, sample)
            horizon = samples[-1].stamp_ns - self.cache_ns
            while samples and samples[0].stamp_ns < horizon:
                samples.pop(0)

    # -- reading -----------------------------------------------------------------------------------------------
    def frames(self) -> set[str]:
        with self._lock:
            known = set(self._static) | set(self._dynamic)
            known |= {s.parent for s in self._static.values()} | {v[-1].parent for v in self._dynamic.values() if v}
        return known

    def lookup(self, target: str, source: str, stamp_ns: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(translation (3,), quaternion xyzw (4,)) of ``target <- source`` at ``stamp_ns`` (0 = latest common
        time). Raises :class:`TransformUnavailable` saying why."""
        T = self.lookup_matrix(target, source, stamp_ns)
        return T[:3, 3].copy(), np.array(quaternion_from_rotation(T[:3, :3]))

    def lookup_matrix(self, target: str, source: str, stamp_ns: int = 0) -> np.ndarray:
        """4x4 ``target <- source`` (see :meth:`lookup`)."""
        target, source = target.lstrip("/"), source.lstrip("/")
        with self._lock:
            if target == source and (target in self._static or target in self._dynamic or self._is_parent(target)):
                return np.eye(4)
            for name in (target, source):
                if not (name in self._static or name in self._dynamic or self._is_parent(name)):
                    raise TransformUnavailable(f'"{name}" passed to lookup_transform argument '
                                               f'{"target_frame" if name == target else "source_frame"} does not '
                                               "exist")
            up_source = self._chain(source)
            up_target = self._chain(target)
            ancestors = {frame: k for k, frame in enumerate(up_target)}
            common = next((k for k, frame in enumerate(up_source) if frame in ancestors), None)
            if common is None:
                raise TransformUnavailable(f'could not find a connection between "{target}" and "{source}" '
                                           "because they are not part of the same tree (tf has two or more "
                                           "unconnected trees)")
            links = up_source[:common] + up_target[:ancestors[up_source[common]]]  # children below the ancestor
            if int(stamp_ns) == 0:
                stamp_ns = self._latest_common(links)
            T_anc_source = self._compose(up_source[:common], stamp_ns, target, source)
            T_anc_target = self._compose(up_target[:ancestors[up_source[common]]], stamp_ns, target, source)
        return np.linalg.inv(T_anc_target) @ T_anc_source

    # -- internals (lock held) -----------------------------------------------------------------------------
    def _is_parent(self, name: str) -> bool:
        return any(s.parent == name for s in self._static.values()) or any(
            v and v[-1].parent == name for v in self._dynamic.values())

    def _parent(self, child: str) -> str | None:
        if child in self._static:
            return self._static[child].parent
        samples = self._dynamic.get(child)
        return samples[-1].parent if samples else None

    def _chain(self, frame: str) -> list[str]:
        """``frame`` and its ancestors up to the root (a loop in the tree ends the walk)."""
        out, seen = [frame], {frame}
        while (parent := self._parent(out[-1])) is not None and parent not in seen:
            out.append(parent)
            seen.add(parent)
        return out

    def _latest_common(self, children: list[str]) -> int:
        latest = [self._dynamic[c][-1].stamp_ns for c in children if c in self._dynamic and self._dynamic[c]]
        return min(latest) if latest else 0

    def _link(self, child: str, stamp_ns: int, target: str, source: str) -> np.ndarray:
        if child in self._static:
            s = self._static[child]
            return _matrix(s.translation, s.quaternion)
        samples = self._dynamic[child]
        first, last = samples[0], samples[-1]
        if stamp_ns == 0 or (len(samples) == 1 and stamp_ns == first.stamp_ns):
            return _matrix(last.translation, last.quaternion) if stamp_ns == 0 else \
                _matrix(first.translation, first.quaternion)
        if stamp_ns > last.stamp_ns or stamp_ns < first.stamp_ns:
            when = "future" if stamp_ns > last.stamp_ns else "past"
            raise TransformUnavailable(
                f'lookup of "{target}" <- "{source}" would require extrapolation into the {when}: requested time '
                f'{_seconds(stamp_ns)} but the {"latest" if when == "future" else "earliest"} data of '
                f'"{first.parent}" <- "{child}" is at time '
                f'{_seconds(last.stamp_ns if when == "future" else first.stamp_ns)}')
        stamps = [s.stamp_ns for s in samples]
        i = bisect.bisect_left(stamps, stamp_ns)
        if stamps[i] == stamp_ns:
            return _matrix(samples[i].translation, samples[i].quaternion)
        a, b = samples[i - 1], samples[i]
        s = (stamp_ns - a.stamp_ns) / (b.stamp_ns - a.stamp_ns)
        return _matrix(a.translation + s * (b.translation - a.translation), slerp(a.quaternion, b.quaternion, s))

    def _compose(self, children: list[str], stamp_ns: int, target: str, source: str) -> np.ndarray:
        """ancestor <- children[0] for the chain children[0] -> ... -> ancestor."""
        T = np.eye(4)
        for child in children:
            T = self._link(child, stamp_ns, target, source) @ T
        return T
