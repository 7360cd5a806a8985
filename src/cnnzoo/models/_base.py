"""What every classifier here shares: the head API of timm, so fine-tuning, feature extraction and
comparison need nothing model-specific."""
from __future__ import annotations

from typing import Mapping, Optional, Protocol, TypeVar, runtime_checkable

import torch
from torch import nn

from cnnzoo.layers import Head
from cnnzoo.registry import ModelError


class Classifier(nn.Module):
    """Subclasses build ``self.head`` (a :class:`~cnnzoo.layers.Head`: ``ClassifierHead``, ``MlpHead``...),
    set ``num_features`` and ``num_classes``, and define ``forward_features``."""

    num_features: int
    num_classes: int
    head: Head
    layout: str = "torch"  # whose network this is, where references differ (see ``pick_layout``)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map -> logits, or the vector fed to the last linear layer when ``pre_logits``."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final linear layer (an Identity when ``num_classes == 0``)."""
        return self.head.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final linear layer with a freshly initialised one for ``num_classes`` outputs."""
        self.head.reset(num_classes)
        self.num_classes = num_classes

    def keras_layer_names(self) -> dict[str, str]:
        """Module path -> the name of the same layer in ``keras.applications`` (its weight files and its
        ``model.summary()``), for a family built with ``layout="keras"``; empty where Keras has no twin."""
        return {}


@runtime_checkable
class AuxiliaryHeads(Protocol):
    """A model with auxiliary classifiers trained beside its main head (GoogLeNet): ``aux_logits``
    says whether they are on, ``forward_train(x)`` returns ``(logits, [aux logits, ...])``."""

    aux_logits: bool

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]: ...


Layout = TypeVar("Layout")


def pick_layout(layouts: Mapping[str, Layout], layout: str, family: str) -> Layout:
    """The family's record of ``layout`` ("torch": ours and torchvision's; "keras": keras.applications')."""
    try:
        return layouts[layout]
    except KeyError:
        raise ModelError(f"{family}: unknown layout {layout!r}; choose one of {', '.join(layouts)}") from None


def conv_names(path: str, conv: str, norm: Optional[str] = None, act: Optional[str] = None,
               pad: Optional[str] = None) -> dict[str, str]:
    """Keras' names for the children of the ``ConvNormAct`` at ``path`` (those Keras has)."""
    names = {"pad": pad, "conv": conv, "norm": norm, "act": act}
    return {f"{path}.{child}": name for child, name in names.items() if name}
