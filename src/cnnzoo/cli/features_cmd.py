"""Pooled features (what the classifier reads) of every image of a data set, saved as .npz, with
labels, class names and, for image folders, file names: for scikit-learn or a nearest-neighbour search.

examples:
  cnnzoo features resnet18 --weights torchvision --data photos/ --out photos.npz
  cnnzoo features runs/resnet18-digits/best.pt --out digits.npz        # the data it was trained on
  cnnzoo features best.pt --data holdout/ --split val --out holdout.npz

In Python: f = np.load("photos.npz"); f["train_features"], f["train_labels"], f["class_names"].
"""
from __future__ import annotations

import argparse

from cnnzoo.cli.common import add_model_arguments, model_overrides
from cnnzoo.training.features import SPLITS, extract_features

HELP = "pooled features of every image (a checkpoint or a pretrained model) -> .npz"
TAKES_MODEL_OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="CKPT_OR_NAME",
                        help="a checkpoint written by `cnnzoo train`, or a model name (with --weights)")
    parser.add_argument("--data", help="an image folder, 'digits', 'cifar10'... (default for a checkpoint: "
                                       "the data it was trained on)")
    parser.add_argument("--out", required=True, metavar="FILE.npz", help="where to write the features")
    parser.add_argument("--weights", help="for a model name: 'torchvision' (alias 'imagenet'), 'keras' (Keras' "
                                          "published file) or a weights file (.pt, .pth, Keras' .h5)")
    parser.add_argument("--split", choices=SPLITS, help="only this split (default: every split of the data)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    parser.add_argument("--image-size", type=int,
                        help="image side in pixels (default: the checkpoint's or the weights', else the data's)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--cache-dir", help="where prepared image folders are cached (default ~/.cache/cnnzoo)")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    features = extract_features(args.model, args.data, weights=args.weights, split=args.split,
                                batch_size=args.batch_size, image_size=args.image_size, device=args.device,
                                cache_dir=args.cache_dir, **model_overrides(args))
    path = features.save(args.out)
    print(f"wrote {path}: {features.summary()}")
    return 0
