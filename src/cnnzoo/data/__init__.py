"""Datasets for cnnzoo: decode once into a uint8 memmap cache, then augment whole batches at a time.

    from cnnzoo.data import load_dataset, BatchLoader
    splits = load_dataset("digits")                       # or a folder, "cifar10", "synthetic:classes=4"
    loader = BatchLoader(splits.train, 64, augment="light", mean=splits.mean, std=splits.std)
    for epoch in range(3):
        loader.set_epoch(epoch)
        for x, y in loader: ...                           # x float32 [B, 3, H, W], y int64 [B]
"""
from cnnzoo.data.augment import AUGMENT_PRESETS, HorizontalFlip, PadCrop, RandomResizedCrop
from cnnzoo.data.loader import BatchLoader, Loader, epoch_batches
from cnnzoo.data.show import ImageGrid, show_batch, show_mistakes
from cnnzoo.data.sources import default_cache_dir, load_dataset
from cnnzoo.data.splits import DataError, DataSplits, ImageSet, class_index_map
from cnnzoo.preprocessing import RESIZE_MODES

__all__ = ["load_dataset", "BatchLoader", "Loader", "epoch_batches", "DataSplits", "ImageSet", "DataError",
           "AUGMENT_PRESETS", "RESIZE_MODES", "default_cache_dir", "class_index_map", "HorizontalFlip", "PadCrop",
           "RandomResizedCrop", "ImageGrid", "show_batch", "show_mistakes"]
