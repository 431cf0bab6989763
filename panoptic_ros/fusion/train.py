"""Fine-tuning of the trainable fusions, reached through ``panoptic-train`` with a ``fusion:`` config section.

    panoptic-train --config config/train_fusion_hps.yaml --init models/panoptic_r18_synthetic.pt \
        --data DATA --out runs/hps --steps N

- ``learned_conv``: the network is frozen (eval mode, no gradient); only the per-class CNNs train.
- ``hps`` / ``hps_isi``: the whole network fine-tunes on its own losses plus the fusion loss (and the ISI
  head's semantic loss), with ``fusion.loss_weight`` on the fusion's losses.

The network keeps ``optim.lr``; the fusion's own, freshly initialised layers (the CNNs, the ISI head) get
``fusion.lr`` (at the network's fine-tuning rate they barely leave their initialisation in a short budget).

Single process, no periodic validation (the comparison is ``panoptic-eval compare``). Writes ``OUT/model.pt``
(network weights, metadata ``fusion``, the fusion's own weights under ``fusion_state_dict``) and
``OUT/log.jsonl``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, RandomSampler
from tqdm import tqdm

from ..model.checkpoint import FORMAT, build_metadata
from ..model.targets import IMAGENET_MEAN, IMAGENET_STD, PanopticDataset, build_targets, collate
from . import TRAINABLE, build_fusion


class FusionDataset(PanopticDataset):
    """PanopticDataset plus ``instances`` (H, W) int64: the index of each pixel's ground-truth instance in
    ``boxes`` / ``labels`` (-1 for stuff, void and crowd), what the fusion losses match against."""

    def __getitem__(self, index: int) -> dict:
        sample = self.reader[index]
        rng = np.random.default_rng(torch.randint(0, 2 ** 62, ()).item())
        image, ids = self._transform(sample.image, sample.panoptic.astype(np.int32), rng)
        crowd = [s.id for s in sample.segments if s.iscrowd]
        t = build_targets(ids, self.taxonomy, crowd)
        instances = np.full(ids.shape, -1, np.int64)
        rows, cols = np.nonzero(t["center_mask"])
        if rows.size:  # build_targets numbers the instances in np.unique order of their ids
            instances[rows, cols] = np.unique(ids[rows, cols], return_inverse=True)[1].reshape(-1)
        return {"image": self.normalize(image), "semantic": torch.from_numpy(t["semantic"].astype(np.int64)),
                "center_offsets": torch.from_numpy(t["center_offsets"]),
                "center_mask": torch.from_numpy(t["center_mask"]), "boxes": torch.from_numpy(t["boxes"]),
                "labels": torch.from_numpy(t["labels"]), "instances": torch.from_numpy(instances), "index": index}


def collate_fusion(items: list[dict]) -> dict:
    out = collate(items)
    out["instances"] = torch.stack([it["instances"] for it in items])
    return out


def save_fusion_checkpoint(path: Path, model: torch.nn.Module, fusion: torch.nn.Module, metadata: dict) -> Path:
    """A :mod:`panoptic_ros.model.checkpoint` file (loads as usual) plus ``fusion_state_dict``; atomic."""
    payload = {"format": FORMAT, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "metadata": metadata,
               "fusion_state_dict": {k: v.detach().cpu() for k, v in fusion.state_dict().items()}}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def train_fusion(cfg: dict, args, device: torch.device) -> int:
    """The fine-tuning loop of ``cfg['fusion']['name']`` (see the module docstring)."""
    from ..model.network import PanopticNet
    from ..model.train import infinite, init_from_weights, lr_lambda, make_optimizer, open_reader, to_device

    name = cfg["fusion"]["name"]
    if name not in TRAINABLE:
        raise SystemExit(f"panoptic-train: fusion {name!r} has nothing to train; trainable: {', '.join(TRAINABLE)}")
    tcfg, ocfg, icfg, dcfg = cfg["train"], cfg["optim"], cfg["input"], cfg["data"]
    if not tcfg.get("init"):
        raise SystemExit(f"panoptic-train: fusion {name!r} fine-tunes a trained network: give --init CKPT")
    torch.manual_seed(int(tcfg["seed"]))
    reader = open_reader(dcfg["format"], dcfg["train"], dcfg["train_split"])
    taxonomy = reader.taxonomy
    input_size = (int(icfg["height"]), int(icfg["width"]))
    normalization = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    dataset = FusionDataset(reader, taxonomy, input_size, augment=True, scale_range=tuple(icfg["scale_range"]),
                            flip=bool(icfg["flip"]), **normalization)
    model = PanopticNet.from_config(cfg["model"], taxonomy=taxonomy).to(device)
    init_from_weights(model, tcfg["init"])
    fusion = build_fusion(name, taxonomy, feature_channels=int(model.config["head_channels"])).to(device).train()
    frozen = name == "learned_conv"
    # The fusion's own layers are new (random init): they get fusion.lr; the trained network optim.lr.
    fusion_optim = dict(ocfg, lr=float(cfg["fusion"].get("lr") or ocfg["lr"]))
    if frozen:
        model.eval().requires_grad_(False)
        trained = fusion
        optimizer = make_optimizer(fusion, fusion_optim)
    else:
        model.train()
        trained = torch.nn.ModuleList([model, fusion])
        optimizer = make_optimizer(model, ocfg)
        if any(True for _ in fusion.parameters()):
            for group in make_optimizer(fusion, fusion_optim).param_groups:
                optimizer.add_param_group({k: v for k, v in group.items() if k in ("params", "lr", "weight_decay")})
    if hasattr(fusion, "attach"):
        fusion.attach(model)
    total_steps = int(tcfg["steps"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_lambda(s, ocfg, total_steps))
    batch_size, workers = int(tcfg["batch_size"]), int(tcfg["workers"])
    sampler = RandomSampler(dataset, replacement=len(dataset) < batch_size, num_samples=max(len(dataset), batch_size))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        collate_fn=collate_fusion, drop_last=True, persistent_workers=workers > 0)
    batches = infinite(loader, sampler)
    weight = float(cfg["fusion"].get("loss_weight", 1.0))
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    started = time.time()
    with open(out / "log.jsonl", "a") as log:
        for step in tqdm(range(1, total_steps + 1), desc=f"train {name}", dynamic_ncols=True):
            batch = to_device(next(batches), device)
            with torch.set_grad_enabled(not frozen):
                outputs = model(batch["image"])
            det = model.detect({k: v.detach() for k, v in outputs.items()}, input_size,
                               score_threshold=float(tcfg["score_threshold"]), max_detections=100)
            losses = {k: weight * v for k, v in fusion.compute_loss(outputs, det, batch).items()}
            total = sum(losses.values())
            if not frozen:
                network = model.compute_loss(outputs, batch)
                total = total + network["total"]
                losses.update({f"net_{k}": v for k, v in network.items()})
            if not torch.isfinite(total):
                raise FloatingPointError(f"non-finite loss: { {k: float(v) for k, v in losses.items()} }")
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(trained.parameters(), float(ocfg["grad_clip"]))
            optimizer.step()
            scheduler.step()
            if step % int(tcfg["log_every"]) == 0 or step == total_steps:
                record = {"step": step, "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
                          "elapsed_s": round(time.time() - started, 1), "total": float(total),
                          **{k: float(v) for k, v in losses.items()}}
                log.write(json.dumps(record) + "\n")
                log.flush()
    metadata = build_metadata(model, taxonomy, input_size, normalization, training=cfg,
                              dataset_hash=reader.hash() if hasattr(reader, "hash") else "", step=total_steps)
    metadata["fusion"] = name
    path = save_fusion_checkpoint(out / "model.pt", model, fusion, metadata)
    print(f"panoptic-train: {total_steps} steps of fusion {name} done in {time.time() - started:.0f} s; "
          f"weights in {path}", file=sys.stderr)
    return 0
