"""Every architecture family; importing this package registers all of them (each file registers its
variants at its bottom). The classes are exported for users who want to build a custom configuration,
e.g. ``ResNet(block=BasicBlock, layers=(1, 1, 1, 1))``."""
from .densenet import DenseNet
from .googlenet import GoogLeNet
from .mobilenet_v1 import MobileNetV1
from .mobilenet_v2 import MobileNetV2
from .resnet import ResNet
from .vgg import VGG
from .wavenet import WaveNet, WaveNetConfig

__all__ = ["DenseNet", "GoogLeNet", "MobileNetV1", "MobileNetV2", "ResNet", "VGG", "WaveNet", "WaveNetConfig"]
