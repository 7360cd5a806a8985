"""Proof that an exported model computes what the eager one does, before anyone is told it succeeded.

Both are run on the same inputs. An fp32 export must match to float rounding. How large rounding
is depends on the network: on random-weight models we measure 1e-7 to 1e-6 of the largest logit,
but a deep ResNet whose activations have large means relative to their spread (cancelling sums)
reaches 1e-3: eager PyTorch in float32 is that far from itself in float64. So the bound is the
larger of ``RTOL`` x the largest logit and ``NOISE_FACTOR`` x that float32-versus-float64 difference
of the eager model (measured on the same inputs, independently of the export and of batch-norm
folding). A real export bug (a wrong bias, a dropped layer) is off by orders of magnitude more. An
int8 export cannot match to rounding; it must pick the same top-1 class as the eager model on at
least ``MIN_AGREEMENT`` of real images.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Optional

import torch
from torch import nn

from cnnzoo.export.calibration import CalibrationData

RTOL = 1e-4          # fp32: max |exported - eager| <= RTOL x max |eager| ...
NOISE_FACTOR = 10    # ... or NOISE_FACTOR x max |eager float32 - eager float64|, whichever is larger
MIN_AGREEMENT = 0.9  # int8: share of real images where int8 and eager fp32 pick the same class


class ExportError(RuntimeError):
    """The exporter failed, or the exported model does not compute what the eager one does."""


class VerificationError(ExportError):
    pass


@dataclass
class Outputs:
    """The eager and exported models run side by side on the same batches."""
    reference_top1: torch.Tensor
    exported_top1: torch.Tensor
    max_abs_diff: float
    max_abs_reference: float
    finite: bool        # every exported output is a number, and its shape is the eager one's

    @property
    def num_inputs(self) -> int:
        return len(self.reference_top1)

    @property
    def top1_agreement(self) -> float:
        return float((self.reference_top1 == self.exported_top1).float().mean())


@torch.inference_mode()
def run_both(reference: nn.Module, exported: Callable, batches: Iterable[torch.Tensor]) -> Outputs:
    ref_top1, exp_top1 = [], []
    max_diff = max_ref = 0.0
    finite = True
    for x in batches:
        want, got = reference(x).float(), exported(x).float()
        if got.shape != want.shape or not torch.isfinite(got).all():
            finite = False
            continue
        max_diff = max(max_diff, float((got - want).abs().max()))
        max_ref = max(max_ref, float(want.abs().max()))
        ref_top1.append(want.argmax(1))
        exp_top1.append(got.argmax(1))
    empty = torch.zeros(0, dtype=torch.long)
    return Outputs(torch.cat(ref_top1) if ref_top1 else empty, torch.cat(exp_top1) if exp_top1 else empty,
                   max_diff, max_ref, finite and bool(ref_top1))


@dataclass
class Verification:
    exported: str          # what was run against eager PyTorch, e.g. "onnxruntime int8"
    inputs: str            # what it was run on, e.g. "4 random inputs at batch 1 and 3"
    num_inputs: int
    max_abs_diff: float
    max_abs_reference: float
    top1_agreement: float
    criterion: str
    passed: bool

    def summary(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (f"{self.exported} against eager PyTorch on {self.inputs}: max |difference| "
                f"{self.max_abs_diff:.2g} (largest |logit| {self.max_abs_reference:.3g}), same top-1 class "
                f"on {self.top1_agreement:.1%}; required: {self.criterion} - {verdict}")

    def raise_if_failed(self) -> "Verification":
        if not self.passed:
            raise VerificationError(f"verification failed: {self.summary()}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


@torch.inference_mode()
def float32_rounding(model: nn.Module, batches: Iterable[torch.Tensor]) -> float:
    """How far ``model`` in float32 is from itself in float64 on ``batches``: the rounding error an
    exact float32 re-implementation of it (an export) can be expected to show."""
    exact = copy.deepcopy(model).double()
    return max(float((model(x).double() - exact(x.double())).abs().max()) for x in batches)


def verify_close(outputs: Outputs, *, exported: str, inputs: str, rtol: float = RTOL,
                 rounding: float = 0.0) -> Verification:
    """fp32: passes when the largest difference is at most ``rtol`` x the largest eager logit, or
    ``NOISE_FACTOR`` x ``rounding`` (from :func:`float32_rounding`) when that is larger."""
    bound = max(rtol * outputs.max_abs_reference, NOISE_FACTOR * rounding)
    passed = outputs.finite and outputs.max_abs_diff <= bound
    criterion = f"max |difference| <= {rtol:g} x largest |logit|"
    if NOISE_FACTOR * rounding > rtol * outputs.max_abs_reference:
        criterion = (f"max |difference| <= {NOISE_FACTOR} x {rounding:.2g}, the float32 rounding of eager "
                     "PyTorch on these inputs (against float64)")
    return Verification(exported, inputs, outputs.num_inputs, outputs.max_abs_diff, outputs.max_abs_reference,
                        outputs.top1_agreement, criterion, passed)


def verify_agreement(outputs: Outputs, *, exported: str, inputs: str,
                     min_agreement: Optional[float] = MIN_AGREEMENT) -> Verification:
    """int8: passes when the top-1 class agrees on at least ``min_agreement`` of the inputs. ``None``
    (random weights, random calibration: agreement means nothing) asks only for finite outputs."""
    agreement = outputs.top1_agreement if outputs.num_inputs else 0.0
    if min_agreement is None:
        criterion, passed = "finite outputs of the right shape (random weights: agreement not required)", outputs.finite
    else:
        criterion = f"same top-1 class on at least {min_agreement:.0%} of the images"
        passed = outputs.finite and agreement >= min_agreement
    return Verification(exported, inputs, outputs.num_inputs, outputs.max_abs_diff, outputs.max_abs_reference,
                        agreement, criterion, passed)


def accuracy(top1: torch.Tensor, labels: torch.Tensor) -> float:
    return float((top1 == labels).float().mean()) if len(labels) else math.nan


@dataclass(frozen=True)
class Int8Accuracy:
    """fp32 and int8 accuracy on the same labelled images, with the predictions that changed between
    them: ``became_right`` (int8 right where fp32 was wrong) and ``became_wrong`` (the reverse).
    Quantisation noise flips low-margin images both ways; on 60 images each flip is 1.7 points, so
    the two counts say whether a drop is a trend or a coin toss. ``data`` names the images."""

    fp32: float
    int8: float
    images: int
    became_wrong: int
    became_right: int
    data: str = ""

    @classmethod
    def measure(cls, outputs: Outputs, labels: torch.Tensor, data: str = "") -> "Int8Accuracy":
        fp32_right, int8_right = outputs.reference_top1 == labels, outputs.exported_top1 == labels
        return cls(fp32=accuracy(outputs.reference_top1, labels), int8=accuracy(outputs.exported_top1, labels),
                   images=outputs.num_inputs, became_wrong=int((fp32_right & ~int8_right).sum()),
                   became_right=int((int8_right & ~fp32_right).sum()), data=data)

    @property
    def points(self) -> float:
        """int8's accuracy minus fp32's, in percentage points (never -0.0)."""
        return 100 * (self.int8 - self.fp32) + 0.0

    def change(self) -> str:
        """The change in points as every report prints it: ``"-1.7"``."""
        return f"{self.points:+.1f}"

    def flips(self) -> str:
        """Which way the changed predictions went: a drop of one image in a few flips each way is
        noise, a drop made of flips one way only is a cost."""
        if self.became_right + self.became_wrong == 0:
            return "no image changed between right and wrong"
        return (f"{self.became_wrong} image{'s' if self.became_wrong != 1 else ''} became wrong, "
                f"{self.became_right} became right")

    def summary(self) -> str:
        """``fp32 0.9000, int8 0.8833 (-1.7 points) on 60 validation images of X: 1 image became wrong, 0 ...``"""
        return (f"fp32 {self.fp32:.4f}, int8 {self.int8:.4f} ({self.change()} points) on {self.images} "
                f"{self.data}: {self.flips()}")

    def to_dict(self) -> dict:
        """The JSON ``cnnzoo export --json`` prints (its keys predate this record)."""
        return {**({"data": self.data} if self.data else {}), "images": self.images, "fp32": self.fp32,
                "int8": self.int8, "now_right": self.became_right, "now_wrong": self.became_wrong}

    @classmethod
    def from_dict(cls, values: dict) -> "Int8Accuracy":
        return cls(fp32=values["fp32"], int8=values["int8"], images=values["images"],
                   became_wrong=values["now_wrong"], became_right=values["now_right"], data=values.get("data", ""))


def random_batches(input_size, count: int, batch_sizes=(1, 3), seed: int = 0) -> list[torch.Tensor]:
    """``count`` normal random inputs (what normalised images look like to a network), in batches
    cycling through ``batch_sizes``."""
    gen = torch.Generator().manual_seed(seed)
    batches, done, i = [], 0, 0
    while done < count:
        b = min(batch_sizes[i % len(batch_sizes)], count - done)
        batches.append(torch.randn(b, *input_size, generator=gen))
        done, i = done + b, i + 1
    return batches


def verify_exported(reference: nn.Module, exported: nn.Module, input_size, data: Optional[CalibrationData], *,
                    label: str, quantized: bool = False,
                    min_agreement: float = MIN_AGREEMENT,
                    fixed_batch: Optional[int] = None) -> tuple[Verification, Outputs]:
    """Run ``exported`` against the eager ``reference`` on the real evaluation images when there are
    some, else on 6 random inputs (at batch 1 and 3, or at ``fixed_batch`` for a model exported with
    one). fp32 must match to float32 rounding, int8 pick the same class (see
    :mod:`cnnzoo.export.verify`)."""
    if data is not None:
        outputs = run_both(reference, exported, data.evaluation_batches(fixed_batch or 64))
        inputs = f"{outputs.num_inputs} {data.evaluation_name} of {data.source}"
    else:
        sizes = (fixed_batch,) if fixed_batch else (1, 3)
        batches = random_batches(input_size, 6, sizes)
        outputs = run_both(reference, exported, batches)
        inputs = f"6 random inputs at batch {' and '.join(map(str, sizes))}"
    if quantized:
        verification = verify_agreement(outputs, exported=label, inputs=inputs,
                                        min_agreement=min_agreement if data is not None else None)
    else:
        rounding = float32_rounding(reference, batches) if data is None else 0.0
        verification = verify_close(outputs, exported=label, inputs=inputs, rounding=rounding)
    return verification, outputs
