"""Data pipeline throughput, side by side with the reference tools; prints ratios.

1. Loading (once prepared): batches/s from cnnzoo's BatchLoader vs torchvision's ImageFolder +
   DataLoader(num_workers=2) with the equivalent transforms (resize shorter side + centre crop, then
   the same augmentation, ToTensor, Normalize), on the same folder at 32, 64 and 128 px.
2. Preparation: images/s decoded into the cache (one worker, threads, processes) vs plain PIL
   decode + resize shorter side + centre crop in a loop.

    python benchmarks/bench_data.py --folder /work/shared/data/flowers-mini
    python benchmarks/bench_data.py                     # a generated folder of JPEGs

Timings on a shared machine are noisy: compare the ratios printed in one run, not absolute numbers.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from _folders import make_jpeg_folder  # a sibling file: the script's folder is on sys.path
from cnnzoo.data import BatchLoader, load_dataset
from cnnzoo.data.decode import IMAGE_EXTENSIONS
from cnnzoo.data.folders import load_folder


def torchvision_loader(folder, size, augment, batch_size, workers, mean, std):
    import torch
    from torchvision import datasets
    from torchvision import transforms as T

    augmentation = {
        "none": [],
        "light": [T.RandomCrop(size, padding=max(1, round(size / 8)), padding_mode="reflect"),
                  T.RandomHorizontalFlip()],
        "standard": [T.RandomResizedCrop(size, scale=(0.35, 1.0)), T.RandomHorizontalFlip()],
    }[augment]
    transform = T.Compose([T.Resize(size), T.CenterCrop(size), *augmentation, T.ToTensor(), T.Normalize(mean, std)])
    dataset = datasets.ImageFolder(str(folder), transform=transform)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                       persistent_workers=workers > 0, drop_last=True)


def batches_per_second(loader, n_batches: int) -> float:
    """Time ``n_batches`` after one warm-up batch (worker start-up excluded), cycling through epochs."""
    def endless():
        for epoch in itertools.count():
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)
            yield from loader

    stream = endless()
    next(stream)
    start = time.perf_counter()
    for _ in range(n_batches):
        x, y = next(stream)
    return n_batches / (time.perf_counter() - start)


def image_paths(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)


def plain_pil(path: Path, size: int) -> np.ndarray:
    """What one writes without thinking about speed: full decode, resize shorter side, centre crop."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BILINEAR)
        left, top = (im.size[0] - size) // 2, (im.size[1] - size) // 2
        return np.asarray(im.crop((left, top, left + size, top + size)))


def images_per_second(fn, n: int, repeats: int = 2) -> float:
    """Best of ``repeats`` runs (the least disturbed by other work on the machine)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def bench_preparation(folder: Path, sizes, workers: int) -> None:
    paths = image_paths(folder)
    n = len(paths)
    print(f"\nPreparation of {n} images into the cache (images/s, best of 2; higher is better); "
          f"ours includes scanning, statistics and the manifest")
    print(f"{'size':>5} {'plain PIL':>10} {'ours 1 worker':>14} {f'ours {workers} threads':>16} "
          f"{f'ours {workers} processes':>18} {'processes/PIL':>14}")
    for size in sizes:
        with tempfile.TemporaryDirectory() as cache:
            fresh = itertools.count()  # a new cache folder per run: every run prepares from scratch

            def ours(executor, n_workers):
                return lambda: load_folder(folder, Path(cache) / str(next(fresh)), image_size=size, progress=False,
                                           workers=n_workers, executor=executor)

            pil = images_per_second(lambda: [plain_pil(p, size) for p in paths], n)
            one = images_per_second(ours("threads", 1), n)
            threads = images_per_second(ours("threads", workers), n)
            processes = images_per_second(ours("processes", workers), n)
        print(f"{size:>5} {pil:>10.0f} {one:>14.0f} {threads:>16.0f} {processes:>18.0f} {processes / pil:>13.1f}x")


def bench_loading(folder: Path, sizes, augments, batch_size: int, n_batches: int, workers: int) -> None:
    import torch

    print(f"\nLoading, once prepared: batches/s of {batch_size} images, {n_batches} batches "
          f"(torchvision: ImageFolder + DataLoader(num_workers={workers}))")
    print(f"{'size':>5} {'augment':>9} {'torchvision':>12} {'ours':>9} {'ours/torchvision':>17}")
    with tempfile.TemporaryDirectory() as cache:
        for size in sizes:
            splits = load_dataset(str(folder), image_size=size, cache_dir=cache, val_fraction=0.0, progress=False)
            for augment in augments:
                torch.manual_seed(0)
                ref = batches_per_second(torchvision_loader(folder, size, augment, batch_size, workers,
                                                            splits.mean, splits.std), n_batches)
                ours = batches_per_second(BatchLoader(splits.train, batch_size, augment=augment, drop_last=True,
                                                      mean=splits.mean, std=splits.std), n_batches)
                print(f"{size:>5} {augment:>9} {ref:>12.1f} {ours:>9.1f} {ours / ref:>16.1f}x")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, help="an image folder (root/<class>/*.jpg); default: generated")
    parser.add_argument("--sizes", default="32,64,128", help="image sizes in px (default 32,64,128)")
    parser.add_argument("--augments", default="light,standard", help="augmentation presets to compare")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=40, help="timed batches per measurement")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers / decoding threads")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads in this process (default 1, as in each DataLoader worker: "
                             "our loader then uses one core where torchvision uses --workers)")
    parser.add_argument("--skip-preparation", action="store_true")
    parser.add_argument("--skip-loading", action="store_true")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or make_jpeg_folder(Path(tmp) / "generated", size=(320, 240))
        print(f"folder: {folder} ({len(image_paths(folder))} images), cpu cores: {os.cpu_count()}, "
              f"torch threads: {args.threads}, python {sys.version.split()[0]}")
        if not args.skip_loading:
            bench_loading(folder, sizes, args.augments.split(","), args.batch_size, args.batches, args.workers)
        if not args.skip_preparation:
            bench_preparation(folder, sizes, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
