"""Data sets in ART's layout: scikit-learn's bundled digits (offline, the default), ``.npz`` files,
CIFAR-10/100 python-pickle folders (numpy alone) and ImageNet-style folders (``[vision]`` extra).

Nothing is ever downloaded. ``limit`` (test inputs) and ``train_limit`` (training examples) take
*stratified* subsets (:func:`stratified_indices`): classes interleaved round-robin in a seeded order, so a
small run sees every class even when the files are sorted by class.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import pickle
from dataclasses import dataclass

import numpy as np

from art_smoothing.checks import check_int

__all__ = [
    "Dataset",
    "load_cifar",
    "load_dataset",
    "load_digits_dataset",
    "load_image_folder",
    "load_npz_dataset",
    "stratified_indices",
]

logger = logging.getLogger(__name__)

#: File name endings decoded from ImageNet-style folders (the formats PIL reads; as torchvision's ImageFolder).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass
class Dataset:
    """Arrays in ART's layout: ``x`` float32 (N, C, H, W) in ``clip_values``; ``y`` int64 labels.

    ``classes`` names the classes (index ``i`` is ``classes[i]``) when the source says so, else ``None``."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    nb_classes: int
    clip_values: tuple[float, float] = (0.0, 1.0)
    classes: list[str] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_test.shape[1:])


# ============================================================================================ subsets
def stratified_indices(y, n: int | None, seed: int = 0) -> np.ndarray:
    """Indices of a class-stratified subset of ``n`` of the labels ``y``, in round-robin order.

    Each class's members are shuffled (seeded), the classes are visited in a seeded order, and the
    subset takes one member of every class per round: ``n = 20`` over 10 classes gives 2 per class; when
    ``n`` is not a multiple of the number of classes the first classes of the seeded order get one more;
    a class that runs out drops out of later rounds. The result depends only on ``y`` and ``seed``, and
    a smaller ``n`` gives a prefix of a larger one. ``n = None`` or ``n >= len(y)`` returns
    ``arange(len(y))`` (everything, in its original order).
    """
    y = np.asarray(y).ravel()
    n = check_int("n", n, minimum=1, allow_none=True)
    if n is None or n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    classes, cls = np.unique(y, return_inverse=True)
    visit = rng.permutation(len(classes))  # visit[k] = position of class k in the round-robin order
    rank = np.empty(len(y), dtype=np.int64)  # a member's round: its place in its shuffled class
    for k in range(len(classes)):
        members = np.flatnonzero(cls == k)
        rank[rng.permutation(members)] = np.arange(len(members))
    return np.lexsort((visit[cls], rank))[:n]


def _check_limits(limit, train_limit) -> None:
    for name, value in (("limit", limit), ("train_limit", train_limit)):
        check_int(name, value, minimum=1, allow_none=True)


def _limited(x: np.ndarray, y: np.ndarray, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``x, y`` cut to a stratified subset of ``n`` (unchanged — the same arrays — when ``n`` covers them)."""
    idx = stratified_indices(y, n, seed)
    if len(idx) == len(y):
        return x, y
    return x[idx], y[idx]


def _with_limits(data: Dataset, limit: int | None, train_limit: int | None, seed: int) -> Dataset:
    _check_limits(limit, train_limit)
    data.x_test, data.y_test = _limited(data.x_test, data.y_test, limit, seed)
    data.x_train, data.y_train = _limited(data.x_train, data.y_train, train_limit, seed)
    return data


# ============================================================================================ digits, .npz
def load_digits_dataset(test_fraction: float = 0.2, split_seed: int = 0, limit: int | None = None,
                        train_limit: int | None = None) -> Dataset:
    """scikit-learn's bundled 8×8 digits (1797 images, 10 classes), scaled to [0, 1], shape (N, 1, 8, 8).

    The train/test split is fixed by ``split_seed`` (stratified), so every run sees the same test set.

    :param limit: keep a stratified subset of this many test inputs (:func:`stratified_indices`); ``None``: all.
    :param train_limit: the same for the training set (``limit`` never touches it).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=split_seed, stratify=y)
    data = Dataset("digits", x_tr, y_tr, x_te, y_te, nb_classes=10, classes=[str(c) for c in range(10)])
    return _with_limits(data, limit, train_limit, split_seed)


_NPZ_KEYS = ("x", "y", "x_train", "y_train", "x_test", "y_test")


def _read_npz(path: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """The data arrays of an ``.npz`` file (other arrays are not read) and the names of all its arrays."""
    try:
        with np.load(path) as data:
            names = list(data.files)
            split = {"x_train", "y_train", "x_test", "y_test"} <= set(names)
            wanted = _NPZ_KEYS[2:] if split else _NPZ_KEYS[:2]
            return {k: data[k] for k in wanted if k in names}, names
    except Exception as exc:  # noqa: BLE001 - a damaged zip, a pickled object array, not an .npz at all
        raise ValueError(f"Could not read {path!r} as an .npz file of numeric arrays ({type(exc).__name__}: "
                         f"{exc}). Save it with numpy.savez(path, x=..., y=...).") from None


def _npz_labels(y: np.ndarray, path: str, key: str) -> tuple[np.ndarray, int | None]:
    """Class indices (int64) from whole-number labels or one-hot rows; with the one-hot width (or None)."""
    y = np.asarray(y)
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        raise ValueError(f"{path!r}: {key!r} must hold numeric class labels, got dtype {y.dtype}.")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        one_hot = bool(np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1))
        if not one_hot:
            raise ValueError(f"{path!r}: {key!r} has shape {y.shape}; 2-D labels must be one-hot rows (a single 1, "
                             "zeros elsewhere). Soft labels or scores are not class labels: save indices (N,).")
        return y.argmax(axis=1).astype(np.int64), int(y.shape[1])
    if y.ndim != 1:
        raise ValueError(f"{path!r}: {key!r} must be class indices (N,) or one-hot rows (N, C), got shape {y.shape}.")
    if y.size:
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y))) if np.issubdtype(y.dtype, np.inexact) else []
        if len(bad):
            raise ValueError(f"{path!r}: {key!r} must hold whole-number class indices, but {key}[{bad[0]}] = "
                             f"{y[bad[0]]!r} ({len(bad)} such labels); labels are never rounded or truncated.")
        if y.min() < 0:
            raise ValueError(f"{path!r}: labels must be non-negative class indices, but {key!r} holds {y.min()!r}.")
    return y.astype(np.int64), None


def _npz_inputs(x: np.ndarray, path: str, key: str) -> np.ndarray:
    if not np.issubdtype(x.dtype, np.number) and x.dtype != np.bool_:
        raise ValueError(f"{path!r}: {key!r} must be a numeric array, got dtype {x.dtype}.")
    x = np.asarray(x, dtype=np.float32)
    return x[:, None] if x.ndim == 3 else x


def load_npz_dataset(path: str, test_fraction: float = 0.2, split_seed: int = 0,
                     clip_values: tuple[float, float] = (0.0, 1.0), limit: int | None = None,
                     train_limit: int | None = None) -> Dataset:
    """An ``.npz`` file with arrays ``x`` and ``y`` (split by ``split_seed``) or ``x_train``/``y_train``/
    ``x_test``/``y_test``.

    Inputs (N, C, H, W) are cast to float32; (N, H, W) gets a channel axis. Labels are whole-number class
    indices (N,) — 3.0 is fine, 3.5 or -1 is an error, never truncated — or one-hot rows (N, C), converted
    to indices with ``nb_classes = C``. Otherwise ``nb_classes`` is the largest label + 1.

    :param limit: keep a stratified subset of this many test inputs (:func:`stratified_indices`); ``None``: all.
    :param train_limit: the same for the training set (``limit`` never touches it).
    """
    if not os.path.isfile(path):
        raise ValueError(f"No such .npz file: {path!r}.")
    data, names = _read_npz(path)
    if {"x_train", "y_train", "x_test", "y_test"} <= data.keys():
        parts = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}
    elif {"x", "y"} <= data.keys():
        parts = {"all": ("x", "y")}
    else:
        raise ValueError(f"{path!r} must hold arrays 'x' and 'y' (or x_train/y_train/x_test/y_test); "
                         f"found {sorted(names)}.")
    arrays, widths = {}, set()
    for part, (xk, yk) in parts.items():
        x = _npz_inputs(data[xk], path, xk)
        y, width = _npz_labels(data[yk], path, yk)
        if len(x) != len(y):
            raise ValueError(f"{path!r}: {xk!r} has {len(x)} inputs but {yk!r} has {len(y)} labels.")
        arrays[part] = (x, y)
        widths |= {width} - {None}
    if len(widths) > 1:
        raise ValueError(f"{path!r}: the one-hot labels have different widths {sorted(widths)}.")
    if "all" in arrays:
        x, y = arrays["all"]
        rng = np.random.default_rng(split_seed)
        perm = rng.permutation(len(x))
        n_test = max(1, round(test_fraction * len(x)))
        arrays = {"test": (x[perm[:n_test]], y[perm[:n_test]]), "train": (x[perm[n_test:]], y[perm[n_test:]])}
    (x_tr, y_tr), (x_te, y_te) = arrays["train"], arrays["test"]
    top = max((int(a.max()) + 1 for a in (y_tr, y_te) if a.size), default=0)
    nb_classes = max([top, *widths])
    out = Dataset(os.path.basename(path), x_tr, y_tr, x_te, y_te, nb_classes=nb_classes, clip_values=clip_values)
    return _with_limits(out, limit, train_limit, split_seed)


# ============================================================================================ CIFAR-10/100
# The "python version" of https://www.cs.toronto.edu/~kriz/cifar.html: pickled dicts with bytes keys.
_CIFAR = {
    "cifar10": {"folder": "cifar-10-batches-py", "meta": "batches.meta", "test": ["test_batch"],
                "train": [f"data_batch_{i}" for i in range(1, 6)]},
    "cifar100": {"folder": "cifar-100-python", "meta": "meta", "test": ["test"], "train": ["train"]},
}
_CIFAR_SIDE = 32


def _cifar_kind(folder: str) -> str | None:
    """``"cifar10"``/``"cifar100"`` when ``folder`` itself looks like a CIFAR python folder, else None."""
    def has(name):
        return os.path.isfile(os.path.join(folder, name))

    if has("batches.meta") or has("test_batch") or has("data_batch_1"):
        return "cifar10"
    if has("meta") and (has("train") or has("test")):
        return "cifar100"
    return None


def _find_cifar_folder(root: str) -> tuple[str, str] | None:
    """``(kind, folder)`` for a CIFAR python folder at ``root`` or directly under it, else None."""
    kind = _cifar_kind(root)
    if kind is not None:
        return kind, root
    found = [(k, os.path.join(root, spec["folder"])) for k, spec in _CIFAR.items()
             if os.path.isdir(os.path.join(root, spec["folder"]))]
    if len(found) > 1:
        raise ValueError(f"{root!r} holds both {found[0][1]!r} and {found[1][1]!r}: pass the folder you mean.")
    return found[0] if found else None


def _unpickle(path: str) -> dict:
    try:
        with open(path, "rb") as fh:
            obj = pickle.load(fh, encoding="bytes")
    except Exception as exc:  # noqa: BLE001 - truncated, not a pickle, a pickle of a class we do not have, ...
        raise ValueError(f"{path!r} is not a readable CIFAR python batch ({type(exc).__name__}: {exc}); expected a "
                         "pickled dict as in the 'python version' of CIFAR-10/100.") from None
    if not isinstance(obj, dict):
        msg = f"{path!r} holds a pickled {type(obj).__name__}; a CIFAR python batch is a dict."
        raise ValueError(msg)  # noqa: TRY004 - a foreign file is bad input, like every other check here
    return {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}


def _keys(d: dict) -> str:
    return ", ".join(sorted(map(repr, d))) or "none"


def _cifar_names(path: str, key: bytes, expected: int) -> list[str]:
    meta = _unpickle(path)
    names = meta.get(key)
    if not isinstance(names, (list, tuple)) or len(names) != expected:
        got = f"{len(names)} entries" if isinstance(names, (list, tuple)) else f"keys {_keys(meta)}"
        raise ValueError(f"{path!r}: expected {key!r} with {expected} class names, got {got}.")
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]


def _cifar_batch(path: str, label_key: bytes, nb_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    if b"data" not in batch or label_key not in batch:
        raise ValueError(f"{path!r} has keys {_keys(batch)}; a CIFAR batch needs b'data' and "
                         f"{label_key!r}.")
    x = batch[b"data"]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * _CIFAR_SIDE ** 2:
        got = f"{x.dtype} array of shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"{path!r}: b'data' must be a uint8 array (N, 3072) — R, G, B planes of 32×32 — got {got}.")
    try:
        y = np.asarray(batch[label_key])
    except Exception:  # noqa: BLE001 - ragged or odd objects: reported as bad labels just below
        y = np.asarray([None])
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or (
            y.size and (y.min() < 0 or y.max() >= nb_classes)):
        raise ValueError(f"{path!r}: {label_key!r} must hold {len(x)} integer labels in 0..{nb_classes - 1}.")
    return x, y.astype(np.int64)


def load_cifar(root: str, limit: int | None = None, train_limit: int | None = None, split_seed: int = 0,
               image_size: int | None = 32, cifar100_labels: str = "fine") -> Dataset:
    """CIFAR-10 (``cifar-10-batches-py``) or CIFAR-100 (``cifar-100-python``) in the python-pickle format,
    read with numpy alone (no torchvision, no checksum). ``root`` is that folder or its parent.

    Images are scaled to [0, 1] float32 in ART's layout (N, 3, 32, 32); the official train/test split is
    kept. The files are read with :func:`pickle.load`, which can run any code a crafted file holds: point
    it only at your own local copy of the data set (nothing is downloaded, no checksum is needed or
    checked). Damaged or foreign files raise a :class:`ValueError` naming the file and what was expected.

    :param image_size: must be 32 (or None). CIFAR is not resampled: a certified radius is a statement
        about the classifier's input pixels, and one on upsampled images is not one on CIFAR's; resize
        yourself (e.g. ``torch.nn.functional.interpolate``) and save an ``.npz`` if you need other sizes.
    :param limit: keep a stratified subset of this many test images (:func:`stratified_indices`); ``None``: all.
    :param train_limit: the same for the training images (``limit`` never touches them).
    :param cifar100_labels: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses); CIFAR-100 only.
    """
    if image_size is not None and image_size != _CIFAR_SIDE:
        raise ValueError(f"CIFAR images are 32×32 and are not resampled: image_size must be 32, got {image_size!r} "
                         "(resize the arrays yourself and save them as an .npz to use another size).")
    if cifar100_labels not in ("fine", "coarse"):
        raise ValueError(f"cifar100_labels must be 'fine' or 'coarse', got {cifar100_labels!r}.")
    _check_limits(limit, train_limit)
    if not os.path.isdir(root):
        raise ValueError(f"No such folder: {root!r}.")
    found = _find_cifar_folder(root)
    if found is None:
        raise ValueError(f"{root!r} is not a CIFAR python folder: expected 'cifar-10-batches-py' or "
                         "'cifar-100-python' (or their contents).")
    kind, folder = found
    spec = _CIFAR[kind]
    missing = [f for f in [spec["meta"], *spec["train"], *spec["test"]] if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        raise ValueError(f"The CIFAR folder {folder!r} lacks {missing}; it needs {spec['train'] + spec['test']} and "
                         f"{spec['meta']!r} (the 'python version' of the data set).")
    if kind == "cifar10":
        label_key, names_key, nb_classes = b"labels", b"label_names", 10
    else:
        label_key, names_key = (b"fine_labels", b"fine_label_names") if cifar100_labels == "fine" else \
            (b"coarse_labels", b"coarse_label_names")
        nb_classes = 100 if cifar100_labels == "fine" else 20
    classes = _cifar_names(os.path.join(folder, spec["meta"]), names_key, nb_classes)

    def split(files, n):
        xs, ys = zip(*(_cifar_batch(os.path.join(folder, f), label_key, nb_classes) for f in files))
        x, y = np.concatenate(xs), np.concatenate(ys)
        idx = stratified_indices(y, n, split_seed)
        if len(idx) < len(y):
            x, y = x[idx], y[idx]
        x = x.reshape(-1, 3, _CIFAR_SIDE, _CIFAR_SIDE).astype(np.float32)
        x /= np.float32(255.0)  # in place: the full training set is 600 MB in float32
        return x, y

    x_tr, y_tr = split(spec["train"], train_limit)
    x_te, y_te = split(spec["test"], limit)
    name = kind if kind == "cifar10" or cifar100_labels == "fine" else "cifar100-coarse"
    return Dataset(name, x_tr, y_tr, x_te, y_te, nb_classes=nb_classes, classes=classes)


# ============================================================================================ ImageNet-style
def _image_files(folder: str) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        out += [os.path.join(dirpath, f) for f in sorted(filenames)
                if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")]
    return out


def _class_dirs(folder: str) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _list_image_folder(root: str) -> tuple[list[str], tuple[list[str], np.ndarray], tuple[list[str], np.ndarray]]:
    """Class names and ``(files, labels)`` of ``root/train`` and ``root/val`` (class = sub-folder name,
    indexed in sorted order of the training folders; nothing is decoded)."""
    train_dir, val_dir = os.path.join(root, "train"), os.path.join(root, "val")
    classes = _class_dirs(train_dir)
    if not classes:
        raise ValueError(f"{train_dir!r} has no class sub-folders: expected train/<class>/<image files>.")
    extra = sorted(set(_class_dirs(val_dir)) - set(classes))
    if extra:
        raise ValueError(f"{val_dir!r} has classes that {train_dir!r} lacks: {extra[:5]}"
                         f"{' ...' if len(extra) > 5 else ''}.")
    parts = []
    for top in (train_dir, val_dir):
        files, labels = [], []
        for k, c in enumerate(classes):
            found = _image_files(os.path.join(top, c)) if os.path.isdir(os.path.join(top, c)) else []
            if not found and top == train_dir:
                raise ValueError(f"The class folder {os.path.join(top, c)!r} holds no images "
                                 f"({', '.join(IMAGE_EXTENSIONS)}).")
            files += found
            labels += [k] * len(found)
        if not files:
            raise ValueError(f"{top!r} holds no images ({', '.join(IMAGE_EXTENSIONS)}) in its class folders.")
        parts.append((files, np.asarray(labels, dtype=np.int64)))
    return classes, parts[0], parts[1]


def _installed(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _torchvision_help(torch_version: str | None) -> str:
    """How to add a torchvision that matches the installed torch without pip replacing that torch."""
    if torch_version is None:
        return "Install torch and the torchvision release built for it (pip install 'art_smoothing[vision]')."
    base = torch_version.split("+")[0]
    major, minor = (base.split(".") + ["0"])[:2]
    # torch 2.m pairs with torchvision 0.(m+15) (2.1 ↔ 0.16, ..., 2.14 ↔ 0.29): a hint, the table is the authority.
    guess = f"0.{int(minor) + 15}.*" if major == "2" and minor.isdigit() else "<the release for your torch>"
    index = " --index-url https://download.pytorch.org/whl/cpu" if torch_version.endswith("+cpu") else ""
    return (f"torch {torch_version} is installed: add the torchvision release built for torch {base} (normally "
            f"torchvision {guess}; see https://github.com/pytorch/vision#installation) without letting pip "
            f"replace torch: pip install 'torchvision=={guess}' --no-deps{index} — or pin both: pip install "
            f"'torch=={base}' 'torchvision=={guess}'{index}. (A bare pip install 'art_smoothing[vision]' may pick "
            "a newer torchvision and replace torch.) CIFAR-10/100 folders and .npz files need no torchvision.")


def _import_torchvision():
    """``(transforms, default_loader)`` from torchvision, or one clear ValueError however the import fails."""
    try:
        from torchvision import transforms
        from torchvision.datasets.folder import default_loader
    except Exception as exc:  # noqa: BLE001 - absent, or built for another torch (RuntimeError, AttributeError, ...)
        if isinstance(exc, ModuleNotFoundError) and exc.name == "torchvision":
            what = "torchvision (the [vision] extra), which is not installed"
        else:
            version = _installed("torchvision")
            what = (f"torchvision, but importing torchvision{' ' + version if version else ''} failed with "
                    f"{type(exc).__name__}: {exc} — usually a torchvision built for another torch")
        raise ValueError(f"ImageNet-style folders need {what}. {_torchvision_help(_installed('torch'))}") from None
    return transforms, default_loader


def _decode(files: list[str], image_size: int, transforms, loader) -> np.ndarray:
    tf = transforms.Compose([transforms.Resize(image_size), transforms.CenterCrop(image_size),
                             transforms.ToTensor()])
    out = np.empty((len(files), 3, image_size, image_size), dtype=np.float32)
    for i, path in enumerate(files):
        try:
            out[i] = tf(loader(path)).numpy()
        except Exception as exc:  # noqa: BLE001 - PIL raises many kinds for a damaged image
            raise ValueError(f"Could not decode the image {path!r} ({type(exc).__name__}: {exc}).") from None
    return out


def load_image_folder(root: str, image_size: int = 32, limit: int | None = None, train_limit: int | None = None,
                      split_seed: int = 0, cifar100_labels: str = "fine") -> Dataset:
    """A folder on disk (never downloaded): CIFAR-10/100 python folders (see :func:`load_cifar`, numpy
    alone) or an ImageNet-style folder ``root/train/<class>/*`` and ``root/val/<class>/*``.

    ImageNet-style folders need torchvision (the ``[vision]`` extra): each image is decoded as RGB,
    resized so its short side is ``image_size``, centre-cropped to ``image_size``² and scaled to [0, 1]
    (N, 3, image_size, image_size). Classes are the sorted sub-folders of ``train/``; ``val/`` may lack
    some but not add others. Only the selected files are decoded.

    :param limit: keep a stratified subset of this many test inputs (:func:`stratified_indices`); ``None``: all.
    :param train_limit: the same for the training set (``limit`` never touches it).
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise ValueError(f"No such folder: {root!r}. Put CIFAR-10/100 ('cifar-10-batches-py', 'cifar-100-python') "
                         "or an ImageNet-style folder with train/ and val/ there; nothing is downloaded.")
    if _find_cifar_folder(root) is not None:
        return load_cifar(root, limit=limit, train_limit=train_limit, split_seed=split_seed, image_size=image_size,
                          cifar100_labels=cifar100_labels)
    if not (os.path.isdir(os.path.join(root, "train")) and os.path.isdir(os.path.join(root, "val"))):
        raise ValueError(f"{root!r} holds neither 'cifar-10-batches-py' nor train/ and val/ folders (nor "
                         "'cifar-100-python'): pass a CIFAR-10/100 python folder or its parent, or an ImageNet-style "
                         "folder with train/<class>/* and val/<class>/*.")
    _check_limits(limit, train_limit)
    image_size = check_int("image_size", image_size, minimum=1)
    transforms, loader = _import_torchvision()  # before walking what may be a million files
    classes, (f_tr, y_tr), (f_te, y_te) = _list_image_folder(root)
    i_tr, i_te = stratified_indices(y_tr, train_limit, split_seed), stratified_indices(y_te, limit, split_seed)
    logger.info("Decoding %d training and %d test images from %s.", len(i_tr), len(i_te), root)
    x_tr = _decode([f_tr[i] for i in i_tr], image_size, transforms, loader)
    x_te = _decode([f_te[i] for i in i_te], image_size, transforms, loader)
    return Dataset(os.path.basename(os.path.normpath(root)), x_tr, y_tr[i_tr], x_te, y_te[i_te],
                   nb_classes=len(classes), classes=classes)


# ============================================================================================ entry point
def load_dataset(spec: str = "digits", *, limit: int | None = None, train_limit: int | None = None,
                 image_size: int | None = 32, split_seed: int = 0, test_fraction: float = 0.2,
                 cifar100_labels: str = "fine") -> Dataset:
    """``"digits"`` (default), a path to an ``.npz`` file, or a folder of images (CIFAR-10/100 or
    ImageNet-style); see :func:`load_digits_dataset`, :func:`load_npz_dataset`, :func:`load_image_folder`.

    :param limit: number of test inputs, a stratified subset (:func:`stratified_indices`); ``None``: all.
    :param train_limit: number of training examples, likewise; ``limit`` never touches the training set.
    :param image_size: side of images decoded from ImageNet-style folders (CIFAR: must be 32; ignored for
        digits and ``.npz``, whose arrays are used as they are).
    :param split_seed: seeds the digits and ``x``/``y`` ``.npz`` train/test split and the stratified subsets.
    :param test_fraction: test share of a split (digits, ``x``/``y`` ``.npz``; folders have their own split).
    :param cifar100_labels: ``"fine"`` or ``"coarse"`` labels for a CIFAR-100 folder.
    """
    spec = os.fspath(spec)
    _check_limits(limit, train_limit)
    if spec == "digits":
        return load_digits_dataset(test_fraction, split_seed, limit=limit, train_limit=train_limit)
    if spec.endswith(".npz"):
        return load_npz_dataset(spec, test_fraction, split_seed, limit=limit, train_limit=train_limit)
    if os.path.isdir(spec):
        return load_image_folder(spec, image_size=32 if image_size is None else image_size, limit=limit,
                                 train_limit=train_limit, split_seed=split_seed, cifar100_labels=cifar100_labels)
    raise ValueError(f"Unknown data set {spec!r}: use 'digits', a .npz file with x/y arrays, or an image folder.")
