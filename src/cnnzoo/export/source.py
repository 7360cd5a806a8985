"""What gets exported: a trained checkpoint, or a registered model by name with random weights.

Both become one :class:`ModelSource`: the eager model (eval mode, CPU) and what travels with it into
the exported file's metadata (name, arguments, input size, class names, preprocessing).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from torch import nn

from cnnzoo.checkpoint import Checkpoint, ImageFields, load_checkpoint
from cnnzoo.errors import UserError
from cnnzoo.factory import create_model_with_args
from cnnzoo.preprocessing import Preprocessing
from cnnzoo.pretrained import weights_preprocessing
from cnnzoo.registry import get_model_info, list_models, require_task

CHECKPOINT_SUFFIXES = (".pt", ".pth")


@dataclass
class ModelSource:
    model: nn.Module                   # eval mode, on the CPU, as trained (batch norm not folded)
    model_name: str
    model_args: dict[str, Any]
    input_size: tuple[int, int, int]   # (channels, height, width) the export is traced at
    class_names: Optional[list[str]] = None
    preprocessing: Optional[Preprocessing] = None   # from training
    checkpoint_path: Optional[Path] = None
    checkpoint: Optional[Checkpoint] = None         # the loaded checkpoint (its config names its data)

    @property
    def description(self) -> str:
        if self.checkpoint_path is not None:
            return f"{self.model_name} from {self.checkpoint_path}"
        return f"{self.model_name} ({self.weights_label})"

    @property
    def weights_label(self) -> str:
        if self.checkpoint is not None:
            return "trained checkpoint"
        return f"weights {self.model_args['weights']}" if self.model_args.get("weights") else "random initialisation"

    @property
    def weight_bytes(self) -> int:
        """Bytes of the fp32 state dict (parameters and buffers): what an fp32 file must hold at least."""
        return sum(t.numel() * t.element_size() for t in self.model.state_dict().values())

    @property
    def checkpoint_bytes(self) -> Optional[int]:
        return self.checkpoint_path.stat().st_size if self.checkpoint_path is not None else None

    def metadata(self) -> dict[str, str]:
        """String key/values for the exported file (ONNX ``metadata_props``, a pt2 extra file)."""
        meta = {
            "cnnzoo.model_name": self.model_name,
            "cnnzoo.model_args": _json(self.model_args),
            "cnnzoo.input_size": _json(list(self.input_size)),
            "cnnzoo.weights": self.weights_label,
        }
        if self.class_names is not None:
            meta["cnnzoo.class_names"] = _json(self.class_names)
        if self.preprocessing is not None:
            meta["cnnzoo.preprocessing"] = _json(self.preprocessing.to_dict())
        return meta


def _json(value: Any) -> str:
    return json.dumps(value, default=str)


def load_source(model: Union[str, os.PathLike, Checkpoint, nn.Module], *, image_size: Optional[int] = None,
                input_size: Optional[tuple] = None, class_names: Optional[Sequence[str]] = None,
                **overrides: Any) -> ModelSource:
    """A checkpoint path, a loaded :class:`Checkpoint`, a registered model name (built with ``overrides``,
    random weights) or an ``nn.Module`` (then ``input_size`` is required, and ``class_names``, its
    outputs' classes in order, let int8 be scored on labelled data).

    ``image_size`` replaces the checkpoint's (or the model's design) height and width; ``input_size``
    (C, H, W) replaces all three.
    """
    if image_size is not None and (isinstance(image_size, bool) or int(image_size) != image_size or image_size < 8):
        raise UserError(f"image size must be a whole number of pixels, at least 8; got {image_size!r}")
    if isinstance(model, nn.Module):
        if input_size is None:
            raise UserError("give input_size=(C, H, W) to export an nn.Module (a name or checkpoint carries its own)")
        return ModelSource(model.eval().cpu(), type(model).__name__, {}, tuple(input_size),  # eval: as exported
                           class_names=list(class_names) if class_names is not None else None)
    if isinstance(model, Checkpoint):
        return _from_checkpoint(model, None, image_size, input_size, overrides)
    text = os.fspath(model)
    path = Path(text).expanduser()
    if path.is_file() or (text not in list_models() and _looks_like_a_path(text)):
        return _from_checkpoint(load_checkpoint(path), path, image_size, input_size, overrides)
    info = get_model_info(text)  # an unknown name raises, with suggestions
    _require_image_model(text)
    weights = overrides.pop("weights", None)
    net, args = create_model_with_args(text, weights=weights, **overrides)
    # what the weights were trained on travels into the file's metadata (Keras' "caffe": BGR)
    prep = weights_preprocessing(weights, text) if weights else None
    prep = prep.for_channels(args.get("in_chans", 3)) if prep else None
    channels = args.get("in_chans", info.input_size[0])
    side = image_size or (prep.image_size if prep else None)
    size = input_size or (channels, *((side, side) if side else info.input_size[1:]))
    return ModelSource(net.eval(), text, {**args, "weights": weights} if weights else args, tuple(size),
                       preprocessing=prep)


def _looks_like_a_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.endswith(CHECKPOINT_SUFFIXES)


def _require_image_model(name: str) -> None:
    require_task(name, "image", f"export handles image models ({', '.join(list_models(task='image')[:4])}, ...)")


def _from_checkpoint(ckpt: Checkpoint, path: Optional[Path], image_size, input_size, overrides) -> ModelSource:
    if overrides:
        raise UserError(f"a checkpoint carries its model arguments; {', '.join(sorted(overrides))} "
                        "cannot be changed when exporting it")
    _require_image_model(ckpt.model_name)
    args = dict(ckpt.model_args)
    fields = ckpt.fields if isinstance(ckpt.fields, ImageFields) else None
    design = get_model_info(ckpt.model_name).input_size
    channels = args.get("in_chans", design[0])
    side = image_size or (fields.preprocessing.image_size if fields else design[1])
    return ModelSource(ckpt.build_model(), ckpt.model_name, args, tuple(input_size or (channels, side, side)),
                       class_names=list(fields.class_names) or None if fields else None,
                       preprocessing=fields.preprocessing if fields else None, checkpoint_path=path, checkpoint=ckpt)
