"""What every classifier here shares: the head API of timm, so fine-tuning, feature extraction and
comparison need nothing model-specific."""
from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """Subclasses build ``self.head`` (a ``ClassifierHead`` or ``MlpHead``), set ``num_features`` and
    ``num_classes``, and define ``forward_features``."""

    num_features: int
    num_classes: int
    head: nn.Module

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
