"""panoptic-train: train PanopticNet on a COCO-panoptic folder or Cityscapes.

    panoptic-train --config config/train_synthetic.yaml --data data/train --val-data data/val --out runs/r18

Single process, or DistributedDataParallel under ``torchrun`` (gloo on CPU, nccl on CUDA; rank 0 logs and
saves). Writes ``OUT/last.pt`` (weights + optimizer state, for ``--resume``; rewritten every ``ckpt_every`` steps),
``OUT/best.pt`` (weights only, best validation PQ), ``OUT/model.pt`` (final weights only) and ``OUT/log.jsonl``;
weights-only ``OUT/step_<N>.pt`` snapshots only with ``--snapshots`` (``train.snapshots``).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from .checkpoint import build_metadata, read_checkpoint, save_checkpoint
from .network import PanopticNet
from .pretrained import load_backbone_weights
from .targets import IMAGENET_MEAN, IMAGENET_STD, PanopticDataset, collate

DEFAULTS = {
    "data": {"format": "auto", "train": None, "val": None, "train_split": None, "val_split": None,
             "val_images": 50},
    # photometric: strength of the exposure / contrast / gamma / haze / blur / noise jitter (0 = off; 1 = see
    # panoptic_ros.data.conditions.photometric_jitter)
    "input": {"height": 256, "width": 512, "scale_range": [0.75, 1.25], "flip": True, "photometric": 0.0},
    "model": {"backbone": "resnet50", "fpn_channels": 256, "head_channels": 128},
    "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "betas": [0.9, 0.999], "schedule": "cosine",
              "warmup_steps": 500, "min_lr_ratio": 0.01, "poly_power": 0.9, "grad_clip": 10.0},
    "train": {"steps": 10000, "batch_size": 8, "workers": 2, "amp": True, "log_every": 20,
              "val_every": 1000, "ckpt_every": 1000, "snapshots": False, "seed": 0, "score_threshold": 0.4},
    "out": "runs/panoptic",
    # Which panoptic fusion the training serves (panoptic_ros.fusion): parameter_free trains the network alone;
    # learned_conv / hps / hps_isi fine-tune through panoptic_ros.fusion.train (needs --init).
    "fusion": {"name": "parameter_free", "loss_weight": 1.0, "lr": None},  # lr: of the fusion's own layers
}


def merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | Path | None) -> dict:
    cfg = (yaml.safe_load(Path(path).read_text()) if path else {}) or {}
    base = cfg.pop("base", None)  # a second stage states only what differs from its first
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown config sections {sorted(unknown)} in {path}; known: {sorted(DEFAULTS)}")
    return merge(load_config(Path(path).parent / base) if base else DEFAULTS, cfg)


def open_reader(fmt: str, root, split: str | None, default_split: str = "train"):
    """A data-set reader (len, [i] -> Sample, .taxonomy): see :func:`panoptic_ros.data.datasets.open_dataset`;
    a list of roots is read as one set (:class:`~panoptic_ros.data.datasets.ConcatReader`)."""
    from ..data.datasets import ConcatReader, open_dataset

    if isinstance(root, (list, tuple)):
        if len(root) == 1:
            return open_dataset(root[0], split, fmt, default_split=default_split)
        return ConcatReader([open_dataset(r, split, fmt, default_split=default_split) for r in root])
    return open_dataset(root, split, fmt, default_split=default_split)


def lr_lambda(step: int, optim: dict, total_steps: int) -> float:
    """Linear warmup, then cosine or poly decay to ``min_lr_ratio``."""
    warmup = int(optim["warmup_steps"])
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    floor = float(optim["min_lr_ratio"])
    if optim["schedule"] == "cosine":
        decay = 0.5 * (1 + math.cos(math.pi * progress))
    elif optim["schedule"] == "poly":
        decay = (1 - progress) ** float(optim["poly_power"])
    elif optim["schedule"] == "constant":
        decay = 1.0
    else:
        raise ValueError(f"optim.schedule must be cosine, poly or constant, got {optim['schedule']!r}")
    return floor + (1 - floor) * decay


def make_optimizer(model: torch.nn.Module, optim: dict) -> torch.optim.Optimizer:
    """AdamW (decoupled decay, none on norms / biases) or Adam (the paper's setup, L2 decay on all)."""
    if optim["name"] == "adamw":
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if p.requires_grad:  # frozen trunk stages (model.freeze_at) are not optimised
                (no_decay if p.ndim <= 1 else decay).append(p)
        groups = [{"params": decay, "weight_decay": float(optim["weight_decay"])},
                  {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=float(optim["lr"]), betas=tuple(optim["betas"]))
    if optim["name"] == "adam":
        return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=float(optim["lr"]),
                                betas=tuple(optim["betas"]),
                                weight_decay=float(optim["weight_decay"]))
    raise ValueError(f"optim.name must be adamw or adam, got {optim['name']!r}")


def infinite(loader: DataLoader, sampler, epoch: int = 0):
    while True:
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: ([t.to(device, non_blocking=True) for t in v] if isinstance(v, list) and v and torch.is_tensor(v[0])
                else v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def train_step(net, model: PanopticNet, batch: dict, optimizer, scaler, use_amp: bool,
               grad_clip: float) -> tuple[dict, torch.Tensor]:
    """One optimizer step; ``net`` is ``model`` or its DDP wrapper. Returns the losses and the gradient norm."""
    with torch.autocast(batch["image"].device.type, dtype=torch.float16, enabled=use_amp):
        outputs = net(batch["image"])
    losses = model.compute_loss(outputs, batch)
    if not torch.isfinite(losses["total"]):
        raise FloatingPointError(f"non-finite loss: { {k: v.item() for k, v in losses.items()} }")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(losses["total"]).backward()
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return losses, grad_norm


def validate(model: PanopticNet, metadata: dict, reader, max_images: int, score_threshold: float) -> dict:
    """Panoptic quality of the model on the first ``max_images`` samples of ``reader``."""
    from ..evaluation.pq import PQAccumulator
    from ..predictor import Predictor

    was_training = model.training
    predictor = Predictor.from_model(model, metadata, score_threshold=score_threshold)
    accumulator = PQAccumulator(reader.taxonomy)
    n = len(reader) if max_images <= 0 else min(max_images, len(reader))
    with torch.no_grad():
        for i in range(n):
            sample = reader[i]
            result = predictor.predict_batch([sample.image])[0]
            accumulator.add(result.panoptic, result.segments, sample.panoptic, sample.segments)
    model.train(was_training)
    return accumulator.result()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="panoptic-train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="training YAML (see config/train_*.yaml)")
    p.add_argument("--data", nargs="+", help="training data (several roots are mixed into one set): a COCO root (annotations/panoptic_<split>.json, "
                                  "annotations/panoptic_<split>/, <split>/), a Cityscapes root (gtFine/, "
                                  "leftImg8bit/) or a panoptic-world folder (annotations.json, panoptic/, images/); "
                                  "overrides data.train")
    p.add_argument("--split", help="training split of a COCO or Cityscapes root (e.g. train2017, train); "
                                   "overrides data.train_split (default: the root's split starting with 'train')")
    p.add_argument("--val-data", help="validation data; overrides data.val (default for a COCO or Cityscapes "
                                      "root: the training root, with --val-split)")
    p.add_argument("--val-split", help="validation split (e.g. val2017, val); overrides data.val_split")
    p.add_argument("--format", choices=("auto", "coco", "cityscapes"),
                   help="data layout; overrides data.format (default auto: detected from the files)")
    p.add_argument("--out", help="output folder; overrides out")
    p.add_argument("--resume", help="checkpoint with training state (OUT/last.pt) to continue from")
    p.add_argument("--init", help="start from these weights (a checkpoint whose weights fit this network) with a fresh "
                                  "optimizer and schedule: a second training stage")
    p.add_argument("--steps", type=int, help="total optimizer steps; overrides train.steps")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda if available")
    p.add_argument("--threads", type=int, help="torch CPU threads per process")
    p.add_argument("--batch-size", type=int, help="per-process batch size; overrides train.batch_size")
    p.add_argument("--workers", type=int, help="data-loader worker processes; overrides train.workers")
    p.add_argument("--no-val", action="store_true", help="skip periodic validation")
    p.add_argument("--snapshots", action="store_true", default=None,
                   help="also keep OUT/step_<N>.pt (weights) at every train.ckpt_every; sets train.snapshots")
    return p.parse_args(argv)


def init_from_weights(model: torch.nn.Module, path) -> None:
    """Loads ``path``'s weights into ``model`` for a new training stage.

    The network configs may differ where no weight depends on them (e.g. an extra detection level: RetinaNet's
    head is shared across levels); every tensor must then still match in name and shape.
    """
    payload = read_checkpoint(path)
    theirs = payload["metadata"].get("network") or {}
    differing = sorted(k for k in set(theirs) | set(model.config) if theirs.get(k) != model.config.get(k))
    own = model.state_dict()
    mismatched = sorted(set(own) ^ set(payload["state_dict"])) + sorted(
        k for k in set(own) & set(payload["state_dict"]) if own[k].shape != payload["state_dict"][k].shape)
    if mismatched:
        raise SystemExit(f"panoptic-train: {path} holds network {theirs}, the config asks for {model.config}: "
                         f"{len(mismatched)} weights differ in name or shape (first: {mismatched[0]}); "
                         f"differing settings: {', '.join(differing)}")
    if differing:
        print(f"panoptic-train: {path}'s weights fit this network; settings changed: "
              + ", ".join(f"{k} {theirs.get(k)} -> {model.config.get(k)}" for k in differing))
    model.load_state_dict(payload["state_dict"])


def one_line(exc: BaseException) -> str:
    """An error as one line; a data-loader worker's re-raised error keeps only its own last line."""
    text = str(exc.code if isinstance(exc, SystemExit) else exc).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1]
    text = " ".join(text.split())
    return text[len("panoptic-train: "):] if text.startswith("panoptic-train: ") else text


def main(argv=None) -> int:
    """The command line: every problem with the inputs (config, data, weights) is one line and exit 2."""
    from ..data.datasets import DataError
    from .checkpoint import CheckpointError

    args = parse_args(argv)
    try:
        return run(args)
    except SystemExit as exc:
        if not isinstance(exc.code, str):
            raise
        print(f"panoptic-train: {one_line(exc)}", file=sys.stderr)
        return 2
    except (DataError, CheckpointError, ValueError, FileNotFoundError, IsADirectoryError, yaml.YAMLError) as exc:
        print(f"panoptic-train: {one_line(exc)}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    for key, value in (("data", {"train": args.data}), ("data", {"val": args.val_data}),
                       ("data", {"train_split": args.split, "val_split": args.val_split, "format": args.format}),
                       ("train", {"steps": args.steps}), ("train", {"batch_size": args.batch_size}),
                       ("train", {"workers": args.workers}), ("train", {"snapshots": args.snapshots})):
        cfg[key].update({k: v for k, v in value.items() if v is not None})
    cfg["out"] = args.out or cfg["out"]
    if args.init:
        cfg["train"]["init"] = str(args.init)  # provenance: the checkpoint metadata carries the training config
    if not cfg["data"]["train"]:
        raise SystemExit("panoptic-train: no training data: give --data or data.train in the config")
    if args.threads:
        torch.set_num_threads(args.threads)

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if cfg["fusion"]["name"] != "parameter_free":
        from ..fusion.train import train_fusion

        return train_fusion(cfg, args, device)
    rank, world = 0, 1
    if distributed:
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            device = torch.device("cuda", torch.cuda.current_device())
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
    try:
        return _train(cfg, args, device, rank, world, distributed)
    finally:
        if distributed:
            dist.destroy_process_group()


def _train(cfg: dict, args, device: torch.device, rank: int, world: int, distributed: bool) -> int:
    tcfg, ocfg, icfg, dcfg = cfg["train"], cfg["optim"], cfg["input"], cfg["data"]
    torch.manual_seed(int(tcfg["seed"]) + rank)
    out = Path(cfg["out"])
    reader = open_reader(dcfg["format"], dcfg["train"], dcfg["train_split"], "train")
    taxonomy = reader.taxonomy
    val_reader = None
    if not dcfg.get("val") and dcfg.get("val_split"):
        from ..data.datasets import detect_layout

        first = dcfg["train"][0] if isinstance(dcfg["train"], (list, tuple)) else dcfg["train"]
        if detect_layout(Path(first)) != "folder":
            dcfg["val"] = dcfg["train"]  # a COCO / Cityscapes root holds its validation split too
    if dcfg.get("val") and not args.no_val and int(tcfg["val_every"]) > 0:
        # Fail now, not after an hour of training, if validation was asked for but cannot run.
        from ..evaluation.pq import PQAccumulator  # noqa: F401
        from ..predictor import Predictor  # noqa: F401

        val_reader = open_reader(dcfg["format"], dcfg["val"], dcfg["val_split"], "val")
        if val_reader.taxonomy != taxonomy:
            raise SystemExit("panoptic-train: validation and training data have different categories")
    input_size = (int(icfg["height"]), int(icfg["width"]))
    normalization = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    dataset = PanopticDataset(reader, taxonomy, input_size, augment=True, scale_range=tuple(icfg["scale_range"]),
                              flip=bool(icfg["flip"]), photometric=float(icfg.get("photometric", 0.0)),
                              **normalization)

    network_cfg = {k: v for k, v in cfg["model"].items() if k != "backbone_weights"}
    model = PanopticNet.from_config(network_cfg, taxonomy=taxonomy)
    if cfg["model"].get("backbone_weights") and not (args.resume or args.init):
        loaded = load_backbone_weights(model.backbone, cfg["model"]["backbone_weights"])
        if rank == 0:
            print(f"panoptic-train: loaded {loaded} tensors from {cfg['model']['backbone_weights']} into the "
                  f"{model.backbone.name} trunk (norm {model.backbone.norm}, freeze_at "
                  f"{model.config['freeze_at']})", file=sys.stderr)
    model = model.to(device)
    optimizer = make_optimizer(model, ocfg)
    total_steps = int(tcfg["steps"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_lambda(s, ocfg, total_steps))
    use_amp = bool(tcfg["amp"]) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    step, best_pq = 0, -1.0
    if args.resume and args.init:
        raise SystemExit("panoptic-train: --resume continues a run, --init starts a new one from weights; give one")
    if args.init:
        init_from_weights(model, args.init)
    if args.resume:
        payload = read_checkpoint(args.resume)
        if "training_state" not in payload:
            raise SystemExit(f"panoptic-train: {args.resume} has no training state (use OUT/last.pt)")
        if payload["metadata"].get("network") != model.config:
            raise SystemExit(f"panoptic-train: {args.resume} holds network {payload['metadata'].get('network')}, "
                             f"the config asks for {model.config}")
        model.load_state_dict(payload["state_dict"])
        state = payload["training_state"]
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step, best_pq = int(state["step"]), float(state.get("best_pq", -1.0))
    dataset_hash = reader.hash() if hasattr(reader, "hash") else ""
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                    else None) if distributed else model

    sampler = DistributedSampler(dataset, world, rank, seed=int(tcfg["seed"])) if distributed else \
        RandomSampler(dataset, replacement=len(dataset) < int(tcfg["batch_size"]),
                      num_samples=max(len(dataset), int(tcfg["batch_size"])))
    workers = int(tcfg["workers"])
    loader = DataLoader(dataset, batch_size=int(tcfg["batch_size"]), sampler=sampler, num_workers=workers,
                        collate_fn=collate, drop_last=True, pin_memory=device.type == "cuda",
                        persistent_workers=workers > 0)
    if len(loader) == 0:
        raise ValueError(f"{len(dataset)} training samples over {world} processes do not fill one batch of "
                         f"{tcfg['batch_size']}")
    batches = infinite(loader, sampler, epoch=step // len(loader))

    def metadata(at_step: int) -> dict:
        return build_metadata(model, taxonomy, input_size, normalization, training=cfg, dataset_hash=dataset_hash,
                              step=at_step)

    def training_state(at_step: int) -> dict:
        return {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "step": at_step, "best_pq": best_pq}

    is_main = rank == 0
    log = None
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        log = open(out / "log.jsonl", "a")
    if is_main and val_reader is not None:
        validate(model, metadata(step), val_reader, 1, float(tcfg["score_threshold"]))  # fail now, not at step N
    running: dict[str, float] = {}
    bar = tqdm(total=total_steps, initial=step, disable=not is_main, dynamic_ncols=True, desc="train")
    net.train()
    started = time.time()
    try:
        while step < total_steps:
            losses, grad_norm = train_step(net, model, to_device(next(batches), device), optimizer, scaler,
                                           use_amp, float(ocfg["grad_clip"]))
            scheduler.step()
            step += 1
            for k, v in losses.items():  # exponential running mean for the progress bar
                running[k] = v.item() if k not in running else 0.9 * running[k] + 0.1 * v.item()
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in running.items()})
            if is_main and (step % int(tcfg["log_every"]) == 0 or step == total_steps):
                record = {"step": step, "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
                          "elapsed_s": round(time.time() - started, 1),
                          **{k: v.item() for k, v in losses.items()}}
                log.write(json.dumps(record) + "\n"); log.flush()
            if val_reader is not None and (step % int(tcfg["val_every"]) == 0 or step == total_steps):
                if is_main:
                    try:
                        result = validate(model, metadata(step), val_reader, int(dcfg["val_images"]),
                                          float(tcfg["score_threshold"]))
                    except Exception as exc:  # an hour of training is worth more than one validation
                        bar.write(f"step {step}: validation failed, training goes on:\n{traceback.format_exc()}")
                        log.write(json.dumps({"step": step, "val_error": repr(exc)}) + "\n"); log.flush()
                    else:
                        pq = float(result["All"]["pq"])
                        log.write(json.dumps({"step": step, "val": result}) + "\n"); log.flush()
                        bar.write(f"step {step}: PQ {100 * pq:.1f} (things {100 * result['Things']['pq']:.1f},"
                                  f" stuff {100 * result['Stuff']['pq']:.1f})")
                        if pq > best_pq:
                            best_pq = pq
                            save_checkpoint(out / "best.pt", model, metadata(step))
                if distributed:
                    dist.barrier()
            if is_main and (step % int(tcfg["ckpt_every"]) == 0 or step == total_steps):
                if tcfg.get("snapshots"):
                    save_checkpoint(out / f"step_{step}.pt", model, metadata(step))  # weights only
                save_checkpoint(out / "last.pt", model, metadata(step), training_state(step))
    except KeyboardInterrupt:
        # Keep the finished steps: --resume OUT/last.pt continues from here.
        bar.close()
        if is_main:
            save_checkpoint(out / "last.pt", model, metadata(step), training_state(step))
            print(f"panoptic-train: interrupted at step {step}; resume with --resume {out / 'last.pt'}",
                  file=sys.stderr)
        return 130
    bar.close()
    if is_main:
        save_checkpoint(out / "model.pt", model, metadata(step))
        print(f"panoptic-train: {step} steps done; weights in {out / 'model.pt'}", file=sys.stderr)
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
