"""Small helpers shared by the blocks and the model families."""
from __future__ import annotations

from typing import Optional

from torch import nn

from cnnzoo.layers.factories import get_act_layer


def make_divisible(value: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    """Round a channel count to the nearest multiple of ``divisor``, never more than 10% below ``value``.

    The standard rounding of width-multiplied networks (torchvision's and Keras' ``_make_divisible``,
    from the TensorFlow MobileNet code): hardware likes channel counts divisible by 8.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:  # rounding down by more than 10% would cost too much capacity
        rounded += divisor
    return rounded


def init_weights_he(model: nn.Module) -> None:
    """He (Kaiming) initialisation as torchvision's ResNet/VGG/MobileNetV2 do it.

    Convolutions: normal with std sqrt(2 / fan_out) (He et al. 2015), biases zero; norm layers
    scale 1, shift 0; linear layers normal(0, 0.01), bias zero.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)


def make_act(act) -> nn.Module:
    """An activation module by name (see ``get_act_layer``); ``'none'`` gives an Identity."""
    act_layer = get_act_layer(act)
    return nn.Identity() if act_layer is None else act_layer()
