"""Accuracy per minute of training: cnnzoo's recipe vs a plain torchvision pipeline, same model, same budget.

For each budget (``--budgets`` in minutes, default 1, 2, 5, 10) both sides train from scratch once,
with a schedule that fills that budget, and the validation accuracy they reach is printed side by
side. A separate run per budget, not one long run read at four times: a one-minute schedule decays
its learning rate within the minute, which is what a user with one minute gets.

- cnnzoo: ``cnnzoo.training.train`` with a time budget and an epoch count the budget cuts (so the
  run measures its epoch time, fits its epochs, warm-up and cosine decay to the budget, and stops
  at an epoch boundary before overrunning). Every other option is the trainer's default for this
  model and data unless given here (``--augment``, ``--set key=value`` for any ``TrainConfig``
  field; ``--recipe NAME`` once the trainer has named recipes). The uint8 cache is prepared once
  beforehand and that time printed apart (the design: decode once, train many times).
- torchvision: ``ImageFolder`` + ``DataLoader(num_workers=2)``, ``Resize + CenterCrop`` to the same
  size, then the same augmentation as cnnzoo's run as torchvision transforms (random-resized crop
  or pad-and-crop, flip; TrivialAugmentWide / RandAugment / RandomErasing for the policy presets),
  ``ToTensor + Normalize``. The **same model** (built by ``cnnzoo.create_model`` with the same
  arguments and seed, so architecture and initialisation are identical), the hyper-parameters
  cnnzoo's run resolved (batch, optimizer (SGD-Nesterov 0.9 or AdamW), learning rate, weight decay on
  conv/linear weights only, label smoothing, warm-up epochs), cosine decay over the epochs the
  budget holds (measured on its first epoch, then planned again after each epoch as cnnzoo's trainer
  does), validation after every epoch, and the same stop rule. Both validate on the same files
  (cnnzoo's split). Progressive resizing, part of cnnzoo's default from scratch at 64 px and above,
  is not mirrored: the reference trains every epoch at the final size, as a plain pipeline does; nor
  is the mixed precision cnnzoo chooses by timing on a CPU with hardware bfloat16: the reference
  trains in float32, as a plain pipeline does.

The budget counts training and the per-epoch validation, for both. "best" is the best validation
accuracy over the epochs (what ``best.pt`` keeps), "last" the final epoch's.

    python benchmarks/bench_time_to_accuracy.py --folder /work/shared/data/flowers-train --model resnet18 \\
        --model-arg width_mult=0.5 --size 128
    python benchmarks/bench_time_to_accuracy.py --folder DIR --budgets 0.33 --sides cnnzoo,torchvision

Absolute figures depend on the machine (named in the output) and on whatever else runs on it.
"""
from __future__ import annotations

import argparse
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

from bench_train import pay_one_time_costs, split_files_of  # a sibling file: the script's folder is on sys.path
from cnnzoo import create_model
from cnnzoo.data import load_dataset
from cnnzoo.training import train

SIDES = ("cnnzoo", "torchvision")
UNCAPPED_EPOCHS = 10_000  # the budget, not the epoch count, decides how long a run trains


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def parse_pairs(pairs: list[str], flag: str) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"{flag} takes key=value, got {pair!r}")
        out[key.replace("-", "_")] = parse_value(value)
    return out


def run_cnnzoo(args, data, budget_min: float, out: Path, options: dict) -> dict:
    start = time.perf_counter()
    result = train(model=args.model, model_args=args.model_args or None, data=data, epochs=UNCAPPED_EPOCHS,
                   time_budget_s=budget_min * 60, seed=args.seed, device="cpu", progress=False, out_dir=str(out),
                   **options)
    wall = time.perf_counter() - start
    accs = [r.val["acc"] for r in result.history]
    return {"epochs": len(result.history), "planned": result.planned_epochs, "wall_s": wall,
            "best": max(accs) if accs else float("nan"), "last": accs[-1] if accs else float("nan"),
            "config": result.config}


def torchvision_augment(augment: str, size: int) -> list:
    """cnnzoo's augmentation preset as torchvision transforms on PIL images (before ToTensor), and
    the tensor transforms after it (random erasing works on tensors)."""
    from torchvision import transforms as T

    shift = T.RandomCrop(size, padding=max(1, round(size / 8)), padding_mode="reflect")
    rrc = T.RandomResizedCrop(size, scale=(0.35, 1.0), antialias=True)
    before = {"none": [], "light": [shift, T.RandomHorizontalFlip()], "standard": [T.RandomHorizontalFlip(), rrc]}
    base, _, policy = augment.partition("-")
    steps = list(before[base])
    if policy.startswith("trivial"):
        steps.append(T.TrivialAugmentWide())
    elif policy.startswith("randaug"):
        steps.append(T.RandAugment(num_ops=2, magnitude=9))
    if base == "standard" and policy:  # cnnzoo's policy presets apply the policy before the crop
        steps = [T.RandomHorizontalFlip(), steps[-1], rrc]
    after = []
    if policy.endswith("erase"):
        after.append(T.RandomErasing(p=0.25 if policy.startswith("randaug") else 0.1, value="random"))
    return [steps, after]


def run_torchvision(args, config, data, budget_min: float, split_files: tuple[set, set]) -> dict:
    from torchvision import datasets
    from torchvision import transforms as T

    size = data.image_size
    before, after = torchvision_augment(config.augment, size)
    base = [T.Resize(size), T.CenterCrop(size)]
    tensor = [T.ToTensor(), T.Normalize(data.mean, data.std)]
    transform = T.Compose(base + before + tensor + after)
    val_transform = T.Compose(base + tensor)

    def split(transform, files: set):
        dataset = datasets.ImageFolder(str(args.folder), transform=transform)
        dataset.samples = [s for s in dataset.samples if Path(s[0]).resolve() in files]
        dataset.imgs = dataset.samples
        return dataset

    train_files, val_files = split_files
    generator = torch.Generator().manual_seed(args.seed)
    loader = torch.utils.data.DataLoader(split(transform, train_files), batch_size=config.batch_size, shuffle=True,
                                         num_workers=2, drop_last=True, generator=generator,
                                         persistent_workers=True)
    val_loader = torch.utils.data.DataLoader(split(val_transform, val_files), batch_size=256, num_workers=2,
                                             persistent_workers=True)
    torch.manual_seed(config.seed)
    net = create_model(args.model, num_classes=data.num_classes, **(args.model_args or {}))
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    net = net.to(memory_format=layout)
    decay = [p for p in net.parameters() if p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)
    else:  # adamw | adam, as cnnzoo's optimizer table names them
        optimizer = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[config.optimizer](groups, lr=config.lr)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    budget_s = budget_min * 60
    steps_per_epoch = len(loader)
    planned: Optional[int] = None
    accs, epoch_times = [], []
    start = time.perf_counter()
    epoch = 0
    while planned is None or epoch < planned:
        epoch_start = time.perf_counter()
        net.train()
        for i, (x, y) in enumerate(loader):
            progress = epoch + i / steps_per_epoch
            optimizer.param_groups[0]["lr"] = optimizer.param_groups[1]["lr"] = config.lr * lr_factor(
                progress, config.warmup_epochs, planned)
            loss = criterion(net(x.contiguous(memory_format=layout)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        net.eval()
        correct = total = 0
        with torch.inference_mode():
            for x, y in val_loader:
                correct += (net(x.contiguous(memory_format=layout)).argmax(1) == y).sum().item()
                total += len(y)
        accs.append(correct / total)
        epoch_times.append(time.perf_counter() - epoch_start)
        epoch += 1
        elapsed = time.perf_counter() - start
        # Planned from the first epoch, then again after each one from the median epoch after the
        # first (which also pays the workers' start), as cnnzoo's trainer does: without the re-plan
        # this side stopped after 248 of 300 s on flowers-train.
        pace = statistics.median(epoch_times[1:]) if len(epoch_times) > 1 else epoch_times[0]
        planned = max(epoch, epoch + int((budget_s - elapsed) // pace))
        if elapsed + sum(epoch_times) / len(epoch_times) > budget_s:
            break
    wall = time.perf_counter() - start
    return {"epochs": len(accs), "planned": planned, "wall_s": wall, "best": max(accs), "last": accs[-1]}


def lr_factor(progress: float, warmup: float, planned: Optional[int]) -> float:
    """Linear warm-up, then cosine to zero over the planned epochs (unknown during the first epoch:
    warm-up or full rate then)."""
    if warmup > 0 and progress < warmup:
        return (progress + 1e-3) / warmup
    if planned is None or planned <= warmup:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / (planned - warmup))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True, help="an image folder, one subfolder per class")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="a model constructor argument, e.g. width_mult=0.5 (repeatable)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--budgets", default="1,2,5,10", help="training budgets in minutes, comma-separated")
    parser.add_argument("--sides", default=",".join(SIDES), help="which pipelines to run")
    parser.add_argument("--augment", help="cnnzoo's augmentation preset (both sides; default: the trainer's)")
    parser.add_argument("--recipe", help="a named training recipe (passed to train(recipe=...) once it has them)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other TrainConfig field for the cnnzoo side, e.g. --set label_smoothing=0.1")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads for both sides")
    args = parser.parse_args()
    args.model_args = parse_pairs(args.model_arg, "--model-arg")
    options = parse_pairs(args.set, "--set")
    if args.augment:
        options["augment"] = args.augment
    if args.recipe:
        options["recipe"] = args.recipe
    sides = [s for s in args.sides.split(",") if s]
    if not set(sides) <= set(SIDES) or "cnnzoo" not in sides:
        raise SystemExit(f"--sides: cnnzoo and optionally torchvision (the reference takes cnnzoo's resolved "
                         f"hyper-parameters), got {args.sides!r}")
    if args.threads:
        torch.set_num_threads(args.threads)
    pay_one_time_costs()
    budgets = [float(b) for b in args.budgets.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        data = load_dataset(str(args.folder), image_size=args.size, cache_dir=str(tmp / "cache"),
                            val_fraction=args.val_fraction, seed=args.seed, progress=False)
        prepare_s = time.perf_counter() - start
        split_files = split_files_of(args.folder, args.val_fraction) if "torchvision" in sides else None
        print(f"{args.folder}: {len(data.train)} training / {len(data.val)} validation images, "
              f"{data.num_classes} classes, {args.size} px; cnnzoo's one-time decode {prepare_s:.1f} s")
        print(f"model {args.model} {args.model_args or ''}; CPU {cpu_name()}, {torch.get_num_threads()} torch "
              f"threads; options {options or 'defaults'}")
        print(f"{'budget':>7}  {'side':<12} {'epochs':>7} {'wall':>7} {'best val':>9} {'last val':>9}")
        for budget in budgets:
            ours = run_cnnzoo(args, data, budget, tmp / f"run-{budget}", options)
            print_row(budget, "cnnzoo", ours)
            c = ours["config"]
            if "torchvision" in sides:
                print_row(budget, "torchvision", run_torchvision(args, c, data, budget, split_files))
            print(f"{'':>7}  (resolved: augment {c.augment}, batch {c.batch_size}, {c.optimizer} lr {c.lr:g}, "
                  f"wd {c.weight_decay:g}, label smoothing {c.label_smoothing:g}, warm-up {c.warmup_epochs:g} ep, "
                  f"{'bfloat16' if c.amp else 'float32'}{', progressive resizing' if c.progressive_resize else ''})",
                  flush=True)


def print_row(budget: float, side: str, r: dict) -> None:
    epochs = f"{r['epochs']}/{r['planned']}" if r.get("planned") else str(r["epochs"])
    print(f"{budget:>6g}m  {side:<12} {epochs:>7} {r['wall_s']:>6.0f}s {r['best']:>8.1%} {r['last']:>8.1%}",
          flush=True)


if __name__ == "__main__":
    main()
