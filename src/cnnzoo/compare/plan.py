"""What ``cnnzoo compare`` trains when it is given no models, and for how many epochs; and the
image size each model trains at.

One member of each family, at widths that fit the work per epoch (training images x pixels per
image): on the built-in digits (1,437 train images at 32 px) the whole comparison must finish in a
few minutes on a laptop's CPU, while on a real data set the full-width networks are worth their cost.
The choice is a table of data, printed at the start of the run and written into the report.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

from cnnzoo.pretrained import weights_preprocessing
from cnnzoo.text import format_count, table


@dataclass(frozen=True)
class DefaultPlan:
    name: str
    max_pixels_per_epoch: float  # train images x height x width up to which this plan is chosen
    models: tuple[str, ...]      # one per family
    images_seen: int             # epochs = images_seen / train images, clamped to [min_epochs, max_epochs]
    min_epochs: int
    max_epochs: int
    epochs: int = 0              # filled in by choose_plan for the data at hand

    def describe(self) -> str:
        return (f"No models given: the '{self.name}' set for data of up to "
                f"{_pixels(self.max_pixels_per_epoch)} pixels per epoch - {', '.join(self.models)} - "
                f"{self.epochs} epochs each (about {self.images_seen:,} training images seen, "
                f"between {self.min_epochs} and {self.max_epochs} epochs).")


def _pixels(x: float) -> str:
    return "any number of" if math.isinf(x) else format_count(x, digits=0)


# Smallest first; the first plan whose limit the data fits under is used.
PLANS = (
    DefaultPlan("small", 4e6,
                ("resnet18:width_mult=0.25", "mobilenet_v2:width_mult=0.5", "mobilenet_v1:width_mult=0.5",
                 "vgg11_bn:width_mult=0.25", "googlenet:width_mult=0.25", "densenet121:width_mult=0.25"),
                images_seen=8_000, min_epochs=5, max_epochs=40),
    DefaultPlan("medium", 64e6,
                ("resnet18:width_mult=0.5", "mobilenet_v2", "mobilenet_v1:width_mult=0.5",
                 "vgg11_bn:width_mult=0.5", "googlenet:width_mult=0.5", "densenet121:width_mult=0.5"),
                images_seen=40_000, min_epochs=4, max_epochs=30),
    DefaultPlan("large", math.inf,
                ("resnet18", "mobilenet_v2", "mobilenet_v1", "vgg11_bn", "googlenet", "densenet121"),
                images_seen=200_000, min_epochs=3, max_epochs=20),
)


def choose_plan(train_images: int, image_size: int) -> DefaultPlan:
    """The first plan in :data:`PLANS` whose pixel budget the data fits under, with its epochs set."""
    pixels = train_images * image_size * image_size
    plan = next(p for p in PLANS if pixels <= p.max_pixels_per_epoch)
    epochs = math.ceil(plan.images_seen / max(train_images, 1))
    epochs = min(plan.max_epochs, max(plan.min_epochs, epochs))
    return replace(plan, epochs=epochs)


def plans_table() -> str:
    """:data:`PLANS` as a text table (printed when no models are given, and by ``--show-plans``)."""
    rows = [(p.name, _pixels(p.max_pixels_per_epoch), f"{p.images_seen:,}",
             f"{p.min_epochs}-{p.max_epochs}", ", ".join(p.models)) for p in PLANS]
    return table(rows, ("plan", "pixels/epoch up to", "images seen", "epochs", "models"), "lrrl")


# Where a model's image size came from (ImageSize.source), strongest first.
FROM_SPEC, FROM_OPTION, FROM_WEIGHTS, FROM_DATA = "spec", "--image-size", "weights", "data"


@dataclass(frozen=True)
class ImageSize:
    """The side one model trains at, and why; ``size`` None: the data's own."""

    size: Optional[int]
    source: str
    weights: Optional[str] = None  # what the weights were, when they decided it

    def sentence(self, name: str) -> str:
        """A line for the report, said only when the weights decided: the others are what was asked."""
        if self.source != FROM_WEIGHTS:
            return ""
        return (f"{name} trains at {self.size} px, the input size its {self.weights} weights were trained at "
                f"(set image_size=N in its spec, or --image-size, for another).")


def model_image_size(model: str, spec_size: Optional[int], option_size: Optional[int],
                     weights: Optional[str]) -> ImageSize:
    """The side ``model`` trains at: its spec's ``image_size``, else ``--image-size``, else the size its
    pretrained ``weights`` expect (their preprocessing record says it: an ImageNet start fed images at
    a quarter of its resolution wastes what it learned), else the data's own (None)."""
    if spec_size is not None:
        return ImageSize(spec_size, FROM_SPEC)
    if option_size is not None:
        return ImageSize(option_size, FROM_OPTION)
    prep = weights_preprocessing(weights, model) if weights else None
    if prep is not None:
        return ImageSize(prep.image_size, FROM_WEIGHTS, weights)
    return ImageSize(None, FROM_DATA)
