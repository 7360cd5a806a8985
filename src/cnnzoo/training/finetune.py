"""Fine-tuning a pretrained model: which parameters learn, at which rate, and when.

Everything here goes through the models' head API (``get_classifier()``): the classifier is the
*head*, every other parameter the *backbone*, whatever the architecture.

- :func:`freeze_backbone` turns the backbone's gradients off (``linear``, and ``gradual``'s first epochs);
- :func:`freeze_batchnorm` keeps batch-norm layers as the weights have them (``--freeze-bn``);
- :func:`parameter_groups` splits head and backbone, each with its learning-rate factor
  (``--backbone-lr-scale``), for :func:`cnnzoo.training.optim.build_optimizer`;
- :func:`on_epoch_start` is ``gradual``'s schedule: the head alone first, then everything.
"""
from __future__ import annotations

from typing import Iterable, Optional

import torch
from torch import nn

from cnnzoo.errors import UserError
from cnnzoo.models import Classifier

# gradual: the head trains alone for the first fifth of the run, at least one epoch. A fresh head's
# first gradients are large and random; sent into the pretrained backbone they distort the features
# the head is about to learn to read (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features
# and Underperform Out-of-Distribution": train the head first, then everything). A fifth is enough
# for a linear head on good features to come close to its best (it is the whole of `linear`), and
# leaves most of the run, and of the learning-rate schedule, to the whole network.
GRADUAL_HEAD_SHARE = 0.2


def gradual_head_epochs(epochs: int) -> int:
    """Epochs ``gradual`` trains the head alone: ``max(1, int(epochs * 0.2))`` (1 for up to 9 epochs,
    2 for 10, 4 for 20). The backbone joins at the start of epoch ``gradual_head_epochs(epochs) + 1``."""
    return max(1, int(epochs * GRADUAL_HEAD_SHARE))


def backbone_and_head(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(backbone, head)`` parameters, in ``model.parameters()`` order: the head is the classifier
    (``model.get_classifier()``), the backbone everything else, including the MLP of VGG's head and
    GoogLeNet's auxiliary classifiers. Give the model itself, not a DistributedDataParallel wrapper."""
    if not isinstance(model, Classifier):
        raise UserError(f"{type(model).__name__} has no classifier head (get_classifier()); "
                        "fine-tuning options need one")
    head_ids = {id(p) for p in model.get_classifier().parameters()}
    backbone: list[nn.Parameter] = []
    head: list[nn.Parameter] = []
    for param in model.parameters():
        (head if id(param) in head_ids else backbone).append(param)
    return backbone, head


def freeze_backbone(model: nn.Module, frozen: bool = True) -> None:
    """Turn the backbone's gradients off (or back on). Parameters of layers :func:`freeze_batchnorm`
    froze stay frozen either way. A frozen parameter gets no gradient (``grad`` stays None after
    ``zero_grad(set_to_none=True)``), so SGD, Adam and AdamW leave it - and its weight decay and
    momentum - exactly as it is, while it can stay in the optimizer for the day it is unfrozen."""
    for param in _unfreezable_backbone(model):
        param.requires_grad_(not frozen)


def _unfreezable_backbone(model: nn.Module) -> list[nn.Parameter]:
    """The backbone's parameters, less those of layers frozen for good by :func:`freeze_batchnorm`."""
    kept_frozen = {id(p) for m in model.modules() if isinstance(m, _FrozenBatchNorm) for p in m.parameters()}
    return [p for p in backbone_and_head(model)[0] if id(p) not in kept_frozen]


class _FrozenBatchNorm:
    """Mixed into a batch-norm layer's class by :func:`freeze_batchnorm`: ``train()`` leaves it in eval mode."""

    def train(self, mode: bool = True):
        # a mixin placed before the batch-norm class: super() is that class, whose train() this keeps off
        return super().train(False)  # type: ignore[misc]


_FROZEN_CLASSES: dict[type, type] = {}


def freeze_batchnorm(model: nn.Module) -> int:
    """Keep every batch-norm layer as the weights have it - running statistics and affine parameters -
    through any later ``model.train()``; returns how many layers were frozen.

    How: each layer's class becomes a subclass of itself whose ``train()`` keeps it in eval mode, and
    its parameters stop taking gradients. Why this way: the layer's own ``training`` flag stays False,
    so everything that reads it (the forward, DDP's buffer broadcast, a summary) sees a frozen
    layer, where a forward pre-hook would leave ``training`` True until the next forward; and the
    parameters, buffers and their names are unchanged, so checkpoints load into an unfrozen model
    and an optimizer state still fits (replacing the layer by torchvision's FrozenBatchNorm2d would
    turn parameters into buffers and drop ``num_batches_tracked``). Call it before building the
    optimizer: the frozen affine parameters are then left out of it.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, _FrozenBatchNorm):
            module.__class__ = _frozen_class(type(module))
            module.train(False)
            for param in module.parameters(recurse=False):
                param.requires_grad_(False)
            count += 1
    return count


def _frozen_class(cls: type) -> type:
    if cls not in _FROZEN_CLASSES:
        _FROZEN_CLASSES[cls] = type(f"Frozen{cls.__name__}", (_FrozenBatchNorm, cls), {"__module__": __name__})
    return _FROZEN_CLASSES[cls]


def split_decay(params: Iterable[nn.Parameter]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(decay, no_decay)``: conv/linear weights are decayed; norm scales/shifts and biases (1-D
    tensors) are not, since shrinking them only fights the normalisation (He et al. 2019, "Bag of
    Tricks", section 3.1)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for param in params:
        (no_decay if param.ndim <= 1 else decay).append(param)
    return decay, no_decay


def parameter_groups(model: nn.Module, weight_decay: float, backbone_lr_scale: float = 1.0) -> list[dict]:
    """Optimizer groups ``backbone/decay``, ``backbone/no_decay``, ``head/decay``, ``head/no_decay``
    (empty ones left out), each with ``"name"`` and ``"lr_scale"``: its learning rate is the
    schedule's times that factor (1 for the head, ``backbone_lr_scale`` for the backbone; see
    :meth:`cnnzoo.training.optim.LRSchedule.apply`).

    Parameters that take no gradient now are left out; freeze what must never learn (``linear``'s
    backbone, ``--freeze-bn``) before calling this, and what learns later (``gradual``'s backbone)
    after, so that unfreezing needs no new optimizer. A model without a classifier head (WaveNet)
    gets ``all/decay`` and ``all/no_decay``, and no backbone factor.
    """
    if isinstance(model, Classifier):
        parts = dict(zip(("backbone", "head"), backbone_and_head(model)))
        scales = {"backbone": float(backbone_lr_scale), "head": 1.0}
    else:
        if backbone_lr_scale != 1.0:
            raise UserError(f"{type(model).__name__} has no classifier head (get_classifier()) to tell the "
                            "backbone from; --backbone-lr-scale needs one")
        parts, scales = {"all": list(model.parameters())}, {"all": 1.0}
    groups = []
    for part, params in parts.items():
        decay, no_decay = split_decay(p for p in params if p.requires_grad)
        for kind, chosen, wd in (("decay", decay, weight_decay), ("no_decay", no_decay, 0.0)):
            if chosen:
                groups.append({"params": chosen, "weight_decay": wd, "lr_scale": scales[part],
                               "name": f"{part}/{kind}"})
    return groups


def on_epoch_start(model: nn.Module, optimizer: Optional[torch.optim.Optimizer], mode: Optional[str],
                   epoch: int, epochs: int) -> Optional[str]:
    """Set which parameters learn in ``epoch`` (0-based) of ``epochs``; returns a line for the
    history when something changed this epoch, else None.

    Only ``gradual`` changes anything: the backbone is frozen for the first
    :func:`gradual_head_epochs` epochs and unfrozen from then on. The state is set every epoch from
    ``(mode, epoch, epochs)`` alone, so a run resumed at any epoch trains exactly as one that was
    not interrupted. ``optimizer``, when given, is checked to hold the backbone (build it before the
    first call, so the frozen parameters are in it and unfreezing needs no new optimizer).
    """
    if mode != "gradual":
        return None
    switch = gradual_head_epochs(epochs)
    freeze_backbone(model, frozen=epoch < switch)
    if optimizer is not None:
        _check_in_optimizer(model, optimizer)
    if epoch == switch:
        return f"unfroze the backbone at epoch {epoch + 1}"
    return None


def _check_in_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    missing = [p for p in _unfreezable_backbone(model) if id(p) not in held]
    if missing:
        raise RuntimeError(f"{len(missing)} backbone parameters are not in the optimizer: build it before "
                           "on_epoch_start freezes the backbone, so that unfreezing can train them")
