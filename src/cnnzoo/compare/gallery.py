"""Per-class numbers and the validation images a model gets wrong, from one evaluation.

The numbers come from :func:`cnnzoo.training.evaluate` on the run's ``best.pt`` (the function behind
``cnnzoo evaluate``), so the report and the command agree. The mistakes shown are the ones the model
was most confident about: those say most about what it has learnt wrong (a confusable pair of
classes, a mislabelled image, a shortcut).
"""
from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from cnnzoo.compare.record import Misclassified, PerClass

GALLERY_SIZE = 16        # mistakes kept per model
THUMBNAIL_MIN_SIDE = 64  # small images are enlarged (pixels kept sharp) so they can be seen
THUMBNAIL_MAX_SIDE = 96  # large ones shrunk: the report stays small


def per_class_from_evaluation(result, images: np.ndarray, limit: int = GALLERY_SIZE) -> PerClass:
    """:class:`PerClass` from an :class:`~cnnzoo.training.EvalResult` of the split whose uint8
    ``[N, 3, H, W]`` ``images`` were scored, with thumbnails of its ``limit`` most confident mistakes."""
    names = list(result.class_names)
    wrong = np.flatnonzero(result.predicted != result.labels)
    wrong = wrong[np.argsort(-result.confidence[wrong], kind="stable")][:limit]
    mistakes = [Misclassified(index=int(i), true_class=names[int(result.labels[i])],
                              predicted_class=names[int(result.predicted[i])],
                              confidence=float(result.confidence[i]), thumbnail_png=thumbnail_png(images[i]))
                for i in wrong]
    return PerClass(class_names=names, accuracy=[float(r["recall"]) for r in result.per_class],
                    support=[int(r["support"]) for r in result.per_class],
                    confusion_matrix=[list(map(int, row)) for row in result.confusion_matrix],
                    misclassified=mistakes)


def thumbnail_png(image: np.ndarray) -> str:
    """A uint8 ``[3, H, W]`` image as a base64 PNG between the two thumbnail sides."""
    picture = Image.fromarray(np.ascontiguousarray(np.asarray(image).transpose(1, 2, 0)))
    side = max(picture.size)
    if side < THUMBNAIL_MIN_SIDE:
        factor = -(-THUMBNAIL_MIN_SIDE // side)  # a whole factor: every pixel becomes a square
        picture = picture.resize((picture.width * factor, picture.height * factor), Image.Resampling.NEAREST)
    elif side > THUMBNAIL_MAX_SIDE:
        picture.thumbnail((THUMBNAIL_MAX_SIDE, THUMBNAIL_MAX_SIDE))
    buf = io.BytesIO()
    picture.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")
