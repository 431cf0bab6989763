"""``panoptic-eval compare``: every panoptic fusion on the same held-out frames, in one table and one plot.

    panoptic-eval compare DATA_DIR --model CKPT [--trained NAME=CKPT ...] --out DIR [--frames N]

Rows: the parameter-free head with each of its three overlap policies (SSPS Table III), ``heuristic`` and
``center_vote`` on ``--model``; then one row per ``--trained NAME=CKPT``: NAME a trainable fusion run with its
checkpoint (``learned_conv``, ``hps``, ``hps_isi``), or ``control`` = ``parameter_free`` on a checkpoint
fine-tuned without a fusion loss (the same budget: the fair baseline of the trained rows).

Rows sharing a checkpoint share one network forward per frame. Per row: PQ / SQ / RQ for all, things and
stuff, per-class PQ, the median *head* time (box decoding + resizing + the fusion, as the Predictor's
``head`` stage) and the median *end-to-end* time (preprocess + network of its checkpoint on that frame +
head + postprocess), all measured in this one run on this CPU. The detection score threshold and the stuff
area threshold are the same for every row (default: ``--model``'s tuned values), so rows differ only in
fusion and weights. Writes ``DIR/report.json``, ``DIR/report.md`` and ``DIR/compare.png``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .pq import PQAccumulator

BASE_ROWS = (("parameter_free", "closest_center"), ("parameter_free", "highest_confidence"),
             ("parameter_free", "smallest_first"), ("heuristic", None), ("center_vote", None))
TRAINED_NAMES = ("control", "learned_conv", "hps", "hps_isi")


def _row_name(fusion: str, policy: str | None, label: str | None = None) -> str:
    if label == "control":
        return "parameter_free (fine-tuned control)"
    return f"{fusion} ({policy})" if policy else fusion


def parse_trained(values) -> list[tuple[str, Path]]:
    out = []
    for value in values or ():
        name, sep, path = value.partition("=")
        if not sep or name not in TRAINED_NAMES or not path:
            raise ValueError(f"--trained {value!r}: give NAME=CKPT with NAME one of {', '.join(TRAINED_NAMES)}")
        out.append((name, Path(path)))
    return out


def build_rows(args) -> list[dict]:
    """Predictor per row, grouped by checkpoint (rows of one group share the network)."""
    from ..model.checkpoint import load_checkpoint
    from ..predictor import Predictor

    model, metadata = load_checkpoint(args.model)
    tuned = metadata.get("inference", {})
    common = {"score_threshold": args.score_threshold if args.score_threshold is not None
              else tuned.get("score_threshold"),
              "stuff_area_threshold": args.stuff_area_threshold if args.stuff_area_threshold is not None
              else tuned.get("stuff_area_threshold"), "backend": "cpu", "threads": args.threads}
    groups = [(Path(args.model), [(f, p, None) for f, p in BASE_ROWS])]
    groups += [(path, [("parameter_free" if name == "control" else name, "closest_center" if name == "control"
                        else None, name)]) for name, path in parse_trained(args.trained)]
    rows = []
    for group, (path, specs) in enumerate(groups):
        for fusion, policy, label in specs:
            kwargs = dict(common, fusion=fusion, **({"policy": policy} if policy else {}))
            predictor = Predictor.from_checkpoint(path, **kwargs)
            if rows and rows[-1]["group"] == group:  # share the first row's network (and its hooks)
                predictor = Predictor.from_model(rows[-1]["predictor"].model, predictor.metadata, **kwargs)
            rows.append({"name": _row_name(fusion, policy, label), "fusion": fusion, "policy": policy,
                         "checkpoint": str(path), "group": group, "predictor": predictor})
    return rows


def _predict_from_outputs(predictor, outputs, image):
    """The Predictor's head and postprocess stages on network outputs already computed (its predict_batch
    after ``backend.run``), timed."""
    t0 = time.perf_counter()
    ids, semantic, det = predictor._fuse(outputs)
    t1 = time.perf_counter()
    scores = det["scores"].cpu().numpy()
    if getattr(predictor.head, "box_free", False):
        scores = np.ones((scores.shape[0], max(scores.shape[1], predictor.max_detections)), np.float32)
    result = predictor._finish(ids[0], scores[0], image.shape[:2], semantic[0])
    t2 = time.perf_counter()
    return result, 1000 * (t1 - t0), 1000 * (t2 - t1)


def compare(args) -> dict:
    import torch

    from ..data.coco import CocoPanopticReader

    reader = CocoPanopticReader(Path(args.data) / "annotations.json")
    rows = build_rows(args)
    taxonomy = rows[0]["predictor"].taxonomy
    if reader.taxonomy != taxonomy:
        raise ValueError(f"the data set's categories are not the model's")
    n = len(reader) if args.frames is None else min(args.frames, len(reader))
    for row in rows:
        row.update(pq=PQAccumulator(taxonomy), head_ms=[], e2e_ms=[])
    groups = sorted({row["group"] for row in rows})
    with torch.inference_mode():
        for i in tqdm(range(n), desc="compare", unit="frame"):
            sample = reader[i]
            for group in groups:
                members = [row for row in rows if row["group"] == group]
                first = members[0]["predictor"]
                t0 = time.perf_counter()
                x = first.preprocess([sample.image]).to(first.device)
                outputs = first.backend.run(x)
                network_ms = 1000 * (time.perf_counter() - t0)
                for row in members:
                    result, head_ms, post_ms = _predict_from_outputs(row["predictor"], outputs, sample.image)
                    row["pq"].add(result.panoptic, result.segments, sample.panoptic, sample.segments)
                    row["head_ms"].append(head_ms)
                    row["e2e_ms"].append(network_ms + head_ms + post_ms)
    table = []
    for row in rows:
        result = row["pq"].result()
        table.append({"name": row["name"], "fusion": row["fusion"], "policy": row["policy"],
                      "checkpoint": row["checkpoint"],
                      **{f"{g.lower()}": {k: result[g][k] for k in ("pq", "sq", "rq", "n")}
                         for g in ("All", "Things", "Stuff")},
                      "per_class_pq": {name: v["pq"] for name, v in result["per_class"].items() if v["n"]},
                      "head_ms": float(np.median(row["head_ms"])), "end_to_end_ms": float(np.median(row["e2e_ms"]))})
    first = rows[0]["predictor"]
    report = {"data": str(args.data), "frames": n, "score_threshold": first.score_threshold,
              "stuff_area_threshold": first.stuff_area_threshold, "threads": torch.get_num_threads(),
              "rows": table}
    print(markdown(report))
    if args.out is not None:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=2))
        (out / "report.md").write_text(markdown(report))
        plot(report, out / "compare.png")
        print(f"report: {out / 'report.md'}")
    return report


def markdown(report: dict) -> str:
    rows = report["rows"]
    lines = [f"# Panoptic fusions compared on {report['data']} ({report['frames']} frames)", "",
             f"Same detections for all rows: score threshold {report['score_threshold']}, stuff area threshold "
             f"{report['stuff_area_threshold']} px; medians of head / end-to-end ms on this CPU "
             f"({report['threads']} threads), one run.", "",
             "| fusion | PQ | SQ | RQ | PQ th | SQ th | RQ th | PQ st | SQ st | RQ st | head ms | end-to-end ms |",
             "|---|" + "---:|" * 11]
    for r in rows:
        cells = [f"{100 * r[g][m]:.1f}" for g in ("all", "things", "stuff") for m in ("pq", "sq", "rq")]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + f" | {r['head_ms']:.1f} | {r['end_to_end_ms']:.1f} |")
    classes = sorted({c for r in rows for c in r["per_class_pq"]}, key=lambda c: list(rows[0]["per_class_pq"]).index(c)
                     if c in rows[0]["per_class_pq"] else 99)
    lines += ["", "## Per-class PQ", "", "| fusion | " + " | ".join(classes) + " |", "|---|" + "---:|" * len(classes)]
    for r in rows:
        lines.append(f"| {r['name']} | " + " | ".join(f"{100 * r['per_class_pq'][c]:.1f}" if c in r["per_class_pq"]
                                                     else "-" for c in classes) + " |")
    lines += ["", "Checkpoints: " + "; ".join(sorted({f"{r['name']}: {r['checkpoint']}" for r in rows}))]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    names = [r["name"] for r in rows]
    x = np.arange(len(rows))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [3, 1]})
    for k, group in enumerate(("all", "things", "stuff")):
        ax.bar(x + (k - 1) * 0.27, [100 * r[group]["pq"] for r in rows], 0.27, label=f"PQ {group}")
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("PQ (%)")
    ax.legend()
    ax.set_title(f"{report['frames']} frames of {Path(report['data']).name}")
    bx.barh(x, [r["head_ms"] for r in rows])
    bx.set_yticks(x, names, fontsize=8)
    bx.invert_yaxis()
    bx.set_xlabel("head ms (median, this CPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_compare_parser(subs) -> None:
    sub = subs.add_parser("compare", help="every panoptic fusion on the same COCO-panoptic folder, one table",
                          description=__doc__.split("\n\n", 1)[1] if "\n\n" in __doc__ else __doc__,
                          formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    sub.add_argument("data", type=Path, help="COCO-panoptic folder (annotations.json, panoptic/, images/)")
    sub.add_argument("--model", type=Path, required=True, help="checkpoint of the deterministic rows")
    sub.add_argument("--trained", action="append", default=[], metavar="NAME=CKPT",
                     help=f"a trained row, NAME one of {', '.join(TRAINED_NAMES)} (repeatable)")
    sub.add_argument("--out", type=Path, default=None, help="report folder (default: print only)")
    sub.add_argument("--frames", type=int, default=None, help="only the first N frames")
    sub.add_argument("--score-threshold", type=float, default=None, help="default: --model's tuned value")
    sub.add_argument("--stuff-area-threshold", type=int, default=None, help="default: --model's tuned value")
    sub.add_argument("--threads", type=int, default=None, help="torch CPU threads")
