"""Choose the inference settings (score threshold, stuff area, unknown) on the VALIDATION split.

The network runs once per frame; only detection filtering and the parameter-free head are re-run per setting,
so a sweep costs little more than one evaluation. Never run this on the held-out test split.

    .venv/bin/python tools/sweep_inference.py MODEL data/synthetic/val [--write]

With --write the best setting is stored in the checkpoint as metadata['inference'], which the Predictor, the
node and panoptic-eval use unless told otherwise.
"""
import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this tree's code, not an installed copy

import torch  # noqa: E402

from panoptic_ros.data.coco import CocoPanopticReader  # noqa: E402
from panoptic_ros.evaluation.pq import PQAccumulator  # noqa: E402
from panoptic_ros.head import PanopticHead  # noqa: E402
from panoptic_ros.model.checkpoint import read_checkpoint  # noqa: E402
from panoptic_ros.predictor import Predictor  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--scores", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6, 0.7])
    parser.add_argument("--stuff-areas", type=int, nargs="+", default=[0, 64, 256, 983])
    parser.add_argument("--write", action="store_true", help="store the best setting in the checkpoint")
    args = parser.parse_args()
    reader = CocoPanopticReader(args.data / "annotations.json")
    predictor = Predictor.from_checkpoint(args.model, backend="cpu")
    settings = list(itertools.product(args.scores, args.stuff_areas, (True, False)))
    accs = {s: PQAccumulator(predictor.taxonomy) for s in settings}
    heads = {(area, unknown): PanopticHead.from_taxonomy(predictor.taxonomy, policy="closest_center",
                                                         unknown=unknown, stuff_area_threshold=area)
             for _, area, unknown in settings}
    for i in range(len(reader)):
        sample = reader[i]
        with torch.inference_mode():
            outputs = predictor.backend.run(predictor.preprocess([sample.image]))
            for score, area, unknown in settings:
                predictor.score_threshold, predictor.head = score, heads[(area, unknown)]
                ids, det = predictor.fuse(outputs)
                result = predictor._finish(ids[0], det["scores"][0].cpu().numpy(), sample.image.shape[:2])
                accs[(score, area, unknown)].add(result.panoptic, result.segments, sample.panoptic, sample.segments)
    print("score  stuff_area  unknown |   PQ   PQth   PQst")
    ranked = sorted(settings, key=lambda s: -accs[s].result()["All"]["pq"])
    for s in ranked:
        r = accs[s].result()
        print(f"{s[0]:5.2f}  {s[1]:10d}  {str(s[2]):7s} | {100 * r['All']['pq']:5.1f}  "
              f"{100 * r['Things']['pq']:5.1f}  {100 * r['Stuff']['pq']:5.1f}")
    if args.write:
        best = next(s for s in ranked if s[2])  # the node predicts unknown (the paper's option) by default
        score, area, _ = best
        payload = read_checkpoint(args.model)
        payload["metadata"]["inference"] = {
            "score_threshold": score, "stuff_area_threshold": area,
            "chosen_on": f"{args.data} ({len(reader)} frames), PQ {accs[best].result()['All']['pq']:.4f}"}
        torch.save(payload, args.model)
        print(f"stored {payload['metadata']['inference']} in {args.model}")


if __name__ == "__main__":
    main()
