"""Training throughput, end to end: cnnzoo's ``train`` vs a plain torchvision pipeline; prints ratios.

Both sides train the same architecture (ours vs torchvision's) on the same image folder, at the
same image size, batch size, precision (fp32), optimizer (SGD, Nesterov momentum 0.9, the same lr
and weight decay), loss (cross-entropy, label smoothing 0.1) and augmentation (shift + flip), for
the same number of epochs, so both process the same number of training images.

- cnnzoo: ``cnnzoo.training.train`` on the folder, whose uint8 cache is prepared once beforehand
  (that is the design: decode once, then train many epochs and many models from the cache).
  Timed: the whole ``train`` call (it also validates and writes checkpoints each epoch), and the
  training passes alone as ``train`` reports them.
- torchvision: ``ImageFolder`` + ``DataLoader(num_workers=2, shuffle=True, drop_last=True)`` with
  ``Resize(size) + CenterCrop(size) + RandomCrop(size, padding) + RandomHorizontalFlip + ToTensor +
  Normalize``, and ``torchvision.models.<arch>(num_classes=...)``. Timed: the epochs' training loops
  (data loading included: decoding happens there, in the workers), no validation.

    python benchmarks/bench_train.py --folder /work/shared/data/flowers-mini
    python benchmarks/bench_train.py                      # a generated folder of JPEGs

On a shared machine absolute numbers are noisy: compare the ratios printed in one run.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

from _folders import make_jpeg_folder  # a sibling file: the script's folder is on sys.path
from cnnzoo.data import load_dataset
from cnnzoo.training import train

MODELS = ("resnet18", "mobilenet_v2")


def bench_cnnzoo(model: str, folder: Path, cache: Path, size: int, batch: int, epochs: int, lr: float,
                 channels_last: Optional[bool], out: Path) -> dict:
    data = load_dataset(str(folder), image_size=size, cache_dir=str(cache), val_fraction=0.2, progress=False)
    start = time.perf_counter()
    result = train(model=model, data=data, epochs=epochs, batch_size=batch, lr=lr, optimizer="sgd",
                   weight_decay=5e-4, label_smoothing=0.1, augment="light", warmup_epochs=0,
                   channels_last=channels_last, device="cpu", progress=False, out_dir=str(out))
    channels_last = result.config.channels_last
    wall = time.perf_counter() - start
    images = sum(len(data.train) // batch * batch for _ in range(epochs))
    return {"images": images, "train_only_img_s": result.images_per_s, "end_to_end_img_s": images / wall,
            "channels_last": channels_last,
            "num_train": len(data.train), "num_classes": data.num_classes, "mean": data.mean, "std": data.std}


def bench_torchvision(model: str, folder: Path, size: int, batch: int, epochs: int, lr: float,
                      num_classes: int, mean, std, train_files: set, channels_last: bool) -> dict:
    import torchvision
    from torchvision import datasets, transforms as T

    transform = T.Compose([T.Resize(size), T.CenterCrop(size),
                           T.RandomCrop(size, padding=max(1, round(size / 8)), padding_mode="reflect"),
                           T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
    dataset = datasets.ImageFolder(str(folder), transform=transform)
    # Train on the very files cnnzoo trained on (its split), so both see the same images.
    dataset.samples = [s for s in dataset.samples if Path(s[0]).resolve() in train_files]
    dataset.imgs = dataset.samples
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=2, drop_last=True)
    net = getattr(torchvision.models, model)(num_classes=num_classes)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=layout)
    decay = [p for p in net.parameters() if p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0}],
                                lr=lr, momentum=0.9, nesterov=True)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    net.train()
    images = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for x, y in loader:
            loss = criterion(net(x.contiguous(memory_format=layout)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            images += len(y)
    wall = time.perf_counter() - start
    return {"images": images, "end_to_end_img_s": images / wall}


def train_files_of(folder: Path, val_fraction: float = 0.2) -> set:
    """The files cnnzoo puts in its training split (the data package's own split rule)."""
    from cnnzoo.data.folders import scan_folder

    root = folder.resolve()
    _, files = scan_folder(root, val_fraction)
    return {(root / f.relpath).resolve() for f in files if f.split == 0}


def pay_one_time_costs() -> None:
    """Imports that cost seconds once per process (torch's first optimizer pulls in torch._dynamo,
    matplotlib for the curves) are paid before any timing, so neither side is charged for them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401

    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="image folder (default: a generated one)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                        help="cnnzoo side in NHWC (default: the trainer's default, NHWC on CPU)")
    parser.add_argument("--reference-channels-last", action="store_true",
                        help="torchvision's model and batches in NHWC too (not what a plain pipeline does; "
                             "shows how much of the ratio the memory layout accounts for)")
    parser.add_argument("--threads", type=int, help="torch threads for both sides")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lr = 0.1 * args.batch_size / 256
    pay_one_time_costs()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = args.folder or make_jpeg_folder(tmp / "folder", size=(500, 375))
        cache = tmp / "cache"
        print(f"folder {folder}, {args.size} px, batch {args.batch_size}, {args.epochs} epochs, fp32, "
              f"{torch.get_num_threads()} torch threads; torchvision side "
              f"{'NHWC' if args.reference_channels_last else 'NCHW'}")
        print(f"{'model':<14} {'torchvision img/s':>18} {'cnnzoo img/s':>13} {'ratio':>6} "
              f"{'cnnzoo train-only img/s':>24} {'ratio':>6}  cnnzoo layout")
        for model in args.models.split(","):
            ours = bench_cnnzoo(model, folder, cache, args.size, args.batch_size, args.epochs, lr,
                                args.channels_last, tmp / f"run-{model}")
            files = train_files_of(folder)
            ref = bench_torchvision(model, folder, args.size, args.batch_size, args.epochs, lr,
                                    ours["num_classes"], ours["mean"], ours["std"], files,
                                    args.reference_channels_last)
            assert ref["images"] == ours["images"], (ref["images"], ours["images"])
            r = ref["end_to_end_img_s"]
            print(f"{model:<14} {r:>18.1f} {ours['end_to_end_img_s']:>13.1f} {ours['end_to_end_img_s'] / r:>5.2f}x "
                  f"{ours['train_only_img_s']:>24.1f} {ours['train_only_img_s'] / r:>5.2f}x  "
                  f"{'NHWC' if ours['channels_last'] else 'NCHW'}")


if __name__ == "__main__":
    main()
