"""Held-out PQ of one checkpoint on images of another aspect ratio: three ways to feed the network.

- ``aspect``: the image's aspect ratio at the checkpoint's pixel budget, sides multiples of 32 (what the
  Predictor does by default, ``input_size: [0, 0]``);
- ``squash``: every image resized to the checkpoint's input size (the old behaviour, ``input_size`` = it);
- ``letterbox``: the image scaled to fit the checkpoint's input size, the rest padded with the normalisation
  mean (zero after normalising), ids cropped back.

Each mode runs :func:`panoptic_ros.evaluation.run.evaluate_predictor` (the ``panoptic-eval model`` loop) over
the same frames of a COCO-panoptic folder, one after the other in one process.

    .venv/bin/python bench/aspect_ratio.py models/panoptic_r18_synthetic.pt DATA_DIR --frames 100
    .venv/bin/python bench/aspect_ratio.py models/panoptic_r18_synthetic.pt DATA_384x192 DATA_640x480 \
        --latency 20 --modes aspect,squash --input-size 288 384
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this tree's code, not an installed copy

from panoptic_ros.data.coco import CocoPanopticReader  # noqa: E402
from panoptic_ros.evaluation.run import evaluate_predictor  # noqa: E402
from panoptic_ros.panoptic import PanopticResult, segments_from_ids  # noqa: E402
from panoptic_ros.predictor import Predictor  # noqa: E402

MODES = ("aspect", "squash", "letterbox")


class Letterbox:
    """Wraps a fixed-size Predictor: scale to fit its input, pad right / bottom with the mean colour, crop back."""

    def __init__(self, predictor: Predictor):
        self.inner, self.taxonomy, self.metadata = predictor, predictor.taxonomy, predictor.metadata
        self.backend_name = predictor.backend_name

    def predict(self, image: np.ndarray) -> PanopticResult:
        h, w = image.shape[:2]
        H, W = self.inner.input_size
        s = min(H / h, W / w)
        sh, sw = max(1, round(h * s)), max(1, round(w * s))
        canvas = np.empty((H, W, 3), np.uint8)
        canvas[:] = np.round(self.inner.mean).astype(np.uint8)
        canvas[:sh, :sw] = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
        r = self.inner.predict(canvas)
        ids = cv2.resize(r.panoptic[:sh, :sw], (w, h), interpolation=cv2.INTER_NEAREST)
        sem = cv2.resize(r.semantic[:sh, :sw], (w, h), interpolation=cv2.INTER_NEAREST)
        segments = segments_from_ids(ids, self.taxonomy, scores={seg.id: seg.score for seg in r.segments})
        det = dict(r.detections)
        det["boxes"] = np.clip(det["boxes"] / s, 0, [w, h, w, h]).astype(np.float32)
        out = PanopticResult(ids, sem, segments)
        out.detections, out.timings_ms = det, r.timings_ms
        return out


def latency(args, modes) -> int:
    import time

    base = Predictor.from_checkpoint(args.model, backend=args.backend)
    runners = {"aspect": base.predict}
    fixed = Predictor.from_checkpoint(args.model, backend=args.backend, input_size=base.input_size)
    runners["squash"], runners["letterbox"] = fixed.predict, Letterbox(fixed).predict
    for h, w in args.input_size:
        runners[f"{w}x{h}"] = Predictor.from_checkpoint(args.model, backend=args.backend, input_size=(h, w)).predict
    names = [m for m in modes if m in runners] + [f"{w}x{h}" for h, w in args.input_size]
    images = [CocoPanopticReader(Path(d) / "annotations.json")[0].image for d in args.data]
    times = {(i, n): [] for i in range(len(images)) for n in names}
    for r in range(args.latency + 1):
        for i, image in enumerate(images):
            for n in names:
                t0 = time.perf_counter()
                runners[n](image)
                if r:  # round 0 builds each size's backend
                    times[(i, n)].append(1e3 * (time.perf_counter() - t0))
    for (i, n), ts in times.items():
        h, w = images[i].shape[:2]
        print(f"{w}x{h} {n:>9}: predict median {np.median(ts):.1f} ms over {len(ts)} ({args.backend})")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("data", nargs="+", help="COCO-panoptic folders (panoptic-world generate --width W --height H)")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--latency", type=int, default=0, metavar="N",
                    help="instead of PQ: median predict() time of each folder's first image per mode, N rounds, "
                         "modes interleaved (side by side in one process)")
    ap.add_argument("--input-size", type=int, nargs=2, action="append", default=[], metavar=("H", "W"),
                    help="also time / score this fixed network input (mode 'HxW'), repeatable")
    args = ap.parse_args(argv)
    modes = args.modes.split(",")
    if args.latency:
        return latency(args, modes)
    rows = []
    for data in args.data:
        reader = CocoPanopticReader(Path(data) / "annotations.json")
        n = min(args.frames, len(reader))
        shape = reader[0].image.shape[:2]
        for mode in modes:
            if mode == "aspect":
                predictor = Predictor.from_checkpoint(args.model, backend=args.backend)
            else:
                fixed = Predictor.from_checkpoint(args.model, backend=args.backend)
                fixed = Predictor.from_checkpoint(args.model, backend=args.backend, input_size=fixed.input_size)
                predictor = fixed if mode == "squash" else Letterbox(fixed)
            with contextlib.redirect_stdout(io.StringIO()):
                res = evaluate_predictor(predictor, (reader[i] for i in range(n)), None, mode, worst=0, total=n)
            net = predictor.network_size(shape) if mode == "aspect" else fixed.input_size
            row = {"data": str(data), "image": f"{shape[1]}x{shape[0]}", "mode": mode,
                   "network": f"{net[1]}x{net[0]}", "frames": n, "pq": 100 * res["All"]["pq"],
                   "pq_things": 100 * res["Things"]["pq"], "pq_stuff": 100 * res["Stuff"]["pq"],
                   "miou": 100 * res["semantic"]["miou"]}
            rows.append(row)
            print(f"{row['image']:>9} {mode:>9} (network {row['network']}): PQ {row['pq']:.1f} "
                  f"(things {row['pq_things']:.1f}, stuff {row['pq_stuff']:.1f}), mIoU {row['miou']:.1f}", flush=True)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
