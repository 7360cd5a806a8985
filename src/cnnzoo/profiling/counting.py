"""Counting multiply-adds (MACs) op by op, and tracing which layer produced which tensor.

How: one forward pass (and optionally one backward pass) runs under a ``TorchDispatchMode``, which
sees every ATen operator that actually executes -- including functional calls in ``forward``
(``torch.cat``, ``out += identity``, ``F.linear``) that module hooks alone would miss. Module hooks
keep a stack of the module calls in progress, so each operator is charged to the layer running it.

Conventions (the ones torchvision's "GFLOPS" column and fvcore use, so the numbers are comparable):
  * Only convolutions and matrix products are counted: conv, linear (addmm/mm), bmm/baddbmm.
  * conv MACs = output elements x (C_in / groups) x K_h x K_w -- exact for grouped and depthwise.
  * Normalisation, activations, pooling, additions and softmax count 0 MACs; they are *listed*
    in ``uncounted_ops`` (with call counts) rather than silently dropped.
  * Backward: grad-input and grad-weight of a conv or linear each cost exactly the forward MACs
    (every forward product x*w reappears once as g*w and once as g*x), so a layer whose input
    needs a gradient costs 2x its forward MACs. PyTorch's ``FlopCounterMode`` instead charges a
    depthwise convolution's backward (groups + 1) times its forward (65x for 64 channels).
MACs are multiply-accumulates; FLOPs = 2 x MACs.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

aten = torch.ops.aten


# ----------------------------------------------------------------------------- MAC rules per op

def _conv_forward_macs(x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor, transposed: bool) -> int:
    # weight is [C_out, C_in/groups, *K] (or [C_in, C_out/groups, *K] when transposed): each output
    # element is a dot product over weight.shape[1:]; a transposed conv scatters each *input*
    # element over weight.shape[1:] instead.
    per_element = math.prod(weight.shape[1:])
    return (x.numel() if transposed else out.numel()) * per_element


def _convolution(args, out) -> int:
    # aten.convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    return _conv_forward_macs(args[0], args[1], out, bool(args[6]))


def _convolution_backward(args, out) -> int:
    # aten.convolution_backward(grad_out, input, weight, bias_sizes, stride, padding, dilation,
    #                           transposed, output_padding, groups, output_mask)
    grad_out, x, weight, transposed, mask = args[0], args[1], args[2], bool(args[7]), args[10]
    forward = _conv_forward_macs(x, weight, grad_out, transposed)
    return forward * (int(bool(mask[0])) + int(bool(mask[1])))  # grad_input, grad_weight; bias is a sum


def _mm(a: torch.Tensor, b: torch.Tensor) -> int:
    return a.shape[0] * a.shape[1] * b.shape[1]


def _bmm(a: torch.Tensor, b: torch.Tensor) -> int:
    return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]


MAC_RULES: dict[Any, Callable[[tuple, Any], int]] = {
    aten.convolution: _convolution,
    aten._convolution: _convolution,
    aten.convolution_backward: _convolution_backward,
    aten.mm: lambda args, out: _mm(args[0], args[1]),
    aten.addmm: lambda args, out: _mm(args[1], args[2]),
    aten.bmm: lambda args, out: _bmm(args[0], args[1]),
    aten.baddbmm: lambda args, out: _bmm(args[1], args[2]),
}

# Ops that only move, reshape or allocate data: no arithmetic, so not worth listing as "uncounted".
DATA_MOVEMENT_OPS = frozenset("""
    view _unsafe_view reshape permute transpose t expand squeeze unsqueeze flatten cat stack clone
    copy_ _to_copy detach alias as_strided contiguous select slice split split_with_sizes unbind
    chunk narrow empty empty_like empty_strided new_empty new_empty_strided zeros zeros_like
    new_zeros ones ones_like new_ones fill_ zero_ lift_fresh lift_fresh_copy _reshape_alias
    unsafe_split unsafe_split_with_sizes index_select constant_pad_nd pad clamp_min_ _local_scalar_dense
""".split())

# Ops that merge several activations; outside a leaf layer they get their own row ("Add", ...).
MERGE_OPS = {"add": "Add", "add_": "Add", "sub": "Subtract", "sub_": "Subtract", "mul": "Multiply",
             "mul_": "Multiply", "cat": "Concatenate", "stack": "Stack"}


def op_macs(func, args, out) -> int:
    """MACs of one ATen call under the conventions above (0 for ops that are not counted)."""
    rule = MAC_RULES.get(func.overloadpacket)
    return int(rule(args, out)) if rule else 0


def _op_name(func) -> str:
    return func.overloadpacket.__name__


def _tensors(tree) -> list[torch.Tensor]:
    return [t for t in tree_leaves(tree) if isinstance(t, torch.Tensor)]


# ----------------------------------------------------------------------------- the trace

@dataclass(eq=False)
class Record:
    """One module call or one functional op that gets a row. ``macs`` are its own (not children's)."""
    name: str
    kind: str                      # module class name, or "Add"/"Concatenate"/... for ops
    depth: int
    parent: Optional["Record"] = None
    module: Optional[nn.Module] = None
    is_leaf: bool = True           # a leaf module or an op: nothing nested inside
    macs: int = 0
    output_shape: Any = None
    output_bytes: int = 0          # bytes of newly allocated outputs (in-place results and views: 0)
    inputs: list = field(default_factory=list)  # Records that produced the inputs
    children: list = field(default_factory=list)

    def subtree_macs(self) -> int:
        return self.macs + sum(c.subtree_macs() for c in self.children)

    def walk(self):
        """This record's descendants in execution order (pre-order)."""
        for child in self.children:
            yield child
            yield from child.walk()


def _shape_of(output) -> Any:
    tensors = _tensors(output)
    if isinstance(output, torch.Tensor):
        return list(output.shape)
    return [list(t.shape) for t in tensors]


def _aliases(out: torch.Tensor, inputs: list[torch.Tensor]) -> bool:
    # Shares memory with an input (an in-place result or a view)? Works on the meta device too.
    # _is_alias_of is private and so not in torch's stubs; the public storage pointers are all 0 on meta
    return any(torch._C._is_alias_of(out, t) for t in inputs)  # type: ignore[attr-defined]


class Tracer(TorchDispatchMode):
    """Runs a model once and builds the tree of :class:`Record` (module calls and merge ops)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.root = Record(name="", kind=type(model).__name__, depth=0, module=model, is_leaf=False)
        self.input_record = Record(name="input", kind="Input", depth=1)
        self.stack = [self.root]
        self.producer = WeakIdKeyDictionary()   # tensor -> Record that produced it
        self.phase = "forward"
        self.forward_macs = 0
        self.backward_macs = 0
        self.uncounted: dict[str, dict[str, int]] = {"forward": {}, "backward": {}}  # phase -> op -> calls
        self._handles = []
        self._op_counts: dict[tuple, int] = {}
        names = {m: n for n, m in model.named_modules() if m is not model}
        if not names:  # a bare layer (nn.Conv2d(...)): give it a row of its own
            names = {model: type(model).__name__.lower()}
        for module, name in names.items():
            self._handles.append(module.register_forward_pre_hook(self._enter(name), with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._leave, always_call=True))

    # -- module hooks
    def _enter(self, name: str):
        def hook(module, args, kwargs):
            parent = self.stack[-1]
            rec = Record(name=name, kind=type(module).__name__, depth=parent.depth + 1, parent=parent,
                         module=module, is_leaf=not any(True for _ in module.children()))
            rec.inputs = [self.producer.get(t) for t in _tensors((args, kwargs)) if t in self.producer]
            parent.children.append(rec)
            self.stack.append(rec)
        return hook

    def _leave(self, module, args, output):
        rec = self.stack.pop()
        rec.output_shape = _shape_of(output)
        if rec.is_leaf:
            # Identity, Dropout in eval, etc. return their input untouched: still "produced" here.
            for t in _tensors(output):
                self.producer[t] = rec

    def remove_hooks(self) -> None:
        for h in self._handles:
            h.remove()

    # -- every ATen op
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        macs = op_macs(func, args, out)
        name = _op_name(func)
        if macs == 0 and func.overloadpacket not in MAC_RULES and name not in DATA_MOVEMENT_OPS:
            counts = self.uncounted[self.phase]
            counts[name] = counts.get(name, 0) + 1
        if self.phase == "backward":
            self.backward_macs += macs
            return out
        self.forward_macs += macs
        self._place(func, name, args, kwargs, out, macs)
        return out

    def _place(self, func, name, args, kwargs, out, macs) -> None:
        current = self.stack[-1]
        inputs = _tensors((args, kwargs))
        outputs = _tensors(out)
        if current.is_leaf and current is not self.root:
            current.macs += macs
            current.output_bytes += sum(t.numel() * t.element_size() for t in outputs
                                        if not _aliases(t, inputs))
            for t in outputs:
                self.producer[t] = current
            return
        producers = [self.producer[t] for t in inputs if t in self.producer]
        is_merge = name in MERGE_OPS and len(producers) >= 2
        if macs == 0 and not is_merge:
            # A reshape or a functional activation between layers: the output "comes from" whoever
            # produced the input, which keeps the "connected to" column pointing at real layers.
            if producers:
                for t in outputs:
                    self.producer.setdefault(t, producers[0])
            return
        key = (id(current), name)
        index = self._op_counts.get(key, 0)
        self._op_counts[key] = index + 1
        op_name = name.rstrip("_") + (f"_{index}" if index else "")
        rec = Record(name=f"{current.name}.{op_name}" if current.name else op_name,
                     kind=MERGE_OPS.get(name, f"{name} (functional)"), depth=current.depth + 1,
                     parent=current, macs=macs, output_shape=_shape_of(out), inputs=producers,
                     output_bytes=sum(t.numel() * t.element_size() for t in outputs if not _aliases(t, inputs)))
        current.children.append(rec)
        for t in outputs:
            self.producer[t] = rec


# ----------------------------------------------------------------------------- running a count

@dataclass
class MacCount:
    """Result of :func:`count_macs`. ``backward`` is None unless a backward pass was counted."""
    forward: int
    backward: Optional[int] = None
    uncounted_forward: dict = field(default_factory=dict)
    uncounted_backward: dict = field(default_factory=dict)
    trace: Optional[Tracer] = field(default=None, repr=False)

    @property
    def training_step(self) -> Optional[int]:
        """Forward + backward MACs of one training step (None when backward was not counted)."""
        return None if self.backward is None else self.forward + self.backward


def example_input(model: nn.Module, input_size, batch_size: int = 1, device=None,
                  make: Callable[..., torch.Tensor] = torch.zeros) -> torch.Tensor:
    """What ``model`` takes at ``input_size``: a sequence model's own ``example_input(length, batch)``
    (WaveNet: μ-law classes ``[N, T]``, or floats ``[N, C, T]``; ``T`` is ``input_size``'s last
    number), else ``make(batch_size, *input_size)`` (zeros; latency passes ``torch.randn``)."""
    sequence_example = getattr(model, "example_input", None)
    if callable(sequence_example):
        return sequence_example(int(input_size[-1]), batch_size).to(device)
    return make(batch_size, *input_size, device=device)


def count_macs(model: nn.Module, inputs, *, backward: bool = False) -> MacCount:
    """Count multiply-adds of ``model(inputs)`` (``inputs``: a tensor or a tuple of tensors).

    The model runs in eval mode (so batch-norm statistics are not updated) and is put back in the
    mode it was in. With ``backward=True`` the gradients of every trainable parameter -- and of
    ``inputs`` if they require grad -- are computed with ``torch.autograd.grad`` (no ``.grad`` is
    written) and the backward MACs are counted too.
    """
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    was_training = model.training
    tracer = Tracer(model)
    tracer.producer.update({t: tracer.input_record for t in inputs})
    model.eval()
    try:
        with torch.set_grad_enabled(backward), tracer:
            out = model(*inputs)
            if backward:
                tracer.phase = "backward"
                wrt = [p for p in model.parameters() if p.requires_grad]
                wrt += [t for t in inputs if t.requires_grad]
                outs = [t for t in _tensors(out) if t.requires_grad]
                if wrt and outs:
                    # Any scalar function of the outputs gives the same backward cost; sum is simplest.
                    total = sum((t.sum() for t in outs[1:]), outs[0].sum())
                    torch.autograd.grad(total, wrt, allow_unused=True)
    finally:
        tracer.remove_hooks()
        model.train(was_training)
    return MacCount(forward=tracer.forward_macs,
                    backward=tracer.backward_macs if backward else None,
                    uncounted_forward=dict(tracer.uncounted["forward"]),
                    uncounted_backward=dict(tracer.uncounted["backward"]), trace=tracer)


def peak_live_tensor_bytes(model: nn.Module, inputs) -> int:
    """Peak bytes of tensors the forward pass allocates and holds at once (activations and
    workspace; not parameters nor the input). Device-independent, so it works on CPU where
    PyTorch keeps no allocator statistics."""
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    mode = _LiveBytes()
    with torch.inference_mode(), mode:
        out = model(*inputs)
    del out
    return mode.peak


class _LiveBytes(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.current = self.peak = 0
        self._live = set()

    def _free(self, key, nbytes):
        self.current -= nbytes
        self._live.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in _tensors(out):
            storage = t.untyped_storage()
            key = id(storage)  # storages keep one Python object while alive, views included
            if key in self._live:  # a view or an in-place result: no new memory
                continue
            self._live.add(key)
            self.current += storage.nbytes()
            self.peak = max(self.peak, self.current)
            weakref.finalize(storage, self._free, key, storage.nbytes())
        return out
