"""Training throughput, end to end: cnnzoo's ``train`` vs a plain torchvision pipeline; prints ratios.

Both sides train the same architecture (ours vs torchvision's) on the same image folder, at the
same image size, batch size, precision (fp32), optimizer (SGD, Nesterov momentum 0.9, the same lr
and weight decay), loss (cross-entropy, label smoothing 0.1) and augmentation (shift + flip), for
the same number of epochs, and both validate on the same held-out files after every epoch (as the
study notes' ``model.fit(validation_data=...)`` does), so both do the same work.

- cnnzoo: ``cnnzoo.training.train`` on the folder, whose uint8 cache is prepared once beforehand
  (that is the design: decode once, then train many epochs and many models from the cache; the
  one-time preparation is printed too). Timed: the whole ``train`` call, which besides training and
  validating also writes ``best.pt``/``last.pt`` every epoch and the curves at the end (work the
  reference does not do), and the training passes alone as ``train`` reports them.
- torchvision: ``ImageFolder`` + ``DataLoader(num_workers=2)`` with ``Resize(size) + CenterCrop(size)
  + RandomCrop(size, padding) + RandomHorizontalFlip + ToTensor + Normalize`` for training
  (``shuffle=True, drop_last=True``) and ``Resize + CenterCrop + ToTensor + Normalize`` for
  validation, and ``torchvision.models.<arch>(num_classes=...)`` in its default (NCHW) layout.
  Timed: the epochs (training and validation, data loading included: decoding happens there, in
  the workers), and the training loops alone.

"end to end" = training images / wall time of all epochs; "training passes" = the same over the
time spent in the training loops only.

    python benchmarks/bench_train.py --folder /work/shared/data/flowers-mini
    python benchmarks/bench_train.py                      # a generated folder of JPEGs

On a shared machine absolute numbers are noisy (10-20 % between runs of the same code here): compare
the ratios printed in one run, and quote the median ratio over the rounds (``--rounds``).
"""
from __future__ import annotations

import argparse
import statistics
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
    start = time.perf_counter()
    data = load_dataset(str(folder), image_size=size, cache_dir=str(cache), val_fraction=0.2, progress=False)
    prepare_s = time.perf_counter() - start  # decoding on the first model, a cache hit afterwards
    start = time.perf_counter()
    result = train(model=model, data=data, epochs=epochs, batch_size=batch, lr=lr, optimizer="sgd",
                   weight_decay=5e-4, label_smoothing=0.1, augment="light", warmup_epochs=0,
                   channels_last=channels_last, device="cpu", progress=False, out_dir=str(out))
    wall = time.perf_counter() - start
    images = sum(len(data.train) // batch * batch for _ in range(epochs))
    return {"images": images, "train_only_img_s": result.images_per_s, "end_to_end_img_s": images / wall,
            "channels_last": result.config.channels_last, "prepare_s": prepare_s,
            "num_classes": data.num_classes, "mean": data.mean, "std": data.std}


def bench_torchvision(model: str, folder: Path, size: int, batch: int, epochs: int, lr: float,
                      num_classes: int, mean, std, split_files: tuple[set, set], channels_last: bool) -> dict:
    import torchvision
    from torchvision import datasets
    from torchvision import transforms as T

    transform = T.Compose([T.Resize(size), T.CenterCrop(size),
                           T.RandomCrop(size, padding=max(1, round(size / 8)), padding_mode="reflect"),
                           T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
    val_transform = T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), T.Normalize(mean, std)])

    def split(transform, files: set):
        # The very files cnnzoo trains and validates on (its split), so both see the same images.
        dataset = datasets.ImageFolder(str(folder), transform=transform)
        dataset.samples = [s for s in dataset.samples if Path(s[0]).resolve() in files]
        dataset.imgs = dataset.samples
        return dataset

    train_files, val_files = split_files
    loader = torch.utils.data.DataLoader(split(transform, train_files), batch_size=batch, shuffle=True,
                                         num_workers=2, drop_last=True)
    val_loader = torch.utils.data.DataLoader(split(val_transform, val_files), batch_size=batch, num_workers=2)
    net = getattr(torchvision.models, model)(num_classes=num_classes)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=layout)
    decay = [p for p in net.parameters() if p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0}],
                                lr=lr, momentum=0.9, nesterov=True)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    images, train_time = 0, 0.0
    start = time.perf_counter()
    for _ in range(epochs):
        net.train()
        epoch_start = time.perf_counter()
        for x, y in loader:
            loss = criterion(net(x.contiguous(memory_format=layout)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            images += len(y)
        train_time += time.perf_counter() - epoch_start
        net.eval()
        correct = 0
        with torch.inference_mode():
            for x, y in val_loader:
                correct += (net(x.contiguous(memory_format=layout)).argmax(1) == y).sum().item()
    wall = time.perf_counter() - start
    return {"images": images, "end_to_end_img_s": images / wall, "train_only_img_s": images / train_time}


def split_files_of(folder: Path, val_fraction: float = 0.2) -> tuple[set, set]:
    """The files cnnzoo puts in its training and validation splits (the data package's own rule)."""
    from cnnzoo.data.folders import scan_folder

    root = folder.resolve()
    _, files = scan_folder(root, val_fraction)
    return tuple({(root / f.relpath).resolve() for f in files if f.split == split} for split in (0, 1))


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
    parser.add_argument("--rounds", type=int, default=3,
                        help="measure each side this many times, alternating which goes first; "
                             "prints every round and the medians")
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
        print(f"{'':<20} {'end to end (img/s)':^30}  {'training passes (img/s)':^30}")
        print(f"{'model':<20} {'torchvision':>11} {'cnnzoo':>8} {'ratio':>8}  {'torchvision':>11} {'cnnzoo':>8} "
              f"{'ratio':>8}  cnnzoo layout, one-time decode")
        for model in args.models.split(","):
            rows = []
            for round_ in range(args.rounds):
                ref, ours = measure_round(args, model, round_, folder, cache, tmp / f"run-{model}-{round_}", lr,
                                          data_facts=rows[0][1] if rows else None)
                rows.append((ref, ours))
                print_row(f"{model}" + (f" #{round_ + 1}" if args.rounds > 1 else ""), ref, ours)
            if args.rounds > 1:
                e2e, passes = ([ours[key] / ref[key] for ref, ours in rows]
                               for key in ("end_to_end_img_s", "train_only_img_s"))
                print(f"{model + ' median ratio':<20} {'':>11} {'':>8} {statistics.median(e2e):>7.2f}x  {'':>11} "
                      f"{'':>8} {statistics.median(passes):>7.2f}x  over {args.rounds} rounds")

def measure_round(args, model: str, round_: int, folder: Path, cache: Path, out: Path, lr: float,
                  data_facts: Optional[dict]) -> tuple[dict, dict]:
    """Both sides once. Even rounds run cnnzoo first, odd rounds the reference, so a machine that slows
    down or speeds up during a round does not favour one side; the median over rounds is the figure
    to quote. The reference takes the class count and normalisation from cnnzoo's data."""
    def run_ours():
        return bench_cnnzoo(model, folder, cache, args.size, args.batch_size, args.epochs, lr,
                            args.channels_last, out)

    def run_reference(facts):
        return bench_torchvision(model, folder, args.size, args.batch_size, args.epochs, lr,
                                 facts["num_classes"], facts["mean"], facts["std"], split_files_of(folder),
                                 args.reference_channels_last)

    if round_ % 2 == 0 or data_facts is None:
        ours = run_ours()
        ref = run_reference(ours)
    else:
        ref = run_reference(data_facts)
        ours = run_ours()
    assert ref["images"] == ours["images"], (ref["images"], ours["images"])
    return ref, ours


def print_row(label: str, ref: dict, ours: dict) -> None:
    e2e = (ref["end_to_end_img_s"], ours["end_to_end_img_s"])
    passes = (ref["train_only_img_s"], ours["train_only_img_s"])
    print(f"{label:<20} {e2e[0]:>11.1f} {e2e[1]:>8.1f} {e2e[1] / e2e[0]:>7.2f}x  {passes[0]:>11.1f} "
          f"{passes[1]:>8.1f} {passes[1] / passes[0]:>7.2f}x  "
          f"{'NHWC' if ours['channels_last'] else 'NCHW'}, {ours['prepare_s']:.1f}s", flush=True)


if __name__ == "__main__":
    main()
