"""The built-in datasets, registered exactly as a plugin's would be. A dataset name is written with '-'
in configs (`fashion-mnist`); the registry, like every registry, also takes `fashion_mnist`."""

from __future__ import annotations

from mnistres.api import DatasetFiles
from mnistres.registry import datasets


@datasets.register("mnist", help="handwritten digits (LeCun et al.): 60,000 training and 10,000 test images")
def mnist() -> DatasetFiles:
    return DatasetFiles(folder="MNIST", mean=0.1307, std=0.3081, download="MNIST")


@datasets.register("fashion-mnist", help="Zalando's clothing images (Xiao et al., 2017), in MNIST's format")
def fashion_mnist() -> DatasetFiles:
    return DatasetFiles(folder="FashionMNIST", mean=0.2860, std=0.3530, download="FashionMNIST")
