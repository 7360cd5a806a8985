"""μ-law companding, the quantisation WaveNet's categorical output is over (van den Oord et al. 2016,
section 2.2, with the paper's mu = 255: 256 classes).

``f(x) = sign(x) * ln(1 + mu |x|) / ln(1 + mu)`` for ``x`` in [-1, 1] is the continuous μ-law curve
of ITU-T G.711 (the standard itself approximates it by 8 linear segments; the paper and every
WaveNet reimplementation use the formula). ``f`` is then quantised uniformly into ``mu + 1``
classes: fine steps near silence, coarse ones for loud samples, as hearing is.

Its own module, free of audio libraries, so that batching a signal does not need soundfile.
"""
from __future__ import annotations

import math
from typing import Union

import numpy as np
import torch

ArrayLike = Union[torch.Tensor, np.ndarray]


def mu_law_encode(x: ArrayLike, quantization: int = 256) -> torch.Tensor:
    """Samples in [-1, 1] (outside: clipped) -> int64 classes in ``[0, quantization)``; 0.0 -> ``quantization // 2``."""
    mu = quantization - 1
    x = torch.as_tensor(x).clamp(-1.0, 1.0)
    companded = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)
    # Round (f + 1) / 2 * mu to the nearest class: the class centres are where decode lands exactly.
    return ((companded + 1) / 2 * mu + 0.5).floor().long().clamp(0, mu)


def mu_law_decode(classes: ArrayLike, quantization: int = 256) -> torch.Tensor:
    """Classes -> float32 samples in [-1, 1], the inverse of :func:`mu_law_encode` at each class's centre."""
    mu = quantization - 1
    companded = torch.as_tensor(classes).to(torch.float32) * (2.0 / mu) - 1.0
    return torch.sign(companded) * torch.expm1(companded.abs() * math.log1p(mu)) / mu
