"""Panoptic fusions: the ways of turning the network's outputs into a panoptic id map, side by side.

Every fusion is an ``nn.Module`` with the call of :class:`~panoptic_ros.head.PanopticHead`::

    ids, semantic = fusion(semantic_logits, boxes, labels, scores, valid, centers)

i.e. the network's output dict as the Predictor hands it to the head: ``semantic_logits`` (B, C, H, W) and
``centers`` (B, 2, H, W) on the head grid, and the decoded, padded detections (``boxes`` (B, K, 4) xyxy in
that grid's pixels, ``labels`` (B, K) thing train ids, ``scores`` (B, K), ``valid`` (B, K) bool). It returns
panoptic ids (B, H, W) int32 in the package's convention (:mod:`panoptic_ros.panoptic`: stuff
``category * 1000``, a thing ``category * 1000 + k``, void 0) and the semantic train ids (B, H, W) uint8
(255 void, ``semantic_from_ids(ids)``). For box-based fusions instance ``k`` is padded detection ``k - 1``
(so the segment table takes its score); a box-free fusion (``box_free = True``) numbers its own instances.

========================  ==========  =================================================================
name                      trains      module
========================  ==========  =================================================================
``parameter_free``        no          :mod:`panoptic_ros.head` (Weber et al., the default)
``heuristic``             no          :mod:`.heuristic` (Panoptic FPN / detectron2 combine)
``center_vote``           no          :mod:`.center_vote` (Panoptic-DeepLab grouping, no boxes)
``learned_conv``          its CNNs    :mod:`.learned_conv` (Diaz-Zapata, frozen network)
``hps``                   network     :mod:`.hps` (HPS end-to-end fusion loss)
``hps_isi``               network+ISI :mod:`.hps` (HPS fusion loss + initial segmentation image)
========================  ==========  =================================================================
"""
from __future__ import annotations

FUSIONS = ("parameter_free", "heuristic", "center_vote", "learned_conv", "hps", "hps_isi")
DETERMINISTIC = ("parameter_free", "heuristic", "center_vote")
TRAINABLE = ("learned_conv", "hps", "hps_isi")


class FusionMismatch(ValueError):
    """A checkpoint trained for one fusion asked to run another."""


def checkpoint_fusion(metadata: dict) -> str:
    """The fusion a checkpoint was trained for (``parameter_free`` for checkpoints that do not say)."""
    return str(metadata.get("fusion", "parameter_free"))


def check_fusion(requested: str, metadata: dict, path: str = "the checkpoint") -> None:
    """Refuse, in one line, a fusion the checkpoint cannot run.

    A trainable fusion needs a checkpoint trained for it (its weights, or a network fine-tuned through it);
    a checkpoint trained for a trainable fusion runs only with that fusion. Deterministic fusions run on any
    checkpoint of a deterministic fusion (they have no weights).
    """
    if requested not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {requested!r}")
    trained = checkpoint_fusion(metadata)
    if (requested in TRAINABLE or trained in TRAINABLE) and requested != trained:
        raise FusionMismatch(f"fusion {requested!r} does not fit {path}, trained for fusion {trained!r}; "
                             f"set fusion to {trained!r} or use a checkpoint trained for {requested!r}")


def build_fusion(name: str, taxonomy, stuff_area_threshold: int = 0, policy: str = "closest_center",
                 unknown: bool = True, state_dict: dict | None = None, max_instances: int = 100,
                 check_values: bool = True, feature_channels: int = 64):
    """The fusion module ``name`` for ``taxonomy`` (weights from ``state_dict`` for trainable ones).

    ``feature_channels``: the semantic branch's width (``head_channels``), for ``hps_isi``.
    ``policy`` / ``unknown`` apply to ``parameter_free`` only; ``stuff_area_threshold`` (pixels of the grid the
    fusion runs on) to the three deterministic fusions and ``learned_conv``; the HPS fusions are a plain argmax.
    """
    from ..head import PanopticHead

    if name not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {name!r}")
    if name == "parameter_free":
        return PanopticHead.from_taxonomy(taxonomy, policy=policy, unknown=unknown,
                                          stuff_area_threshold=stuff_area_threshold, check_values=check_values)
    if name == "heuristic":
        from .heuristic import HeuristicFusion

        return HeuristicFusion(taxonomy, stuff_area_threshold=stuff_area_threshold)
    if name == "center_vote":
        from .center_vote import CenterVoteFusion

        return CenterVoteFusion(taxonomy, stuff_area_threshold=stuff_area_threshold, top_k=max_instances)
    if name == "learned_conv":
        from .learned_conv import LearnedConvFusion

        fusion = LearnedConvFusion(taxonomy, stuff_area_threshold=stuff_area_threshold)
    else:
        from .hps import HPSFusion

        fusion = HPSFusion(taxonomy, isi=name == "hps_isi", feature_channels=feature_channels)
    if state_dict is not None:
        fusion.load_state_dict(state_dict)
    return fusion.eval()
