"""Building blocks, each a small ``nn.Module`` usable on its own."""
from .conv import ConvNormAct
from .factories import ACT_NAMES, NORM_NAMES, get_act_layer, get_norm_layer

__all__ = ["ConvNormAct", "get_act_layer", "get_norm_layer", "ACT_NAMES", "NORM_NAMES"]
