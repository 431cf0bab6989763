"""Evaluation reports: report.json, report.md and plots (per-class PQ, latency histogram, worst frames).

Every entry point (``panoptic-eval coco``, ``cityscapes``, ``bag``) ends in :func:`write_report`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on robots or CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..panoptic import OFFSET, colorize  # noqa: E402
from ..taxonomy import Taxonomy  # noqa: E402
from .pq import GROUPS, format_table  # noqa: E402

# (name, image RGB or None, gt ids, pred ids, per-frame PQ); ids in the panoptic_ros convention.
WorstFrame = tuple[str, "np.ndarray | None", np.ndarray, np.ndarray, float]


def to_convention(ids: np.ndarray, segments: Iterable[Any], taxonomy: Taxonomy) -> np.ndarray:
    """Re-number an id map with arbitrary segment ids (COCO PNGs) to ``category_id * 1000 + k`` so that
    :func:`panoptic.colorize` can draw it: things get k = 1, 2, ..., stuff and crowd k = 0; ids missing
    from ``segments`` become void."""
    from .matching import MISSING_ROW, SegmentTables, segment_rows

    table = SegmentTables.from_lists([segments], "segments", [""])
    new = np.zeros(len(table.ids) + 2, dtype=np.int64)  # row 0 = void, last = not listed (-> void)
    thing = np.array([taxonomy.by_id[c].is_thing if c in taxonomy.by_id else False
                      for c in table.category_ids.tolist()], dtype=bool)
    instance = thing & ~table.crowd
    new[1:-1] = table.category_ids * OFFSET + np.where(instance, (np.cumsum(instance) - 1) % (OFFSET - 1) + 1, 0)
    flat = np.asarray(ids).reshape(-1)
    rows = segment_rows(flat, np.zeros(flat.size, np.intp), table)
    rows[rows == MISSING_ROW] = len(new) - 1
    return new[rows].reshape(np.shape(ids)).astype(np.int32)


def _latency_stats(latencies_ms: Sequence[float]) -> dict:
    lat = np.asarray(latencies_ms, dtype=np.float64)
    return {"count": int(lat.size), "mean": float(lat.mean()), "p50": float(np.percentile(lat, 50)),
            "p90": float(np.percentile(lat, 90)), "p99": float(np.percentile(lat, 99)), "max": float(lat.max())}


def _plot_per_class(result: dict, path: Path, taxonomy: Taxonomy | None) -> None:
    names = list(result["per_class"])
    rows = [result["per_class"][n] for n in names]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(names) + 1.5))
    y = np.arange(len(names))
    colors = [np.array(taxonomy.by_name[n].color) / 255 if taxonomy and n in taxonomy.by_name else
              ("tab:orange" if r["isthing"] else "tab:blue") for n, r in zip(names, rows)]
    ax.barh(y, [100 * r["pq"] for r in rows], color=colors, edgecolor="black", linewidth=0.5)
    for k, r in enumerate(rows):
        label = (f"{100 * r['pq']:.1f}  (SQ {100 * r['sq']:.0f}, RQ {100 * r['rq']:.0f})" if r["n"]
                 else "not counted (no TP, FP or FN)")
        ax.text(100 * r["pq"] + 1, k, label, va="center", fontsize=7)
    ax.set_yticks(y, [f"{n} ({'thing' if r['isthing'] else 'stuff'})" for n, r in zip(names, rows)], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 130)
    ax.set_xlabel("PQ (%)")
    ax.set_title(f"PQ per class: All {100 * result['All']['pq']:.1f}, Things {100 * result['Things']['pq']:.1f}, "
                 f"Stuff {100 * result['Stuff']['pq']:.1f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_latency(latencies_ms: Sequence[float], stats: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(latencies_ms, bins=min(50, max(5, len(latencies_ms) // 5)), color="tab:blue", alpha=0.8)
    for key, style in (("p50", "-"), ("p90", "--"), ("p99", ":")):
        ax.axvline(stats[key], color="black", linestyle=style, label=f"{key} {stats[key]:.1f} ms")
    ax.set_xlabel("latency per frame (ms, CPU)")
    ax.set_ylabel("frames")
    ax.legend()
    ax.set_title(f"{stats['count']} frames, mean {stats['mean']:.1f} ms")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_worst(worst_frames: Sequence[WorstFrame], path: Path, taxonomy: Taxonomy) -> None:
    with_images = any(w[1] is not None for w in worst_frames)
    n, cols = len(worst_frames), 3 if with_images else 2
    fig, axes = plt.subplots(n, cols, figsize=(4 * cols, 2.6 * n + 0.4), squeeze=False)
    for row, (name, image, gt, pred, pq) in enumerate(worst_frames):
        gt, pred = np.asarray(gt), np.asarray(pred)
        if gt.shape != pred.shape or (image is not None and image.shape[:2] != gt.shape):
            raise ValueError(f"worst frame {name!r}: image, gt and pred sizes differ")
        panels = [(colorize(gt, taxonomy, image), f"{name}: ground truth"),
                  (colorize(pred, taxonomy, image), f"{name}: prediction, PQ {100 * pq:.1f}")]
        if with_images:
            blank = np.full(gt.shape + (3,), 96, np.uint8)
            panels.insert(0, (image if image is not None else blank, f"{name}: image"))
        for col, (picture, caption) in enumerate(panels):
            axes[row, col].imshow(picture)
            axes[row, col].set_title(caption, fontsize=8)
            axes[row, col].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _markdown(title: str, result: dict, frames_info: Sequence[dict], latency: dict | None,
              worst_names: list[str], files: list[str]) -> str:
    lines = [f"# {title}", "", f"{result.get('num_frames', len(frames_info))} frames. "
             "PQ / SQ / RQ in percent, panopticapi's definition (IoU > 0.5 matches; crowd and void ignored).", "",
             "| | PQ | SQ | RQ | N | TP | FP | FN |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for group, _ in GROUPS:
        r = result[group]
        lines.append(f"| {group} | {100 * r['pq']:.2f} | {100 * r['sq']:.2f} | {100 * r['rq']:.2f} | {r['n']} "
                     f"| {r['tp']} | {r['fp']} | {r['fn']} |")
    lines += ["", "## Per class", "", "| class | kind | PQ | SQ | RQ | TP | FP | FN |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in result["per_class"].items():
        figures = (f"{100 * r['pq']:.2f} | {100 * r['sq']:.2f} | {100 * r['rq']:.2f}" if r["n"]
                   else "- | - | -")
        lines.append(f"| {name} | {'thing' if r['isthing'] else 'stuff'} | {figures} | {r['tp']} | {r['fp']} "
                     f"| {r['fn']} |")
    if latency:
        lines += ["", "## Latency (ms per frame, CPU)", "", "| frames | mean | p50 | p90 | p99 | max |",
                  "|---:|---:|---:|---:|---:|---:|",
                  f"| {latency['count']} | {latency['mean']:.2f} | {latency['p50']:.2f} | {latency['p90']:.2f} "
                  f"| {latency['p99']:.2f} | {latency['max']:.2f} |"]
    ranked = sorted((f for f in frames_info if not math.isnan(f.get("pq", math.nan))), key=lambda f: f["pq"])
    if ranked:
        lines += ["", "## Lowest per-frame PQ", "", "| frame | PQ | TP | FP | FN |", "|---|---:|---:|---:|---:|"]
        for f in ranked[:10]:
            lines.append(f"| {f['name']} | {100 * f['pq']:.2f} | {f.get('tp', '')} | {f.get('fp', '')} "
                         f"| {f.get('fn', '')} |")
    if worst_names:
        lines += ["", f"Drawn in worst_frames.png: {', '.join(worst_names)}."]
    lines += ["", "## Files", ""] + [f"- [{f}]({f})" for f in files]
    return "\n".join(lines) + "\n"


def write_report(out_dir: str | Path, accumulator_result: dict, frames_info: Sequence[dict],
                 latencies_ms: Sequence[float] | None = None, worst_frames: Sequence[WorstFrame] | None = None,
                 title: str = "Panoptic evaluation", taxonomy: Taxonomy | None = None,
                 extra: dict | None = None) -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``per_class_pq.png``, ``latency_hist.png`` (with latencies) and
    ``worst_frames.png`` (with worst frames) into ``out_dir``; returns the written paths by name.

    Args:
        accumulator_result: :meth:`PQAccumulator.result`.
        frames_info: per-frame dicts with at least ``name`` and ``pq`` (:attr:`PQAccumulator.frames`).
        latencies_ms: per-frame latencies of the predictor.
        worst_frames: ``(name, image RGB or None, gt ids, pred ids, pq)`` with ids in the panoptic_ros
            convention (see :func:`to_convention`); drawn as image / ground truth / prediction rows.
        taxonomy: colours and thing flags for the drawings (default: built from the per-class table).
        extra: more JSON-able facts to store under ``report.json['extra']`` (model, bag, settings).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if taxonomy is None:
        taxonomy = Taxonomy.from_coco_categories(
            [{"id": r["id"], "name": n, "isthing": int(r["isthing"])}
             for n, r in accumulator_result["per_class"].items()])
    paths = {"json": out / "report.json", "md": out / "report.md", "per_class": out / "per_class_pq.png"}
    latency = None
    if latencies_ms is not None and len(latencies_ms):
        latency = _latency_stats(latencies_ms)
        paths["latency"] = out / "latency_hist.png"
        _plot_latency(latencies_ms, latency, paths["latency"])
    worst_names = []
    if worst_frames:
        paths["worst"] = out / "worst_frames.png"
        _plot_worst(worst_frames, paths["worst"], taxonomy)
        worst_names = [w[0] for w in worst_frames]
    _plot_per_class(accumulator_result, paths["per_class"], taxonomy)

    def clean(value: float) -> float | None:  # JSON has no NaN
        return None if isinstance(value, float) and math.isnan(value) else value

    report = {"title": title, **{g: accumulator_result[g] for g, _ in GROUPS},
              "per_class": accumulator_result["per_class"],
              "num_frames": accumulator_result.get("num_frames", len(frames_info)),
              "frames": [{k: clean(v) for k, v in f.items()} for f in frames_info],
              "latency_ms": latency, "worst_frames": worst_names, "extra": extra or {}}
    paths["json"].write_text(json.dumps(report, indent=1))
    files = [p.name for k, p in paths.items() if k != "md"]
    paths["md"].write_text(_markdown(title, accumulator_result, frames_info, latency, worst_names, files)
                           + "\n```\n" + format_table(accumulator_result, per_class=True) + "\n```\n")
    return paths


def worst_frame_names(frames_info: Sequence[dict], count: int) -> list[str]:
    """Names of the ``count`` frames with the lowest per-frame PQ (frames without any segment skipped)."""
    ranked = sorted((f for f in frames_info if not math.isnan(f.get("pq", math.nan))), key=lambda f: f["pq"])
    return [f["name"] for f in ranked[:count]]
