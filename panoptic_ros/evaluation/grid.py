"""Bird's-eye grid metrics of a recording: the node's occupancy grids against the bag's bird's-eye truth.

Per frame, the predicted ``nav_msgs/OccupancyGrid`` values and the truth's (``/ground_truth/grid`` of
``panoptic-world bag``: 0 free, 100 occupied, -1 not visible) are counted by :class:`~panoptic_ros.bev.BevMetrics`
(the one implementation, also behind ``bench/bev_quality.py``): free-space IoU per range band ``0-10``, ``10-20``,
``20-40`` m and occupied recall / precision within 0-20 m, range = horizontal distance from the camera. The
report gets a ``grid`` object in ``report.json`` and a section in ``report.md`` with a side-by-side picture of
the predicted and the true grid of the worst frame (lowest free IoU within 20 m).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..bev import FREE, OCCUPIED, BevMetrics
from ..geometry import GridSpec

FREE_BANDS = ((0.0, 10.0), (10.0, 20.0), (20.0, 40.0))
OCCUPIED_RANGE = (0.0, 20.0)


def _band_name(band) -> str:
    return f"{band[0]:g}-{band[1]:g}"


class GridEvaluation:
    """Accumulates grid metrics over frames and remembers the worst frame's grids for the picture."""

    def __init__(self):
        self.metrics = BevMetrics(FREE_BANDS + (OCCUPIED_RANGE,))
        self.worst: dict | None = None  # {"name", "free_iou", "pred", "truth", "grid", "camera_xy"}

    @property
    def frames(self) -> int:
        return self.metrics.frames

    def add(self, name: str, pred: np.ndarray, truth: np.ndarray, grid: GridSpec,
            camera_xy: tuple[float, float]) -> None:
        """One frame: OccupancyGrid values (rows, cols) of the prediction and the truth on ``grid``."""
        pred = np.asarray(pred, np.int8).reshape(grid.shape)
        truth = np.asarray(truth, np.int8).reshape(grid.shape)
        counts = self.metrics.update_values(pred, truth, grid, camera_xy)
        near = counts[-1]  # the 0-20 m band
        iou = near[0] / near[1] if near[1] else float("nan")
        if np.isfinite(iou) and (self.worst is None or iou < self.worst["free_iou"]):
            self.worst = {"name": name, "free_iou": float(iou), "pred": pred.copy(), "truth": truth.copy(),
                          "grid": grid, "camera_xy": tuple(map(float, camera_xy))}

    def result(self) -> dict:
        """The ``grid`` object of report.json."""
        if not self.frames:
            raise ValueError("no frame had both a predicted grid and a truth grid")
        rows = self.metrics.compute()["bands"]
        near = rows[-1]
        return {"frames": self.frames, "distance": "horizontal range from the camera (m)",
                "free_iou": {_band_name(r["band"]): r["free_iou"] for r in rows[:-1]},
                "occupied_recall": near["occupied_recall"], "occupied_precision": near["occupied_precision"],
                "occupied_range": _band_name(OCCUPIED_RANGE),
                "free_iou_0-20": near["free_iou"],
                "truth_occupied_cells_0-20": near["truth_occupied_cells"],
                "worst_frame": None if self.worst is None else {"name": self.worst["name"],
                                                                "free_iou_0-20": self.worst["free_iou"]}}

    def plot_worst(self, path: Path) -> Path | None:
        """Predicted | true grid of the worst frame, x forward up the page, y left to the left (as in RViz with
        the base_link x axis pointing up)."""
        if self.worst is None:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import ListedColormap

        w, g = self.worst, self.worst["grid"]
        cmap = ListedColormap([(0.55, 0.55, 0.55), (1, 1, 1), (0, 0, 0)])  # unknown, free, occupied

        def as_image(values):
            idx = np.select([values == FREE, values == OCCUPIED], [1, 2], 0)
            return idx[::-1, ::-1].T  # rows = x (far at the top), columns = y (left on the left)

        extent = (g.y_max, g.y_min, g.x_min, g.x_max)
        fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
        for ax, values, title in zip(axes, (w["pred"], w["truth"]), ("predicted (node pipeline)", "truth")):
            ax.imshow(as_image(values), cmap=cmap, vmin=0, vmax=2, extent=extent, interpolation="nearest")
            for r in (10, 20):
                ax.add_patch(plt.Circle((w["camera_xy"][1], w["camera_xy"][0]), r, fill=False, ls="--", lw=0.8,
                                        color="tab:blue"))
            ax.set_title(title)
            ax.set_xlabel("y (m, left)")
            ax.set_ylabel("x (m, forward)")
        fig.suptitle(f"worst frame {w['name']}: free IoU 0-20 m {w['free_iou']:.3f} "
                     f"(white free, black occupied, grey unknown; rings 10 / 20 m)")
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        return path

    def add_to_report(self, out: Path) -> dict:
        """Add ``grid`` to ``out``/report.json and a section with the picture to ``out``/report.md."""
        out = Path(out)
        res = self.result()
        report = out / "report.json"
        data = json.loads(report.read_text())
        data["grid"] = res
        report.write_text(json.dumps(data, indent=2))
        picture = self.plot_worst(out / "grid_worst_frame.png")
        lines = ["", "## Bird's-eye grid", "",
                 f"The node's grid against the bag's bird's-eye truth over {res['frames']} frames (range = "
                 "horizontal distance from the camera; free IoU over every cell of a band, occupied recall / "
                 "precision over the cells the truth sees).", "",
                 "| free IoU 0-10 m | free IoU 10-20 m | free IoU 20-40 m | occupied recall 0-20 m "
                 "| occupied precision 0-20 m |", "|---:|---:|---:|---:|---:|",
                 "| " + " | ".join(f"{v:.3f}" for v in (*res["free_iou"].values(), res["occupied_recall"],
                                                         res["occupied_precision"])) + " |"]
        if picture is not None:
            lines += ["", f"![predicted and true grid of the worst frame]({picture.name})"]
        with (out / "report.md").open("a") as f:
            f.write("\n".join(lines) + "\n")
        return res

    def summary(self) -> str:
        r = self.result()
        iou = ", ".join(f"{k} m {v:.3f}" for k, v in r["free_iou"].items())
        return (f"grid ({r['frames']} frames): free IoU {iou}; occupied recall {r['occupied_recall']:.3f}, "
                f"precision {r['occupied_precision']:.3f} within 0-20 m")

