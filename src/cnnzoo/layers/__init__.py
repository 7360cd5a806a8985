"""Building blocks, each a small ``nn.Module`` usable on its own."""
from .conv import Conv2d, ConvNormAct
from .dense import DenseBlock, DenseLayer, Transition
from .drop_path import DropPath
from .factories import ACT_NAMES, NORM_NAMES, get_act_layer, get_norm_layer
from .fire import Fire
from .heads import ClassifierHead, Head, MlpHead
from .helpers import init_weights_he, make_act, make_divisible
from .inception import InceptionBlock, InceptionNaive
from .inverted_residual import InvertedResidual
from .lightweight_heads import ConvClassifierHead, HiddenLayerHead
from .padding import TFSamePad2d, tf_same_pads
from .residual import BasicBlock, Bottleneck
from .separable import DepthwiseSeparableConv
from .shuffle import ShuffleUnit, channel_shuffle
from .squeeze_excite import SqueezeExcite

__all__ = [
    "Conv2d", "ConvNormAct", "DepthwiseSeparableConv", "InceptionNaive", "InceptionBlock", "BasicBlock",
    "Bottleneck", "InvertedResidual", "DenseLayer", "DenseBlock", "Transition", "Head", "ClassifierHead",
    "MlpHead", "get_act_layer", "get_norm_layer", "make_act", "make_divisible", "init_weights_he",
    "ACT_NAMES", "NORM_NAMES", "SqueezeExcite", "DropPath", "Fire", "ShuffleUnit", "channel_shuffle",
    "HiddenLayerHead", "ConvClassifierHead", "TFSamePad2d", "tf_same_pads",
]
