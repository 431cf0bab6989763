"""Feeds a :class:`~panoptic_ros.tf_buffer.TransformBuffer` from ``/tf`` and ``/tf_static`` when ``tf2_ros`` is
missing (the PyPI wheels have no tf2_ros): the subscriptions and QoS of ``tf2_ros.TransformListener``."""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..tf_buffer import TransformBuffer

# tf2_ros.TransformListener's profiles: /tf reliable volatile depth 100, /tf_static reliable transient-local
# depth 100 (so a late subscriber still receives every latched static transform).
TF_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)


def add_tf_message(buffer: TransformBuffer, msg, static: bool) -> list[str]:
    """Store every transform of a ``tf2_msgs/TFMessage`` (rclpy or rosbags object); returns one reason per
    transform that was refused (empty frame ids, NaN, a quaternion that is not a rotation)."""
    errors = []
    for tf in msg.transforms:
        t, q, stamp = tf.transform.translation, tf.transform.rotation, tf.header.stamp
        try:
            buffer.set_transform(tf.header.frame_id, tf.child_frame_id,
                                 int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec), (t.x, t.y, t.z),
                                 (q.x, q.y, q.z, q.w), static=static)
        except ValueError as exc:
            errors.append(str(exc))
    return errors


class TfListener:
    """Subscribes ``/tf`` and ``/tf_static`` on ``node`` into ``buffer``; ``on_error(text)`` gets refused
    transforms."""

    def __init__(self, node, buffer: TransformBuffer, on_error=None):
        from tf2_msgs.msg import TFMessage

        self.buffer = buffer
        self.on_error = on_error or (lambda text: None)
        node.create_subscription(TFMessage, "/tf", lambda m: self._add(m, False), TF_QOS)
        node.create_subscription(TFMessage, "/tf_static", lambda m: self._add(m, True), TF_STATIC_QOS)

    def _add(self, msg, static: bool) -> None:
        for text in add_tf_message(self.buffer, msg, static):
            self.on_error(f"{'/tf_static' if static else '/tf'}: {text}")
