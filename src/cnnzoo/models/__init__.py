"""Every architecture family; importing this package registers all of them (each file registers its
variants at its bottom). The classes are exported for users who want to build a custom configuration,
e.g. ``ResNet(block=BasicBlock, layers=(1, 1, 1, 1))``."""
from ._base import AuxiliaryHeads, Classifier
from .densenet import DenseNet
from .efficientnet import EfficientNet
from .googlenet import GoogLeNet
from .mobilenet_v1 import MobileNetV1
from .mobilenet_v2 import MobileNetV2
from .mobilenet_v3 import MobileNetV3
from .resnet import ResNet
from .shufflenet_v2 import ShuffleNetV2
from .squeezenet import SqueezeNet
from .vgg import VGG
from .wavenet import WaveNet, WaveNetConfig

__all__ = ["AuxiliaryHeads", "Classifier", "DenseNet", "EfficientNet", "GoogLeNet", "MobileNetV1", "MobileNetV2",
           "MobileNetV3", "ResNet", "ShuffleNetV2", "SqueezeNet", "VGG", "WaveNet", "WaveNetConfig"]
