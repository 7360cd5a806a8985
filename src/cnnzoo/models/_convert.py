"""Key-rewrite rules for turning a reference (torchvision) state dict into ours.

Each family lists ``(pattern, replacement)`` regex pairs; the first that matches a key renames it.
Mapping keeps our module names readable instead of mimicking torchvision's.
"""
from __future__ import annotations

import re
from typing import Callable, Sequence, Union

Rule = tuple[str, Union[str, Callable[[re.Match], str]]]


def rename_keys(state_dict: dict, rules: Sequence[Rule]) -> dict:
    """Rename every key with the first matching rule; a key no rule matches is an error (a file of
    another architecture), reported with the key so the user sees what did not fit."""
    out = {}
    compiled = [(re.compile(p), r) for p, r in rules]
    for key, value in state_dict.items():
        for pattern, replacement in compiled:
            match = pattern.fullmatch(key)
            if match:
                out[match.expand(replacement) if isinstance(replacement, str) else replacement(match)] = value
                break
        else:
            raise KeyError(key)
    return out


def shift(group: str, by: int = -1) -> str:
    """'1' -> '0': torchvision counts some stages from 1, we count from 0."""
    return str(int(group) + by)
