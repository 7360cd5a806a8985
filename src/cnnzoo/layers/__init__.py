"""Building blocks, each a small ``nn.Module`` usable on its own."""
from .conv import Conv2d, ConvNormAct
from .dense import DenseBlock, DenseLayer, Transition
from .factories import ACT_NAMES, NORM_NAMES, get_act_layer, get_norm_layer
from .heads import ClassifierHead, MlpHead
from .helpers import init_weights_he, make_act, make_divisible
from .inception import InceptionBlock, InceptionNaive
from .inverted_residual import InvertedResidual
from .residual import BasicBlock, Bottleneck
from .separable import DepthwiseSeparableConv

__all__ = [
    "Conv2d", "ConvNormAct", "DepthwiseSeparableConv", "InceptionNaive", "InceptionBlock", "BasicBlock",
    "Bottleneck", "InvertedResidual", "DenseLayer", "DenseBlock", "Transition", "ClassifierHead",
    "MlpHead", "get_act_layer", "get_norm_layer", "make_act", "make_divisible", "init_weights_he",
    "ACT_NAMES", "NORM_NAMES",
]
