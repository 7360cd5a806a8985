"""Mixup and CutMix on a batch: mixed images, soft targets, and the loss and accuracy that go with them.

This lives in ``training`` rather than beside the augmentations in ``data``: an augmentation step is
``step(x, gen) -> x`` and keeps the labels, while mixing changes the targets and therefore the loss,
which is the training task's business. The trainer calls :meth:`Mixing.__call__` between the loader
and the loss, with a generator from :func:`mixing_generator`, so a batch's mixing is a function of
``(seed, epoch)`` and the batch's position in the epoch, and resuming stays exact.

- mixup (Zhang et al. 2018): ``x = lam * x + (1 - lam) * x[perm]``, ``lam ~ Beta(alpha, alpha)``.
- CutMix (Yun et al. 2019): a box of area ``1 - lam`` pasted from ``x[perm]``; ``lam`` is then
  corrected to the box's clipped area (timm's ``correct_lam``), so the targets say what the pixels do.

One ``lam`` and one pairing per batch (timm's ``mode="batch"``), the partner drawn by a random
permutation rather than timm's reversed batch: the loader yields a batch in index order, and folders
store classes in runs, so the reversed batch would pair classes systematically.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cnnzoo.errors import UserError


def mixing_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator for one epoch's mixing, a stream apart from the loader's (same seed, same epoch)."""
    state = np.random.SeedSequence([int(seed), int(epoch), 0x6D6978]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


@dataclass(frozen=True)
class MixedBatch:
    """``x`` the (mixed) images; ``targets`` ``[B, num_classes]`` soft targets, each row summing to one;
    ``lam`` the share of each image's own label (1.0 when this batch was not mixed); ``kind`` is
    ``"mixup"``, ``"cutmix"`` or ``"none"``."""

    x: torch.Tensor
    targets: torch.Tensor
    lam: float
    kind: str


def soft_targets(y: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """One-hot targets with label smoothing as ``F.cross_entropy(label_smoothing=...)`` defines it:
    ``(1 - smoothing) * one_hot + smoothing / num_classes``."""
    one_hot = F.one_hot(y, num_classes).float()
    return one_hot * (1 - smoothing) + smoothing / num_classes


@dataclass(frozen=True)
class Mixing:
    """Mixup and/or CutMix with probability ``prob`` per batch.

    With both alphas above zero, each mixed batch is CutMix with probability ``switch_prob``, else
    mixup (timm's ``Mixup`` defaults: ``prob=1.0``, ``switch_prob=0.5``). ``label_smoothing``
    composes: each of the two labels is smoothed, then they are mixed, so targets still sum to one.
    """

    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    prob: float = 1.0
    switch_prob: float = 0.5
    label_smoothing: float = 0.0

    def __post_init__(self):
        for name in ("mixup_alpha", "cutmix_alpha"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be 0 (off) or positive, got {getattr(self, name)}")
        for name in ("prob", "switch_prob", "label_smoothing"):
            if not 0 <= getattr(self, name) <= 1:
                raise UserError(f"{name} must be between 0 and 1, got {getattr(self, name)}")

    @property
    def active(self) -> bool:
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, num_classes: int, gen: torch.Generator) -> MixedBatch:
        """Mix a batch ``x`` ``[B, C, H, W]`` with labels ``y`` ``[B]``. The same number of random
        draws every call, whatever is chosen, so one batch's choice never shifts the next's."""
        b, _, h, w = x.shape
        apply = torch.rand((), generator=gen).item() < self.prob
        use_cutmix = torch.rand((), generator=gen).item() < self.switch_prob
        perm = torch.randperm(b, generator=gen)
        box = torch.rand(2, generator=gen, dtype=torch.float64)
        if self.mixup_alpha <= 0 or (self.cutmix_alpha > 0 and use_cutmix):
            kind, alpha = "cutmix", self.cutmix_alpha
        else:
            kind, alpha = "mixup", self.mixup_alpha
        lam = _beta(alpha, gen)
        own = soft_targets(y, num_classes, self.label_smoothing)
        if not (apply and self.active):
            return MixedBatch(x, own, 1.0, "none")
        partner = perm.to(x.device)
        if kind == "mixup":
            x = x * lam + x.index_select(0, partner) * (1 - lam)
        else:
            top, bottom, left, right = cutmix_box(h, w, lam, box)
            x = x.clone()
            x[:, :, top:bottom, left:right] = x.index_select(0, partner)[:, :, top:bottom, left:right]
            lam = 1 - (bottom - top) * (right - left) / (h * w)
        return MixedBatch(x, lam * own + (1 - lam) * own.index_select(0, partner), float(lam), kind)


def _beta(alpha: float, gen: torch.Generator) -> float:
    """``Beta(alpha, alpha)`` from the generator (torch's Beta sampler takes none): numpy's, seeded
    by one draw from ``gen``, which is made whether or not ``alpha`` is above zero."""
    seed = int(torch.randint(0, 2**62, (), generator=gen))
    if alpha <= 0:
        return 1.0
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def cutmix_box(h: int, w: int, lam: float, centre: torch.Tensor) -> tuple[int, int, int, int]:
    """A box of ``1 - lam`` of the area (side ratio as the image's), centred at ``centre`` (two uniforms
    in [0, 1)), clipped to the image: ``(top, bottom, left, right)``, as in the CutMix paper's code."""
    cut = float(np.sqrt(1 - lam))
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(centre[0] * h), int(centre[1] * w)
    return (max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w))


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum(targets * log_softmax(logits))``: ``F.cross_entropy`` for soft
    targets. With one-hot or smoothed targets it equals ``F.cross_entropy(logits, y, label_smoothing=...)``."""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(1).mean()


def mixed_correct(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """How many predictions hit the dominant label: the class with the largest target share.

    This is what "train accuracy" means under mixing: for mixup with ``lam >= 0.5`` and CutMix whose
    pasted box is under half the image, the image's own label; otherwise the partner's. It is
    therefore lower than an unmixed accuracy and not comparable with validation accuracy (which
    is measured on unmixed images); what it tracks is whether training is making progress.
    """
    return (logits.argmax(1) == targets.argmax(1)).sum()
