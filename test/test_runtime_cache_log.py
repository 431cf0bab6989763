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
