"""``cnnzoo.summary``: the Keras-style table -- layers, output shapes, parameters, multiply-adds.

Two parameter conventions, chosen with ``keras=``:
  * PyTorch's (default): parameters only; trainable = ``requires_grad``.
  * Keras' (``keras=True``): normalisation layers' ``running_mean`` and ``running_var`` are also
    weights, non-trainable ones (``num_batches_tracked`` is not: Keras has no such weight). Totals
    then match ``model.summary()`` of the same network built in Keras. A model built with
    ``layout="keras"`` is also shown as Keras shows it: its layers under Keras' names and classes
    (``conv_dw_2 (DepthwiseConv2D)``), one row per Keras layer, shapes channels-last ``[N, H, W, C]``,
    so the table reads line by line against ``keras.applications``' ``model.summary()``.
MACs follow :mod:`cnnzoo.profiling.counting` (conv and linear/matmul; the rest listed as uncounted).

A sequence model (one with ``example_input(length)``, as WaveNet) is fed its own input: for WaveNet
on audio, μ-law classes ``[N, T]`` with ``T`` the last number of ``input_size``. One with a
``receptive_field`` gets it reported too, in samples and (audio) in seconds at its sample rate,
beside its multiply-adds per output sample.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Optional, Union

import torch
from torch import nn

from cnnzoo.display import escape, html_table
from cnnzoo.errors import UserError
from cnnzoo.factory import create_model
from cnnzoo.profiling.counting import Record, count_macs, example_input
from cnnzoo.registry import get_model_info
from cnnzoo.text import format_count, table

KERAS_STAT_BUFFERS = ("running_mean", "running_var")
# Keras' layer class for each of ours, for the rows of a model built with layout="keras"
KERAS_TYPES = {"Conv2d": "Conv2D", "BatchNorm2d": "BatchNormalization", "ReLU6": "ReLU", "ReLU": "Activation",
               "ZeroPad2d": "ZeroPadding2D", "TFSamePad2d": "ZeroPadding2D", "MaxPool2d": "MaxPooling2D",
               "AvgPool2d": "AveragePooling2D", "AdaptiveAvgPool2d": "GlobalAveragePooling2D", "Dropout": "Dropout",
               "Linear": "Dense", "Input": "InputLayer"}
KERAS_INPUT_NAME = "input_layer"
UNITS = ("macs", "flops")


@dataclass
class SummaryRow:
    name: str
    type: str
    output_shape: Any
    params: int
    macs: int
    connected_to: list = field(default_factory=list)  # only for rows fed by several tensors
    depth: int = 1


@dataclass(repr=False)
class ModelSummary:
    """What :func:`summary` measured. ``macs`` are multiply-adds of one forward pass of
    ``batch_size`` images; ``flops`` = 2 x ``macs``. Shown as the table: ``str``/``repr`` give the
    text one (a terminal REPL), ``_repr_html_`` the same table in HTML (Jupyter)."""
    model_name: str
    input_size: tuple
    batch_size: int
    convention: str                 # "pytorch" or "keras"
    units: str                      # how str() prints compute: "macs" or "flops"
    depth: Optional[int]
    total_params: int
    trainable_params: int
    non_trainable_params: int
    macs: int
    param_bytes: int
    activation_bytes: int           # sum of the bytes of every counted layer's new output tensor
    rows: list = field(default_factory=list)
    uncounted_ops: dict = field(default_factory=dict)   # op name -> calls, forward pass
    backward_macs: Optional[int] = None                  # only when asked for (backward=True)
    uncounted_backward_ops: dict = field(default_factory=dict)
    # Sequence models: input samples one output sees, and the audio rate that makes them seconds
    # (None for a model of series, whose steps have no rate).
    receptive_field: Optional[int] = None
    sample_rate: Optional[int] = None

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def macs_per_sample(self) -> Optional[int]:
        """A sequence model's multiply-adds per output step (every step costs the same)."""
        if self.receptive_field is None:
            return None
        return self.macs // (self.batch_size * self.input_size[-1])

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["flops"] = self.flops
        if self.receptive_field is not None:
            d["macs_per_sample"] = self.macs_per_sample
        return d

    def __str__(self) -> str:
        return render_table(self)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return render_html(self)


# ----------------------------------------------------------------------------- public entry point

def summary(model_or_name: Union[nn.Module, str], input_size: Optional[tuple] = None, *,
            keras: bool = False, depth: Optional[int] = None, units: str = "macs", batch_size: int = 1,
            device: Optional[str] = None, backward: bool = False, **overrides) -> ModelSummary:
    """Count a model's parameters and multiply-adds, layer by layer.

    ``model_or_name``: an ``nn.Module`` or a registered name (built with ``create_model(name,
    **overrides)`` on the ``meta`` device: counting needs shapes, not weights, so even VGG costs
    nothing to count). ``input_size`` is (C, H, W); by default the model's design size
    (3, 224, 224 for most). ``depth`` collapses nested modules deeper than that into their parent
    row (None: every leaf layer). ``backward=True`` also counts the backward pass of a training
    step (``backward_macs``). The model is left in the mode and device it was in.
    """
    if units not in UNITS:
        raise UserError(f"units must be one of {', '.join(UNITS)}, got {units!r}")
    if depth is not None and depth < 1:
        raise UserError(f"depth must be at least 1, got {depth}")
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}")
    model, name, input_size = _resolve_model(model_or_name, input_size, device, overrides)
    x = example_input(model, input_size, batch_size, device or _model_device(model))
    try:
        counted = count_macs(model, x, backward=backward)
    except RuntimeError as err:
        raise UserError(f"{name} cannot run on input of size {tuple(input_size)}: {err}. "
                        "Try a larger --input-size or the model's own input channels.") from err
    trainable, frozen = _count_params(model, keras)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    if keras:
        param_bytes += sum(b.numel() * b.element_size() for b in _keras_stat_buffers(model))
    trace = counted.trace
    assert trace is not None  # count_macs always traces the forward pass
    records = list(trace.root.walk())
    rows = _rows(trace.input_record, trace.root, depth, keras, x)
    return ModelSummary(
        model_name=name, input_size=tuple(input_size), batch_size=batch_size,
        convention="keras" if keras else "pytorch", units=units, depth=depth,
        total_params=trainable + frozen, trainable_params=trainable, non_trainable_params=frozen,
        macs=counted.forward, param_bytes=param_bytes,
        activation_bytes=sum(r.output_bytes for r in records if r.is_leaf),
        rows=_keras_named(model, rows) if keras else rows,
        uncounted_ops=counted.uncounted_forward,
        backward_macs=counted.backward, uncounted_backward_ops=counted.uncounted_backward,
        **_sequence_fields(model))


def _sequence_fields(model: nn.Module) -> dict:
    receptive_field = getattr(model, "receptive_field", None)
    if receptive_field is None:
        return {}
    config = getattr(model, "config", None)
    audio = getattr(config, "output", None) != "continuous"
    return {"receptive_field": int(receptive_field),
            "sample_rate": getattr(config, "sample_rate", None) if audio else None}


def _resolve_model(model_or_name, input_size, device, overrides):
    if isinstance(model_or_name, nn.Module):
        if overrides:
            raise UserError(f"model arguments ({', '.join(overrides)}) only apply when the model is "
                            "given by name; build the module with them instead")
        return model_or_name, type(model_or_name).__name__, tuple(input_size or (3, 224, 224))
    if not isinstance(model_or_name, str):
        raise UserError(f"summary() takes an nn.Module or a model name, got {type(model_or_name).__name__}")
    name = model_or_name
    if input_size is None:
        channels, *hw = get_model_info(name).input_size
        input_size = (overrides.get("in_chans") or channels, *hw)
    try:
        with torch.device(device or "meta"):
            model = create_model(name, **overrides)
    except (RuntimeError, NotImplementedError):
        if device:
            raise
        model = create_model(name, **overrides)  # a builder that needs real data to initialise
    return model, name, tuple(input_size)


def _model_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _keras_stat_buffers(module: nn.Module) -> list:
    return [b for n, b in module.named_buffers() if n.rsplit(".", 1)[-1] in KERAS_STAT_BUFFERS]


def _count_params(model: nn.Module, keras: bool) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    if keras:
        frozen += sum(b.numel() for b in _keras_stat_buffers(model))
    return trainable, frozen


# ----------------------------------------------------------------------------- rows at a depth

def _shown(record: Record, depth: Optional[int]) -> bool:
    # A record with nothing traced inside it (a leaf layer, a merge op, or a module that computes
    # everything itself) is shown at any depth below the cut; deeper ones fold into their ancestor.
    innermost = record.is_leaf or not record.children
    if depth is None:
        return innermost
    return record.depth == depth or (record.depth < depth and innermost)


def _rows(input_record: Record, root: Record, depth: Optional[int], keras: bool, x) -> list[SummaryRow]:
    shown = [r for r in root.walk() if _shown(r, depth) and not _inside_shown(r, depth)]
    shown_set = set(map(id, shown)) | {id(input_record)}
    rows = [SummaryRow("input", "Input", list(x.shape), 0, 0, [], 1)]
    seen_params: set[int] = set()  # a module called twice shows its parameters once
    for rec in shown:
        params = _record_params(rec, keras, seen_params)
        displayed = [_displayed(src, shown_set) for src in rec.inputs if src is not None]
        sources = list(dict.fromkeys(s.name for s in displayed if s is not None))
        rows.append(SummaryRow(rec.name, rec.kind, rec.output_shape, params, rec.subtree_macs(),
                               sources if len(rec.inputs) >= 2 else [], rec.depth))
    return rows


def _inside_shown(record: Record, depth: Optional[int]) -> bool:
    parent = record.parent
    while parent is not None and parent.parent is not None:
        if _shown(parent, depth):
            return True
        parent = parent.parent
    return False


def _displayed(record: Optional[Record], shown_ids: set) -> Optional[Record]:
    while record is not None and id(record) not in shown_ids:
        record = record.parent
    return record


def _record_params(rec: Record, keras: bool, seen: set) -> int:
    if rec.module is None:
        return 0
    tensors = list(rec.module.parameters()) + (_keras_stat_buffers(rec.module) if keras else [])
    fresh = [t for t in tensors if id(t) not in seen]
    seen.update(map(id, fresh))
    return sum(t.numel() for t in fresh)


def _keras_named(model: nn.Module, rows: list[SummaryRow]) -> list[SummaryRow]:
    """The rows of a ``layout="keras"`` model under Keras' layer names, classes and channels-last
    shapes; a layer Keras has no twin of keeps our name. Rows Keras holds in one layer (VGG's Conv2D
    carries its ReLU) become one row."""
    keras_layer_names = getattr(model, "keras_layer_names", None)
    names = keras_layer_names() if keras_layer_names and getattr(model, "layout", None) == "keras" else {}
    if not names:
        return rows
    names = {"input": KERAS_INPUT_NAME} | names
    modules = dict(model.named_modules())
    out: list[SummaryRow] = []
    for row in rows:
        name = names.get(row.name, row.name)
        shape = _channels_last(row.output_shape)
        module = modules.get(row.name)
        kind = ("DepthwiseConv2D" if isinstance(module, nn.Conv2d) and module.groups > 1
                else KERAS_TYPES.get(row.type, row.type))
        if out and name != row.name and out[-1].name == name:  # the layer's type is that of its weights
            last = out[-1]
            out[-1] = replace(last, output_shape=shape, params=last.params + row.params, macs=last.macs + row.macs,
                              type=kind if row.params else last.type)
            continue
        out.append(replace(row, name=name, type=kind, output_shape=shape,
                           connected_to=[names.get(n, n) for n in row.connected_to]))
    return out


def _channels_last(shape):
    if shape and isinstance(shape[0], list):
        return [_channels_last(s) for s in shape]
    return [shape[0], *shape[2:], shape[1]] if shape and len(shape) == 4 else shape


# ----------------------------------------------------------------------------- the table

def _fmt_shape(shape) -> str:
    if shape is None:
        return "?"
    if shape and isinstance(shape[0], list):
        return ", ".join(_fmt_shape(s) for s in shape)
    return "[" + ", ".join(map(str, shape)) + "]"


def render_table(s: ModelSummary) -> str:
    """The Keras-like table: one row per layer, totals at the bottom."""
    scale, unit = _unit(s)
    header = ("Layer (type)", "Output Shape", "Param #", unit, "Connected to")
    body = []
    for r in s.rows:  # a row fed by several tensors lists one source per line
        links = r.connected_to or [""]
        body.append((f"{r.name} ({r.type})", _fmt_shape(r.output_shape), f"{r.params:,}",
                     f"{r.macs * scale:,}", links[0]))
        body.extend(("", "", "", "", extra) for extra in links[1:])
    # The header is an ordinary row here: the "=" rules around it are Keras' look, not a dashed rule.
    header_line, *body_lines = table([header, *body], align="llrrl").splitlines()
    rule = "=" * max(len(line) for line in [header_line, *body_lines])
    totals, sizes = _totals(s)
    return "\n".join([*_heading(s), rule, header_line, rule, *body_lines, rule, *totals, "-" * len(rule),
                      *sizes, rule])


def render_html(s: ModelSummary) -> str:
    """The table of :func:`render_table` in HTML (every name escaped): the same rows and totals."""
    scale, unit = _unit(s)
    header = ("Layer (type)", "Output Shape", "Param #", unit, "Connected to")
    body = [(f"{r.name} ({r.type})", _fmt_shape(r.output_shape), f"{r.params:,}", f"{r.macs * scale:,}",
             ", ".join(r.connected_to)) for r in s.rows]
    title, convention = _heading(s)
    totals, sizes = _totals(s)
    return (f"<div><b>{escape(title)}</b><br/><small>{escape(convention)}</small>"
            + html_table(body, header, align="llrrl")
            + "<pre>" + escape("\n".join([*totals, *sizes])) + "</pre></div>")


def _unit(s: ModelSummary) -> tuple[int, str]:
    return (2, "FLOPs") if s.units == "flops" else (1, "MACs")


def _heading(s: ModelSummary) -> tuple[str, str]:
    conv = ("Keras convention: parameters plus normalisation running statistics (non-trainable)"
            if s.convention == "keras" else "PyTorch convention: parameters only")
    compute = ("FLOPs = 2 x multiply-adds" if s.units == "flops" else "MACs = multiply-adds")
    shown_input = s.rows[0].output_shape if s.rows else [s.batch_size, *s.input_size]  # what the model was fed
    return (f'Model: "{s.model_name}"   input {_fmt_shape(shown_input)}',
            f"{conv}; {compute} of conv and linear layers")


def _totals(s: ModelSummary) -> tuple[list[str], list[str]]:
    """The lines under the table: counts, then sizes (and what was not counted)."""
    scale, unit = _unit(s)
    total = s.macs * scale
    out = [f"Total params: {s.total_params:,}",
           f"Trainable params: {s.trainable_params:,}",
           f"Non-trainable params: {s.non_trainable_params:,}",
           f"Total {unit} (forward, batch {s.batch_size}): {total:,} ({format_count(total)} {unit})"]
    if s.backward_macs is not None:
        back = s.backward_macs * scale
        out.append(f"Backward {unit} (training step): {back:,} ({format_count(back)} {unit})")
    if s.receptive_field is not None:
        per_sample = (s.macs_per_sample or 0) * scale
        out.append(f"{unit} per sample (one output step): {per_sample:,} ({format_count(per_sample)} {unit})")
        seconds = (f" = {_fmt_seconds(s.receptive_field / s.sample_rate)} at {s.sample_rate:,} Hz"
                   if s.sample_rate else "")
        out.append(f"Receptive field: {s.receptive_field:,} samples{seconds}")
    sizes = [f"Params size (MB): {s.param_bytes / 1e6:,.2f}",
             f"Forward activations (MB, batch {s.batch_size}; sum of layer outputs): "
             f"{s.activation_bytes / 1e6:,.2f}"]
    if s.uncounted_ops:
        ops = ", ".join(f"{n} x{c}" for n, c in sorted(s.uncounted_ops.items(), key=lambda kv: -kv[1]))
        sizes.append(f"Not counted (0 {unit} by convention): {ops}")
    return out, sizes


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"
