"""The single-shot panoptic network (Weber et al., IROS 2020): backbone + FPN, semantic, center and RetinaNet
branches, their training targets and losses, checkpoints and the ``panoptic-train`` command."""
