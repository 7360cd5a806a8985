"""Test-time augmentation: a model's prediction averaged over a few views of each image.

Probabilities are averaged, not logits: a view that is confidently wrong moves the average by at
most its share, whereas one large logit can outvote every other view. The result is returned as
the log of the averaged probabilities, which is a valid logits tensor (``softmax`` gives back the
averaged probabilities, ``argmax`` the prediction, ``F.cross_entropy`` the loss), so evaluate,
predict and compare use it wherever they use ``model(x)``.

Views: the image; with ``flips``, its mirror image; with ``crops=k``, ``k`` zoomed crops (centre,
then the four corners) of ``crop_fraction`` of the side, resized back to the input size (bilinear),
each also mirrored when ``flips``. Only for models whose classes do not depend on left and right
(the config's ``MIRROR_SENSITIVE_SOURCES``, digits, want ``flips=False``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnzoo.errors import UserError
from cnnzoo.training.config import MIRROR_SENSITIVE_SOURCES

MAX_CROPS = 5  # centre and four corners


def check_flips_allowed(*sources: str) -> None:
    """Refuse mirrored views for data whose classes change under a mirror image (a flipped 2 is no digit)."""
    sensitive = [s for s in sources if str(s) in MIRROR_SENSITIVE_SOURCES]
    if sensitive:
        raise UserError(f"--tta averages over mirror images, which change the classes of {sensitive[0]!r} "
                        "(a mirrored digit is not that digit); evaluate it without --tta")


def tta_views(x: torch.Tensor, *, flips: bool = True, crops: int = 0,
              crop_fraction: float = 0.875) -> list[torch.Tensor]:
    """The batches the model sees: ``x``, then its crops, each followed by its mirror when ``flips``."""
    if not 0 <= crops <= MAX_CROPS:
        raise UserError(f"--tta crops must be between 0 and {MAX_CROPS} (centre, then corners), got {crops}")
    h, w = x.shape[-2:]
    ch, cw = max(1, round(h * crop_fraction)), max(1, round(w * crop_fraction))
    corners = [((h - ch) // 2, (w - cw) // 2), (0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw)]
    views = [x]
    for top, left in corners[:crops]:
        crop = x[..., top:top + ch, left:left + cw]
        views.append(F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False))
    if flips:
        views = [v for view in views for v in (view, view.flip(-1))]
    return views


@torch.no_grad()
def predict_tta(model: nn.Module, x: torch.Tensor, flips: bool = True, crops: int = 0,
                crop_fraction: float = 0.875) -> torch.Tensor:
    """``log(mean over views of softmax(model(view)))``, ``[B, num_classes]``: logits for the views' average.

    The caller sets ``model.eval()`` (and autocast), as for a plain ``model(x)``. Each view is its own
    forward pass: memory stays that of one batch, time grows with the number of views.
    """
    views = tta_views(x, flips=flips, crops=crops, crop_fraction=crop_fraction)
    probs = torch.stack([F.softmax(model(view).float(), dim=1) for view in views]).mean(0)
    # tiny, not 0: a class every view rules out keeps a finite logit, so cross-entropy stays finite
    return torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny))
