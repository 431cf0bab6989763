"""One CPU thread setting for every inference library (torch, ONNX Runtime, OpenVINO).

Why: each library otherwise sizes its own pool (torch: one thread per logical CPU plus an inter-op pool;
onnxruntime: per physical core; OpenVINO: per core, pinned). In the node the network, the panoptic head
(torch), the worker, DDS and the subscriber all share the same cores, and two pools of spinning threads on two
cores made a 640x480 frame take 1,849 ms instead of 343 ms (issue 25). So: one count, by default the physical
cores this process may run on (hyper-threads share one core's execution units: counting them oversubscribes),
for the library that runs the network; torch's inter-op pool at 1 (the network runs one frame at a time), and
one torch thread for the panoptic head next to another library (``backends.head_torch_threads``); ONNX
Runtime without spinning, OpenVINO unpinned with one stream.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def physical_cores(cpus: set[int] | None = None, sysfs: Path = Path("/sys/devices/system/cpu")) -> int:
    """Physical cores among ``cpus`` (default: this process's affinity), from sysfs topology (package id,
    core id); the logical CPU count where sysfs has no topology (containers, non-Linux)."""
    if cpus is None:
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores = set()
    for cpu in cpus:
        topology = sysfs / f"cpu{cpu}" / "topology"
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(), (topology / "core_id").read_text().strip()))
        except OSError:
            return max(1, len(cpus))
    return max(1, len(cores))


def resolve_threads(threads: int | None) -> int:
    """``threads`` if positive, else the physical cores (the ``threads: 0`` default)."""
    return int(threads) if threads and int(threads) > 0 else physical_cores()


def apply_torch_threads(threads: int) -> None:
    """torch's intra-op pool (network on ``cpu`` and the panoptic head on every backend) at ``threads``, its
    inter-op pool at 1 (only settable before torch first runs parallel work: later it stays as it is)."""
    torch.set_num_threads(int(threads))
    if torch.get_num_interop_threads() != 1:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError as exc:  # already used: torch refuses a second setting
            log.debug("torch inter-op threads stay at %d (%s)", torch.get_num_interop_threads(), exc)
