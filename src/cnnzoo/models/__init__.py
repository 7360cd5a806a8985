"""Every architecture family; importing this package registers all of them."""
from . import resnet, mobilenet_v2  # noqa: F401  (registration happens on import)
