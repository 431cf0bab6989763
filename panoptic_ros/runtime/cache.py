"""On-disk cache of compiled artefacts (ONNX models, TensorRT programs), one directory per entry.

An entry lives at ``<root>/<kind>/<digest of its identity>/`` (identity: model hash, input shape, precision or
opset) and holds the artefact plus ``key.json``: the identity, the build environment (library versions, GPU
name) and the artefact's SHA-256. A lookup rebuilds, with a log message saying why, when the environment
differs (e.g. a torch upgrade), when ``key.json`` is missing or unreadable, when the artefact's checksum does
not match (truncated copy) or when loading it fails. Files are written to a temporary name and renamed, so an
interrupted build never leaves a half-written entry that looks valid.

Root: the ``root`` argument, else ``$PANOPTIC_ROS_CACHE``, else ``~/.cache/panoptic_ros``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

log = logging.getLogger(__name__)

ENV_VAR = "PANOPTIC_ROS_CACHE"
KEY_FILE = "key.json"


def default_cache_dir() -> Path:
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "panoptic_ros"


def model_hash(model: torch.nn.Module) -> str:
    """SHA-256 of the model's config (if any) and every state_dict tensor (name, dtype, shape, bytes)."""
    digest = hashlib.sha256(json.dumps(getattr(model, "config", {}), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class CacheOutcome:
    """What a lookup did: ``status`` is ``hit``, ``built`` (no entry yet) or ``rebuilt`` (``reason`` says why)."""

    path: Path
    status: str
    reason: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"entry": str(self.path), "status": self.status, "reason": self.reason,
                "seconds": round(self.seconds, 3)}


class ArtifactCache:
    """Keyed build-once storage (see the module docstring)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    def entry_dir(self, kind: str, identity: dict) -> Path:
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]
        return self.root / kind / digest

    def fetch_or_build(self, kind: str, identity: dict, environment: dict, filename: str,
                       build: Callable[[Path], None], load: Callable[[Path], Any],
                       what: str = "") -> tuple[Any, CacheOutcome]:
        """``load(artefact)`` of a valid entry, else ``build(temp path)``, store, then load.

        ``identity`` selects the entry, ``environment`` must match what the entry was built with.
        ``what`` names the artefact in log messages.
        """
        what = what or kind
        key = {**identity, **environment}
        folder = self.entry_dir(kind, identity)
        artefact = folder / filename
        problem = self._problem(folder, key, artefact)
        if problem is None:
            try:
                t0 = time.perf_counter()
                loaded = load(artefact)
                return loaded, CacheOutcome(artefact, "hit", seconds=time.perf_counter() - t0)
            except Exception as exc:  # any loader error means the stored artefact is unusable
                problem = f"is corrupt (loading failed: {type(exc).__name__}: {exc})"
        if problem == "missing":
            log.info("building %s: first run of this model here (not cached yet; stored in %s for the next "
                     "runs)", what, folder)
            status, reason = "built", ""
        else:
            log.warning("cache entry %s %s: rebuilding %s", folder, problem, what)
            status, reason = "rebuilt", problem
        t0 = time.perf_counter()
        with heartbeat(what):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                target = self._store(folder, filename, key, build)
            except OSError as exc:  # read-only or full cache disk: build into a private temp dir, uncached
                log.warning("cannot write the cache %s (%s): building %s in a temporary directory", folder, exc,
                            what)
                target = Path(tempfile.mkdtemp(prefix="panoptic_ros_")) / filename
                build(target)
                status, reason = "uncached", f"cache not writable: {exc}"
        loaded = load(target)
        seconds = time.perf_counter() - t0
        log.info("%s ready in %.1f s", what, seconds)
        return loaded, CacheOutcome(target, status, reason, seconds)

    @staticmethod
    def _problem(folder: Path, key: dict, artefact: Path) -> str | None:
        """None if the entry looks valid, else why not (``missing`` when there is no entry at all)."""
        key_file = folder / KEY_FILE
        if not key_file.exists() and not artefact.exists():
            return "missing"
        try:
            stored = json.loads(key_file.read_text())
            stored_key, checksum = stored["key"], stored["sha256"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"is corrupt (unreadable {KEY_FILE}: {exc})"
        differing = [f"{name} {stored_key.get(name)!r} (now {value!r})" for name, value in key.items()
                     if stored_key.get(name) != value]
        if differing:
            return "was built for another setup: " + ", ".join(differing)
        if not artefact.is_file():
            return f"is corrupt ({artefact.name} is missing)"
        if file_sha256(artefact) != checksum:
            return f"is corrupt ({artefact.name} does not match its checksum: truncated or modified)"
        return None

    @staticmethod
    def _store(folder: Path, filename: str, key: dict, build: Callable[[Path], None]) -> Path:
        # The temporary name keeps the suffix: some savers pick the format from it.
        tmp = folder / f"tmp-{os.getpid()}-{filename}"
        try:
            build(tmp)
            checksum = file_sha256(tmp)
            target = folder / filename
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
        key_tmp = folder / f"tmp-{os.getpid()}-{KEY_FILE}"
        key_tmp.write_text(json.dumps({"key": key, "sha256": checksum, "file": filename,
                                       "created": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1, default=str))
        os.replace(key_tmp, folder / KEY_FILE)
        return target


HEARTBEAT_S = 5.0


@contextmanager
def heartbeat(what: str, period: float | None = None):
    """Log "still building" every ``period`` seconds while the block runs: an export is one library call that
    reports no progress of its own, and 20-30 s of silence looks like a hang."""
    period = HEARTBEAT_S if period is None else period
    done = threading.Event()
    t0 = time.perf_counter()

    def beat() -> None:
        while not done.wait(period):
            log.info("still building %s (%.0f s so far)", what, time.perf_counter() - t0)

    thread = threading.Thread(target=beat, name="cache-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
