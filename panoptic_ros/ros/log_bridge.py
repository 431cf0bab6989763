"""Python ``logging`` records of the ROS-free core, into a node's ROS logger (users read the ROS log).

The runtime logs what takes time or goes wrong while a model loads (a first-run ONNX build, "still building"
every few seconds, a stale cache entry rebuilt) with ``logging``; without this they would go nowhere.
"""
from __future__ import annotations

import logging


class RosLogHandler(logging.Handler):
    def __init__(self, ros_logger):
        super().__init__(logging.INFO)
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.levelno >= logging.ERROR:
                self.ros_logger.error(text)
            elif record.levelno >= logging.WARNING:
                self.ros_logger.warning(text)
            else:
                self.ros_logger.info(text)
        except Exception:  # noqa: BLE001 - a log line must never break loading
            self.handleError(record)


def forward_to_ros(ros_logger, name: str = "panoptic_ros.runtime") -> RosLogHandler:
    """Send INFO and above of logger ``name`` (and its children) to ``ros_logger``; returns the handler."""
    handler = RosLogHandler(ros_logger)
    logger = logging.getLogger(name)
    for old in [h for h in logger.handlers if isinstance(h, RosLogHandler)]:
        logger.removeHandler(old)  # one node per process at a time: the newest one's logger
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler
