"""ImageNet-style backbones from a local torchvision file: model.backbone_weights, model.norm, model.freeze_at."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops.misc import FrozenBatchNorm2d

from panoptic_ros.model import train
from panoptic_ros.model.backbone import group_norm
from panoptic_ros.model.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from panoptic_ros.model.network import PanopticNet
from panoptic_ros.model.pretrained import BackboneWeightsError, load_backbone_weights
from panoptic_ros.taxonomy import Taxonomy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory) -> Path:
    """A torchvision ResNet-18 state_dict as torchvision saves it (random weights: none can be downloaded here);
    running statistics made non-trivial so a BatchNorm that ignores them would show."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18()
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(net.state_dict(), path)
    return path


def _net(**kwargs) -> PanopticNet:
    return PanopticNet.from_config({"backbone": "resnet18", "fpn_channels": 32, "head_channels": 32, **kwargs},
                                   taxonomy=Taxonomy.cityscapes())


def test_frozen_bn_loads_every_trunk_tensor(resnet18_file):
    file = torch.load(resnet18_file, weights_only=True)
    model = _net(norm="frozen_bn")
    assert load_backbone_weights(model.backbone, resnet18_file) == \
        len([k for k in file if not k.startswith("fc.") and not k.endswith("num_batches_tracked")]) == 100
    assert isinstance(model.backbone.body.bn1, FrozenBatchNorm2d)
    body = model.backbone.body.state_dict()
    for key, value in file.items():
        if not key.startswith("fc.") and not key.endswith("num_batches_tracked"):
            assert torch.equal(body[key], value), key
    # the trunk computes what torchvision's ResNet-18 computes in eval mode (same weights, same statistics)
    reference = torchvision.models.resnet18()
    reference.load_state_dict(file)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = IntermediateLayerGetter(reference.eval(), {"layer4": "out"})(x)["out"]
        assert torch.allclose(model.backbone.body(x)["3"], expected, atol=1e-5)


def test_refuses_what_does_not_fit(resnet18_file, tmp_path):
    with pytest.raises(BackboneWeightsError, match="GroupNorm has no running statistics"):
        load_backbone_weights(_net(norm="gn").backbone, resnet18_file)
    with pytest.raises(BackboneWeightsError, match=r"do not fit resnet50 .*other shape|missing") as err:
        load_backbone_weights(PanopticNet.from_config({"backbone": "resnet50", "norm": "frozen_bn"},
                                                      taxonomy=Taxonomy.cityscapes()).backbone, resnet18_file)
    assert "\n" not in str(err.value)
    foreign = tmp_path / "foreign.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, foreign)
    with pytest.raises(BackboneWeightsError, match="100 trunk tensors missing"):
        load_backbone_weights(_net(norm="frozen_bn").backbone, foreign)
    text = tmp_path / "notes.pth"
    text.write_text("not a tensor file")
    with pytest.raises(BackboneWeightsError, match="not a torch state_dict file") as err:
        load_backbone_weights(_net(norm="bn").backbone, text)
    assert "\n" not in str(err.value)
    # --init with a torchvision file points at model.backbone_weights
    with pytest.raises(CheckpointError, match="model.backbone_weights"):
        read_checkpoint(resnet18_file)


def test_freeze_at_stops_gradients():
    model = _net(norm="frozen_bn", freeze_at=2)
    frozen = {name.split(".")[2] for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"conv1", "layer1"}  # bn1 is a FrozenBatchNorm2d: buffers, no parameters
    assert all(p.requires_grad for n, p in model.named_parameters() if ".layer2." in n or "fpn" in n)


def test_shipped_groupnorm_model_unchanged():
    """The shipped checkpoint (GroupNorm, saved before norm / freeze_at existed) loads strictly, and its trunk
    gives exactly what the trunk built the old way (torchvision ResNet-18 with GroupNorm) gives."""
    model, meta = load_checkpoint(ROOT / "models" / "panoptic_r18_synthetic.pt")
    assert "norm" not in meta["network"] and model.backbone.norm == "gn"
    old = IntermediateLayerGetter(torchvision.models.resnet18(weights=None, norm_layer=group_norm),
                                  {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"})
    old.load_state_dict(model.backbone.body.state_dict())
    x = torch.randn(1, 3, 192, 384)
    with torch.no_grad():
        new_out, old_out = model.backbone.body(x), old.eval()(x)
    for key in old_out:
        assert torch.equal(new_out[key], old_out[key])


@pytest.mark.slow
def test_training_from_a_torchvision_file(resnet18_file, tmp_path):
    """panoptic-train with model.backbone_weights: at lr 0 the trunk after the steps is the file, tensor for
    tensor; with freeze_at 2 and a real lr the stem and layer1 still are, layer4 is not."""
    from _distributed_roots import coco_root

    data = coco_root(tmp_path / "coco", splits=(("train2017", 2, 0),))
    cfg = {"input": {"height": 64, "width": 128},
           "model": {"backbone": "resnet18", "fpn_channels": 32, "head_channels": 32, "norm": "frozen_bn",
                     "backbone_weights": str(resnet18_file)},
           "optim": {"warmup_steps": 1, "lr": 0.0},
           "train": {"batch_size": 2, "workers": 0, "ckpt_every": 100}}
    (tmp_path / "zero.yaml").write_text(yaml.safe_dump(cfg))
    args = ["--data", str(data), "--device", "cpu", "--no-val", "--steps", "2"]
    assert train.main(["--config", str(tmp_path / "zero.yaml"), "--out", str(tmp_path / "a"), *args]) == 0
    file = {k: v for k, v in torch.load(resnet18_file, weights_only=True).items()
            if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    after = read_checkpoint(tmp_path / "a" / "last.pt")["state_dict"]
    assert read_checkpoint(tmp_path / "a" / "last.pt")["metadata"]["network"]["norm"] == "frozen_bn"
    for key, value in file.items():
        assert torch.equal(after[f"backbone.body.{key}"], value), key

    cfg["optim"]["lr"] = 1e-2
    cfg["model"]["freeze_at"] = 2
    (tmp_path / "frozen.yaml").write_text(yaml.safe_dump(cfg))
    assert train.main(["--config", str(tmp_path / "frozen.yaml"), "--out", str(tmp_path / "b"), *args]) == 0
    after = read_checkpoint(tmp_path / "b" / "last.pt")["state_dict"]
    for key, value in file.items():
        same = torch.equal(after[f"backbone.body.{key}"], value)
        if key.startswith(("conv1.", "bn1.", "layer1.")) or "bn" in key or "downsample.1" in key:
            assert same, key  # frozen stage, or FrozenBatchNorm2d
        elif key.endswith("conv2.weight") and key.startswith("layer4."):
            assert not same, key
