"""TensorFlow's "SAME" padding: the pads, the layer, ConvNormAct(padding="tf"), and its ONNX export."""
import math

import numpy as np
import onnxruntime
import pytest
import torch
import torch.nn.functional as F

from cnnzoo.layers.conv import ConvNormAct
from cnnzoo.layers.padding import TFSamePad2d, tf_same_pads


def tensorflow_same(size, kernel, stride, dilation=1):
    # TensorFlow's documented rule (tf.nn.convolution, "SAME"): output ceil(size / stride), the total
    # padding that needs, the odd pixel after the input.
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize("size", [1, 2, 5, 7, 8, 224, 225])
@pytest.mark.parametrize("kernel, stride, dilation", [(1, 1, 1), (3, 1, 1), (3, 2, 1), (5, 2, 1), (7, 2, 1),
                                                      (3, 3, 1), (3, 1, 2), (2, 2, 1)])
def test_pads_are_tensorflows(size, kernel, stride, dilation):
    before, after = tf_same_pads(size, kernel, stride, dilation)
    assert (before, after) == tensorflow_same(size, kernel, stride, dilation)
    out = (size + before + after - ((kernel - 1) * dilation + 1)) // stride + 1
    assert out == math.ceil(size / stride)


def test_stride_two_on_an_even_size_pads_only_after():
    assert tf_same_pads(224, 3, 2) == (0, 1)  # PyTorch's padding=1 would pad (1, 1)
    assert tf_same_pads(225, 3, 2) == (1, 1)
    assert tf_same_pads(224, 7, 2) == (2, 3)


def test_static_and_dynamic_pads_agree():
    x = torch.randn(2, 3, 10, 7)
    dynamic, static = TFSamePad2d((3, 5), 2), TFSamePad2d((3, 5), 2, input_size=(10, 7))
    torch.testing.assert_close(dynamic(x), static(x), rtol=0, atol=0)
    assert dynamic(x).shape == (2, 3, 11, 11)  # rows (0, 1), columns (2, 2)
    with pytest.raises(ValueError, match="10x7"):
        static(torch.randn(1, 3, 8, 8))


def test_conv_norm_act_tf_padding_equals_explicit_padding():
    torch.manual_seed(0)
    tf = ConvNormAct(3, 4, 3, 2, padding="tf", norm="none", act="none").eval()
    x = torch.randn(1, 3, 8, 8)
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), tf.conv.weight, tf.conv.bias, stride=2)
    torch.testing.assert_close(tf(x), expected, rtol=0, atol=0)
    explicit = ConvNormAct(3, 4, 3, 2, padding=(0, 1, 0, 1), norm="none", act="none")
    explicit.load_state_dict(tf.state_dict())  # same parameters whatever the padding
    torch.testing.assert_close(explicit(x), expected, rtol=0, atol=0)


def test_default_padding_unchanged():
    block = ConvNormAct(3, 4, 3, 2)
    assert not hasattr(block, "pad") and block.conv.padding == (1, 1)
    assert list(block.state_dict()) == list(ConvNormAct(3, 4, 3, 2, padding="tf").state_dict())
    with pytest.raises(ValueError, match="padding"):
        ConvNormAct(3, 4, padding="valid")


def _onnx_session(model, example, dynamic_shapes):
    program = torch.onnx.export(model, (example,), dynamo=True, external_data=False, verbose=False,
                                dynamic_shapes=dynamic_shapes)
    return onnxruntime.InferenceSession(program.model_proto.SerializeToString(),
                                        providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("dynamic", [False, True])
def test_onnx_export_matches_eager(dynamic):
    torch.manual_seed(0)
    size = None if dynamic else 12
    model = torch.nn.Sequential(ConvNormAct(3, 4, 3, 2, padding="tf", input_size=size),
                                ConvNormAct(4, 4, 5, 2, padding="tf", input_size=None if dynamic else 6)).eval()
    example = torch.randn(2, 3, 12, 12)  # not 1: torch.export would fix a dimension traced at 1
    shapes = ({0: torch.export.Dim("batch", min=1), 2: torch.export.Dim("height", min=4, max=512),
               3: torch.export.Dim("width", min=4, max=512)},)
    session = _onnx_session(model, example, shapes if dynamic else None)
    name = session.get_inputs()[0].name
    # even and odd sizes: the pads differ between them, so a size baked into the graph would show
    for shape in ([(2, 3, 12, 12)] + ([(1, 3, 9, 13), (3, 3, 16, 7)] if dynamic else [])):
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {name: x.numpy()})[0]
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
