"""Data sets: scikit-learn's bundled digits (offline, the default), ``.npz`` files, and image folders
through torchvision (optional ``[vision]`` extra, files already on disk, never downloaded)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

__all__ = ["Dataset", "load_dataset", "load_digits_dataset", "load_image_folder", "load_npz_dataset"]


@dataclass
class Dataset:
    """Arrays in ART's layout: ``x`` float32 (N, C, H, W) in ``clip_values``; ``y`` int64 labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    nb_classes: int
    clip_values: tuple[float, float] = (0.0, 1.0)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_test.shape[1:])


def load_digits_dataset(test_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8×8 digits (1797 images, 10 classes), scaled to [0, 1], shape (N, 1, 8, 8).

    The train/test split is fixed by ``split_seed`` (stratified), so every run sees the same test set.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=split_seed, stratify=y)
    return Dataset("digits", x_tr, y_tr, x_te, y_te, nb_classes=10)


def load_npz_dataset(path: str, test_fraction: float = 0.2, split_seed: int = 0,
                     clip_values: tuple[float, float] = (0.0, 1.0)) -> Dataset:
    """An ``.npz`` file with arrays ``x`` and ``y`` (or ``x_train``/``y_train``/``x_test``/``y_test``)."""
    if not os.path.isfile(path):
        raise ValueError(f"No such .npz file: {path!r}.")
    with np.load(path) as data:
        keys = set(data.files)
        if {"x_train", "y_train", "x_test", "y_test"} <= keys:
            x_tr, y_tr = data["x_train"], data["y_train"]
            x_te, y_te = data["x_test"], data["y_test"]
        elif {"x", "y"} <= keys:
            x, y = data["x"], data["y"]
            rng = np.random.default_rng(split_seed)
            perm = rng.permutation(len(x))
            n_test = max(1, int(round(test_fraction * len(x))))
            x_te, y_te, x_tr, y_tr = x[perm[:n_test]], y[perm[:n_test]], x[perm[n_test:]], y[perm[n_test:]]
        else:
            raise ValueError(f"{path!r} must hold arrays 'x' and 'y' (or x_train/y_train/x_test/y_test); "
                             f"found {sorted(keys)}.")
    def fix(a):
        a = np.asarray(a, dtype=np.float32)
        return a[:, None] if a.ndim == 3 else a
    y_all = np.concatenate([np.asarray(y_tr).ravel(), np.asarray(y_te).ravel()]).astype(np.int64)
    if y_all.size and y_all.min() < 0:
        raise ValueError("Labels must be non-negative class indices.")
    return Dataset(os.path.basename(path), fix(x_tr), np.asarray(y_tr, np.int64).ravel(), fix(x_te),
                   np.asarray(y_te, np.int64).ravel(), nb_classes=int(y_all.max()) + 1, clip_values=clip_values)


def load_image_folder(root: str, image_size: int = 32, limit: int | None = None) -> Dataset:
    """CIFAR-10 (torchvision's ``cifar-10-batches-py`` folder under ``root``) or an ImageNet-style folder
    (``root/train/<class>/*``, ``root/val/<class>/*``). Needs the ``[vision]`` extra; never downloads."""
    try:
        import torchvision  # noqa: F401
        from torchvision import datasets, transforms
    except ImportError:
        raise ValueError("Image folders need torchvision: pip install 'art_smoothing[vision]'.") from None
    if not os.path.isdir(root):
        raise ValueError(f"No such folder: {root!r}. Put CIFAR-10 ('cifar-10-batches-py') or an ImageNet-style "
                         "folder with train/ and val/ there; nothing is downloaded.")
    tf = transforms.Compose([transforms.Resize(image_size), transforms.CenterCrop(image_size), transforms.ToTensor()])
    if os.path.isdir(os.path.join(root, "cifar-10-batches-py")):
        train = datasets.CIFAR10(root, train=True, download=False, transform=tf)
        test = datasets.CIFAR10(root, train=False, download=False, transform=tf)
        name = "cifar10"
    elif os.path.isdir(os.path.join(root, "train")) and os.path.isdir(os.path.join(root, "val")):
        train = datasets.ImageFolder(os.path.join(root, "train"), transform=tf)
        test = datasets.ImageFolder(os.path.join(root, "val"), transform=tf)
        name = os.path.basename(os.path.normpath(root))
    else:
        raise ValueError(f"{root!r} holds neither 'cifar-10-batches-py' nor train/ and val/ folders.")

    def stack(ds):
        n = len(ds) if limit is None else min(limit, len(ds))
        xs, ys = zip(*(ds[i] for i in range(n)))
        return np.stack([t.numpy() for t in xs]).astype(np.float32), np.asarray(ys, dtype=np.int64)

    x_tr, y_tr = stack(train)
    x_te, y_te = stack(test)
    return Dataset(name, x_tr, y_tr, x_te, y_te, nb_classes=len(train.classes))


def load_dataset(spec: str = "digits", **kwargs) -> Dataset:
    """``"digits"`` (default), a path to an ``.npz`` file, or a folder of images."""
    if spec == "digits":
        return load_digits_dataset(**{k: v for k, v in kwargs.items() if k in ("test_fraction", "split_seed")})
    if spec.endswith(".npz"):
        return load_npz_dataset(spec, **{k: v for k, v in kwargs.items() if k in ("test_fraction", "split_seed")})
    if os.path.isdir(spec):
        return load_image_folder(spec, **{k: v for k, v in kwargs.items() if k in ("image_size", "limit")})
    raise ValueError(f"Unknown data set {spec!r}: use 'digits', a .npz file with x/y arrays, or an image folder.")
