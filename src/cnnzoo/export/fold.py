"""Batch-norm folding: a convolution followed by an inference-mode batch norm is one convolution.

In eval mode batch norm is a fixed per-channel ``y = (x - mean) / sqrt(var + eps) * gamma + beta``,
so it can be multiplied into the weights and bias of the convolution before it (PyTorch's own
``torch.nn.utils.fusion.fuse_conv_bn_eval`` does the arithmetic). One pass over memory fewer per
layer for eager inference, and a smaller, simpler graph to export.

Which batch norms follow which convolution is read from the model's data flow (a ``torch.fx``
trace), not from the order modules were declared in: a DenseNet layer applies ``norm1`` *before*
``conv1``, and only a norm whose input is a convolution's output, used by nothing else, can be
folded. The folded model keeps its class and head API; folded norms become ``nn.Identity``.
"""
from __future__ import annotations

import copy
from collections import Counter

import torch.fx
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


class _ConvAndNormAsLeaves(torch.fx.Tracer):
    # Stop at convolutions and norms: they are what gets matched, and cnnzoo's Conv2d has
    # training-only branches that symbolic tracing cannot follow.
    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, (nn.Conv2d, nn.BatchNorm2d)) or super().is_leaf_module(module, qualified_name)


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(conv_name, norm_name)`` for every ``BatchNorm2d`` whose only input is a ``Conv2d``'s output
    that nothing else reads, each module called once (a shared module cannot be rewritten for one use)."""
    graph = _ConvAndNormAsLeaves().trace(model)
    modules = dict(model.named_modules())
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    pairs: list[tuple[str, str]] = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d) or len(node.args) != 1:
            continue
        source = node.args[0]
        norm_name = str(node.target)  # a call_module node's target is the module's name
        if (isinstance(source, torch.fx.Node) and source.op == "call_module"
                and isinstance(modules[str(source.target)], nn.Conv2d) and len(source.users) == 1
                and calls[source.target] == 1 and calls[node.target] == 1
                and modules[norm_name].track_running_stats):
            pairs.append((str(source.target), norm_name))
    return pairs


def fold_bn(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """``model`` in eval mode with every foldable batch norm merged into the convolution before it.

    Outputs equal the unfolded model's in eval mode (up to float rounding). A copy is returned
    unless ``inplace``; the folded model is for inference (its norms no longer exist to train).
    """
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    for conv_name, norm_name in conv_bn_pairs(model):
        conv, norm = model.get_submodule(conv_name), model.get_submodule(norm_name)
        assert isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)  # what conv_bn_pairs found
        model.set_submodule(conv_name, fuse_conv_bn_eval(conv, norm))
        model.set_submodule(norm_name, nn.Identity())
    return model


def count_batch_norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
