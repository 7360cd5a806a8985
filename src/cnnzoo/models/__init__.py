"""Every architecture family; importing this package registers all of them."""
from . import densenet, googlenet, mobilenet_v1, mobilenet_v2, resnet, vgg  # noqa: F401  (registration on import)
