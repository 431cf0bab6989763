"""HPS (Kniewasser, Grabner, Roth, "Holistic panoptic segmentation"): a differentiable fusion trained end to
end (``hps``), optionally with the initial segmentation image in the semantic branch (``hps_isi``).

**Fusion.** ``Z = [X_s for the stuff train ids s, ascending; for each detection k of class c, score s_k:
X_c + log(s_k) inside its box (the head's pixel-centre rule), -inf outside]``: the instance channel is the
box-cropped class logit weighted by the detection score (``log(s * exp(X_c))``), so of two overlapping
same-class boxes the more confident one wins. Inference: the first argmax of Z (stuff wins ties; among
detections the lower index); no unknown and no small-stuff step (HPS has none). Training: softmax over Z and
a *panoptic cross-entropy*: the ground truth is reordered to Z's channels through the lookup table of
:func:`.matching.match_detections` (stuff pixel -> its stuff channel, pixel of ground-truth instance g ->
the channel of the detection matched to g); void pixels, pixels of unmatched instances and pixels outside
their matched detection's box (where that channel is -inf) are ignored. The loss is added to the network's
own losses and the whole network is fine-tuned (boxes and scores come from NMS and carry no gradient).

**ISI** (``isi=True``). The detections are merged per thing class into an image at the semantic branch's
1/4 grid: ``ISI_t(p)`` = the score-weighted average of the canvases ``s_k * P_t(p)`` of the class-t boxes
holding p (0 where none), ``P = softmax`` of the network's 1/4 logits (detached). It is concatenated with
the semantic branch's features (the input of its last 1x1 conv, captured by a forward hook, see
:meth:`attach`), then four 3x3 conv-BN-ReLU blocks and a 1x1 conv-BN give class logits, *added* to the
semantic branch's logits; Z uses these refined logits and the semantic loss is also applied to them.
Deviations from the paper, for a short fine-tuning from a trained network: the residual sum and the final
BN's scale initialised to 0 (training starts from the shipped model's output), and no ReLU after the last
BN (logits must be able to go negative).

Export: the forward is static-shape (K padded slots) but ``hps_isi`` reads the hooked features, so only the
eager CPU / CUDA backends run it; ``hps`` needs just the network's own outputs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..panoptic import OFFSET
from ..taxonomy import VOID_TRAIN_ID, Taxonomy
from .common import TaxonomyTables, box_masks, neutralise_padding, trim_slots
from .matching import match_detections

IGNORE = -100


class ISIHead(nn.Module):
    def __init__(self, feature_channels: int, num_things: int, num_classes: int, width: int = 64):
        super().__init__()
        layers, channels = [], feature_channels + num_things
        for _ in range(4):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            channels = width
        layers += [nn.Conv2d(width, num_classes, 1, bias=False), nn.BatchNorm2d(num_classes)]
        self.layers = nn.Sequential(*layers)
        nn.init.zeros_(self.layers[-1].weight)  # starts as the plain semantic branch

    def forward(self, features: torch.Tensor, isi: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.cat([features, isi], 1))


class HPSFusion(nn.Module):
    box_free = False

    def __init__(self, taxonomy: Taxonomy, isi: bool = False, feature_channels: int = 64):
        super().__init__()
        self.tables = TaxonomyTables(taxonomy)
        self.isi = bool(isi)
        self.isi_head = ISIHead(feature_channels, len(taxonomy.thing_train_ids), taxonomy.num_classes) if isi else None
        self._captured: dict = {}
        self._hook = None

    # -- the semantic branch's features (ISI) ----------------------------------------------------------
    def attach(self, model: nn.Module) -> None:
        """Capture the semantic branch's last features and 1/4 logits at every forward of ``model``."""
        if not self.isi:
            return
        if self._hook is not None:
            self._hook.remove()

        def capture(_module, inputs, output):
            self._captured = {"features": inputs[0], "logits": output}
        self._hook = model.semantic_branch.predictor.register_forward_hook(capture)

    def isi_image(self, coarse_logits: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
                  scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, T, h, w) ISI on the coarse grid; ``boxes`` in that grid's pixels."""
        probs = coarse_logits.detach().float().softmax(1)
        inbox = box_masks(boxes, coarse_logits.shape[-2:]).float()  # (B, K, h, w)
        weight = torch.where(valid, scores, 0.0).clamp(min=0)
        slot = self.tables.thing_slot[labels]  # (B, K)
        onehot = F.one_hot(slot.clamp(min=0), len(self.tables.thing_train_ids)).float() * valid.unsqueeze(-1)
        covered = torch.einsum("bk,bkt,bkhw->bthw", weight, onehot, inbox)  # sum of s_k over holding boxes
        weighted = torch.einsum("bk,bkt,bkhw->bthw", weight * weight, onehot, inbox)  # sum of s_k * s_k
        thing_probs = probs.index_select(1, self.tables.thing_train_ids)
        return torch.where(covered > 0, weighted / covered.clamp(min=1e-12), 0.0) * thing_probs

    def refined_logits(self, boxes_at_input, labels, scores, valid, input_width: float) -> torch.Tensor:
        """The semantic branch's 1/4 logits + ISI head, from the captured forward."""
        if not self._captured:
            raise RuntimeError("hps_isi needs the semantic branch's features: call attach(model) and run it first")
        coarse = self._captured["logits"]
        scale = coarse.shape[-1] / input_width
        isi = self.isi_image(coarse, boxes_at_input * scale, labels, scores, valid)
        return coarse + self.isi_head(self._captured["features"], isi.to(coarse.dtype))

    # -- fusion ----------------------------------------------------------------------------------------
    def panoptic_logits(self, semantic_logits, boxes, labels, scores, valid) -> torch.Tensor:
        """Z (B, S + K, H, W): stuff logits, then each detection's score-weighted box-cropped class logit."""
        h, w = semantic_logits.shape[-2:]
        stuff = semantic_logits.index_select(1, self.tables.stuff_train_ids)
        cls = torch.gather(semantic_logits, 1, labels.view(*labels.shape, 1, 1).expand(-1, -1, h, w))
        inside = box_masks(boxes, (h, w)) & valid.view(*valid.shape, 1, 1)
        instance = torch.where(inside, cls + torch.log(scores.clamp(min=1e-12)).view(*scores.shape, 1, 1),
                               float("-inf"))
        return torch.cat([stuff, instance], 1)

    def forward(self, semantic_logits, boxes, labels, scores, valid, centers=None):
        k = trim_slots(valid)
        boxes, labels, scores = neutralise_padding(boxes[:, :k], labels[:, :k], scores[:, :k], valid[:, :k],
                                                   int(self.tables.thing_train_ids[0]))
        valid = valid[:, :k]
        h, w = semantic_logits.shape[-2:]
        if self.isi:
            coarse = self.refined_logits(boxes, labels, scores, valid, float(w))
            semantic_logits = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
        z = self.panoptic_logits(semantic_logits.float(), boxes, labels, scores, valid)
        best = z.argmax(1)
        num_stuff = self.tables.stuff_train_ids.numel()
        is_det = best >= num_stuff
        det = (best - num_stuff).clamp(min=0)
        stuff_train = self.tables.stuff_train_ids[best.clamp(max=num_stuff - 1)]
        train = torch.where(is_det, torch.gather(labels, 1, det.flatten(1)).view_as(det), stuff_train)
        category = self.tables.category_ids[train] * OFFSET
        ids = torch.where(is_det, category + (det + 1).to(torch.int32), category).to(torch.int32)
        return ids, train.to(torch.uint8)

    def compute_loss(self, outputs: dict, det: dict, targets: dict) -> dict[str, torch.Tensor]:
        """Panoptic cross-entropy (and, with ISI, the semantic cross-entropy of the refined logits).

        ``outputs``: the network's outputs (1/4 logits); ``det``: its padded detections in input pixels;
        ``targets``: ``semantic`` (B, H, W) train ids (255 void), ``instances`` (B, H, W) ground-truth instance
        index (-1 none), ``boxes`` / ``labels`` lists.
        """
        size = targets["semantic"].shape[-2:]
        k = trim_slots(det["valid"])
        valid = det["valid"][:, :k]
        boxes, labels, scores = neutralise_padding(det["boxes"][:, :k], det["labels"][:, :k], det["scores"][:, :k],
                                                   valid, int(self.tables.thing_train_ids[0]))
        losses = {}
        coarse = outputs["semantic"].float()
        if self.isi:
            coarse = self.refined_logits(boxes, labels, scores, valid, float(size[1]))
        logits = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
        if self.isi:
            semantic = targets["semantic"].long()
            losses["isi_semantic"] = (F.cross_entropy(logits, semantic, ignore_index=VOID_TRAIN_ID)
                                      if bool((semantic != VOID_TRAIN_ID).any()) else logits.sum() * 0)
        z = self.panoptic_logits(logits, boxes, labels, scores, valid)
        target = panoptic_targets(targets, boxes, labels, valid, self.tables)
        log_probs = z.log_softmax(1)
        picked = torch.gather(log_probs, 1, target.clamp(min=0).unsqueeze(1)).squeeze(1)
        use = (target >= 0) & torch.isfinite(picked)
        losses["fusion"] = -picked[use].mean() if bool(use.any()) else z.nan_to_num(0, 0, 0).sum() * 0
        return losses


def panoptic_targets(targets: dict, boxes: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor,
                     tables: TaxonomyTables) -> torch.Tensor:
    """(B, H, W) channel of Z each pixel should take (-100 = ignored), through the lookup table."""
    semantic = targets["semantic"].long()
    instances = targets["instances"].long()
    num_stuff = tables.stuff_train_ids.numel()
    stuff_position = torch.full((tables.num_classes + 1,), IGNORE, dtype=torch.int64, device=semantic.device)
    stuff_position[tables.stuff_train_ids] = torch.arange(num_stuff, device=semantic.device)
    out = stuff_position[torch.where(semantic == VOID_TRAIN_ID, tables.num_classes, semantic)]
    for i in range(semantic.shape[0]):
        table = match_detections(boxes[i], labels[i], valid[i], targets["boxes"][i], targets["labels"][i])
        channel = torch.where(table >= 0, num_stuff + table, IGNORE).to(semantic.device)
        lookup = torch.cat([channel, channel.new_tensor([IGNORE])])  # index -1 -> ignore
        thing = instances[i] >= 0
        out[i] = torch.where(thing, lookup[instances[i]], out[i])
    return out
