"""Our MAC counter against PyTorch's FlopCounterMode and torchvision's documented figures.

Prints, side by side: forward MACs (ours, FlopCounterMode's FLOPs / 2, torchvision's "GFLOPS"
column, which counts multiply-adds), backward MACs of a training step (ours vs FlopCounterMode,
where grouped/depthwise convolutions differ), and the time each counter takes. Models are built
on the meta device, so nothing is computed and the timings measure the counters' own overhead.

    .venv/bin/python benchmarks/profiling_counts.py
"""
import time

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from cnnzoo.profiling import count_macs

# torchvision model docs / weights meta "_ops" (multiply-adds, in G, at 224 px).
TORCHVISION_GMACS = {"resnet50": 4.089, "vgg16": 15.47, "mobilenet_v2": 0.301,
                     "googlenet": 1.498, "densenet121": 2.834}
BUILD_ARGS = {"googlenet": {"init_weights": False, "aux_logits": False}}


def flop_counter_macs(model, x, backward):
    with FlopCounterMode(display=False) as mode:
        out = model(x)
        forward = mode.get_total_flops()
        if backward:
            out.sum().backward()
    return forward / 2, (mode.get_total_flops() - forward) / 2 if backward else None


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main():
    print(f"{'model':<13} {'ours GMACs':>10} {'FCM GMACs':>10} {'tv GMACs':>9} {'ours/tv':>8} "
          f"{'bwd ours':>9} {'bwd FCM':>9} {'FCM/ours bwd':>12} {'t ours s':>9} {'t FCM s':>8}")
    for name, reference in TORCHVISION_GMACS.items():
        with torch.device("meta"):
            model = getattr(torchvision.models, name)(**BUILD_ARGS.get(name, {}))
        x = torch.zeros(1, 3, 224, 224, device="meta")
        ours, t_ours = timed(lambda: count_macs(model, x, backward=True))
        (fcm_fwd, fcm_bwd), t_fcm = timed(lambda: flop_counter_macs(model.eval(), x, backward=True))
        print(f"{name:<13} {ours.forward / 1e9:>10.3f} {fcm_fwd / 1e9:>10.3f} {reference:>9.3f} "
              f"{ours.forward / 1e9 / reference:>8.3f} {ours.backward / 1e9:>9.3f} {fcm_bwd / 1e9:>9.3f} "
              f"{fcm_bwd / ours.backward:>12.2f} {t_ours:>9.2f} {t_fcm:>8.2f}")
    # One depthwise convolution: backward should cost 2x forward (grad-input + grad-weight).
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False)
    x = torch.randn(1, 64, 56, 56, requires_grad=True)
    ours = count_macs(conv, x, backward=True)
    fcm_fwd, fcm_bwd = flop_counter_macs(conv, x, backward=True)
    print(f"\ndepthwise 3x3 conv, 64 channels, 56x56: forward {ours.forward:,} MACs; backward "
          f"ours {ours.backward:,} ({ours.backward / ours.forward:.1f}x), "
          f"FlopCounterMode {fcm_bwd:,.0f} ({fcm_bwd / fcm_fwd:.1f}x)")


if __name__ == "__main__":
    main()
