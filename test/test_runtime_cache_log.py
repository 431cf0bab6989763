"""A first-run build of a cached artefact says so, and keeps saying it is still building (no silent 20-30 s)."""
from __future__ import annotations

import logging
import time

from panoptic_ros.runtime import cache as cache_module
from panoptic_ros.runtime.cache import ArtifactCache


def test_first_build_is_announced_with_progress(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(cache_module, "HEARTBEAT_S", 0.05)

    def build(path):
        time.sleep(0.3)
        path.write_text("artefact")

    cache = ArtifactCache(tmp_path)
    with caplog.at_level(logging.INFO, logger="panoptic_ros.runtime"):
        value, outcome = cache.fetch_or_build("onnx", {"m": 1}, {}, "x.onnx", build, lambda p: p.read_text(),
                                              what="ONNX model")
    assert value == "artefact" and outcome.status == "built"
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("building ONNX model: first run of this model here")
    assert any(line.startswith("still building ONNX model") for line in lines)
    assert lines[-1].startswith("ONNX model ready in")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="panoptic_ros.runtime"):
        cache.fetch_or_build("onnx", {"m": 1}, {}, "x.onnx", build, lambda p: p.read_text(), what="ONNX model")
    assert not any("building" in r.getMessage() for r in caplog.records)  # cached: nothing to announce


def test_the_node_forwards_runtime_log_lines_to_its_ros_logger():
    from panoptic_ros.ros.log_bridge import forward_to_ros

    class FakeRosLogger:
        def __init__(self):
            self.lines = []

        def info(self, text):
            self.lines.append(("info", text))

        def warning(self, text):
            self.lines.append(("warning", text))

        def error(self, text):
            self.lines.append(("error", text))

    first, second = FakeRosLogger(), FakeRosLogger()
    forward_to_ros(first)
    handler = forward_to_ros(second)  # a second node in the process replaces the first's handler
    try:
        log = logging.getLogger("panoptic_ros.runtime.cache")
        log.info("building ONNX model: first run")
        log.warning("cache entry stale")
        log.debug("not shown")
    finally:
        logging.getLogger("panoptic_ros.runtime").removeHandler(handler)
    assert first.lines == []
    assert second.lines == [("info", "building ONNX model: first run"), ("warning", "cache entry stale")]
