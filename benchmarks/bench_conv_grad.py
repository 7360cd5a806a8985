"""Weight gradient of a convolution on the CPU: oneDNN's kernel vs cnnzoo's matrix-product route; prints ratios.

``cnnzoo.layers.Conv2d`` computes the weight gradient as unfold + one matmul when the output map has
at most ``SMALL_OUTPUT_POSITIONS`` positions, the kernel is larger than 1x1 and the weight has at
least ``SMALL_OUTPUT_MIN_WEIGHTS`` entries. This script times both routes, layer by layer, for the
shapes that decide those thresholds (ResNet-18, VGG, GoogLeNet and DenseNet layers at 32 and 64 px),
and a whole ResNet-18 training step with ``nn.Conv2d`` vs ``cnnzoo`` convolutions. "routed" says
which route cnnzoo takes for the shape.

    python benchmarks/bench_conv_grad.py
    python benchmarks/bench_conv_grad.py --batch-size 32 --threads 1
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from cnnzoo import create_model
from cnnzoo.layers import Conv2d

# (in, out, kernel, stride, input side, where it occurs)
SHAPES = [
    (64, 64, 3, 1, 16, "resnet18 layer1 @64px"),
    (128, 128, 3, 1, 8, "resnet18 layer2 @64px"),
    (256, 256, 3, 1, 4, "resnet18 layer3 @64px"),
    (256, 512, 3, 2, 4, "resnet18 layer4 entry @64px"),
    (512, 512, 3, 1, 2, "resnet18 layer4 @64px"),
    (512, 512, 3, 1, 1, "resnet18 layer4 @32px"),
    (512, 512, 3, 1, 4, "vgg block5 @64px"),
    (512, 512, 3, 1, 2, "vgg block5 @32px"),
    (192, 384, 3, 1, 2, "googlenet 5b 3x3 @64px"),
    (128, 32, 3, 1, 2, "densenet block4 3x3 @64px"),
    (512, 128, 1, 1, 2, "densenet block4 1x1 @64px"),
    (320, 1280, 1, 1, 2, "mobilenet_v2 head 1x1 @64px"),
]


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN builds its kernel on the first call
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def weight_grad_times(cin, cout, k, stride, side, batch, repeats, channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    ours = Conv2d(cin, cout, k, stride, k // 2, bias=False).to(memory_format=fmt)
    reference = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False).to(memory_format=fmt)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(batch, cin, side, side).contiguous(memory_format=fmt)
    grad_out = torch.randn_like(reference(x))

    def step(module):
        module.weight.grad = None
        module(x).backward(grad_out)

    return median_ms(lambda: step(reference), repeats), median_ms(lambda: step(ours), repeats), \
        ours._takes_small_output_route(x)


def whole_model(size: int, batch: int, repeats: int, channels_last: bool) -> tuple[float, float]:
    """Images/s of a ResNet-18 training step with nn.Conv2d everywhere vs cnnzoo's Conv2d."""
    def images_per_s(swap_to_plain: bool) -> float:
        torch.manual_seed(0)
        model = create_model("resnet18", num_classes=10)
        if swap_to_plain:  # the same weights in plain nn.Conv2d modules
            for module in model.modules():
                if isinstance(module, Conv2d):
                    module.__class__ = nn.Conv2d
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model = model.to(memory_format=fmt)
        x = torch.randn(batch, 3, size, size).contiguous(memory_format=fmt)
        y = torch.randint(0, 10, (batch,))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step():
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return batch / (median_ms(step, repeats) / 1000)

    return images_per_s(True), images_per_s(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"batch {args.batch_size}, {torch.get_num_threads()} torch threads, median of {args.repeats}; "
          "time = forward + backward of one conv layer (weight and input gradients)")
    for channels_last in (False, True):
        print(f"\n{'channels_last' if channels_last else 'NCHW'}")
        print(f"{'layer':<30} {'shape':<24} {'nn.Conv2d ms':>12} {'cnnzoo ms':>10} {'ratio':>6}  routed")
        for cin, cout, k, stride, side, where in SHAPES:
            plain, ours, routed = weight_grad_times(cin, cout, k, stride, side, args.batch_size, args.repeats,
                                                    channels_last)
            shape = f"{cin}->{cout} {k}x{k}/{stride} {side}x{side}"
            print(f"{where:<30} {shape:<24} {plain:>12.2f} {ours:>10.2f} {plain / ours:>5.2f}x  "
                  f"{'yes' if routed else 'no'}")
    print(f"\nresnet18 training step, batch {args.batch_size} (img/s)")
    print(f"{'input':<8} {'layout':<14} {'nn.Conv2d':>10} {'cnnzoo':>8} {'ratio':>6}")
    for size in (32, 64):
        for channels_last in (False, True):
            plain, ours = whole_model(size, args.batch_size, max(3, args.repeats // 2), channels_last)
            print(f"{size:<3} px   {'channels_last' if channels_last else 'NCHW':<14} {plain:>10.1f} {ours:>8.1f} "
                  f"{ours / plain:>5.2f}x")


if __name__ == "__main__":
    main()
