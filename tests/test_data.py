"""Data loading: digits, .npz labels, CIFAR-10/100 pickle folders (numpy alone), ImageNet-style folders,
and the stratified ``limit``/``train_limit`` subsets. Every test writes its own files."""

import os
import pickle
import sys
import textwrap

import numpy as np
import pytest

from art_smoothing.data import (
    load_cifar,
    load_dataset,
    load_digits_dataset,
    load_image_folder,
    load_npz_dataset,
    stratified_indices,
)

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ============================================================================================ writers
def _pickle(path, obj):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


def _batch(rng, n, nb_classes, label_keys):
    """A batch in CIFAR's python layout: uint8 (n, 3072) and *class-sorted* labels (as lists, like the real files)."""
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = {key: list(np.sort(np.arange(n) % k).tolist()) for key, k in label_keys.items()}
    return {b"batch_label": b"testing", b"data": data, **labels}


def write_cifar10(parent, seed=0, per_batch=20, n_test=20):
    """parent/cifar-10-batches-py with 5 training batches and a test batch; returns (folder, train, test) where
    train/test are (uint8 data, labels) as written."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(parent, "cifar-10-batches-py")
    os.makedirs(folder)
    train = [_batch(rng, per_batch, 10, {b"labels": 10}) for _ in range(5)]
    for i, b in enumerate(train, 1):
        _pickle(os.path.join(folder, f"data_batch_{i}"), b)
    test = _batch(rng, n_test, 10, {b"labels": 10})
    _pickle(os.path.join(folder, "test_batch"), test)
    _pickle(os.path.join(folder, "batches.meta"),
            {b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_cases_per_batch": per_batch, b"num_vis": 3072})
    x_tr = np.concatenate([b[b"data"] for b in train])
    y_tr = np.concatenate([b[b"labels"] for b in train])
    return folder, (x_tr, y_tr), (test[b"data"], np.asarray(test[b"labels"]))


def write_cifar100(parent, seed=1, n_train=200, n_test=100):
    rng = np.random.default_rng(seed)
    folder = os.path.join(parent, "cifar-100-python")
    os.makedirs(folder)
    train = _batch(rng, n_train, 100, {b"fine_labels": 100, b"coarse_labels": 20})
    test = _batch(rng, n_test, 100, {b"fine_labels": 100, b"coarse_labels": 20})
    _pickle(os.path.join(folder, "train"), train)
    _pickle(os.path.join(folder, "test"), test)
    _pickle(os.path.join(folder, "meta"), {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                                           b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]})
    return folder, train, test


def as_images(data):
    """What the loader must return for CIFAR bytes: R, G, B planes of 32×32, scaled to [0, 1] float32."""
    return data.reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255.0)


# ============================================================================================ stratified subsets
def test_stratified_indices_interleaves_classes_evenly():
    y = np.repeat(np.arange(10), 30)  # class-sorted, as folders are
    idx = stratified_indices(y, 20, seed=0)
    assert len(set(idx.tolist())) == 20
    assert np.bincount(y[idx], minlength=10).tolist() == [2] * 10
    first_round = y[idx[:10]]
    assert sorted(first_round.tolist()) == list(range(10))  # round-robin: every class once per round
    uneven = np.bincount(y[stratified_indices(y, 25, seed=0)], minlength=10)
    assert sorted(uneven.tolist()) == [2] * 5 + [3] * 5


def test_stratified_indices_deterministic_nested_and_seeded():
    y = np.random.default_rng(3).integers(0, 7, size=500)
    a, b = stratified_indices(y, 40, seed=5), stratified_indices(y, 40, seed=5)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(stratified_indices(y, 15, seed=5), a[:15])  # a smaller limit is a prefix
    assert not np.array_equal(stratified_indices(y, 40, seed=6), a)


def test_stratified_indices_exhausted_class_and_everything():
    y = np.array([0] * 10 + [1] * 2 + [2] * 10)
    counts = np.bincount(y[stratified_indices(y, 12, seed=0)], minlength=3)
    assert counts[1] == 2 and counts.sum() == 12 and abs(int(counts[0]) - int(counts[2])) <= 1
    np.testing.assert_array_equal(stratified_indices(y, None), np.arange(len(y)))
    np.testing.assert_array_equal(stratified_indices(y, len(y) + 5), np.arange(len(y)))


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True])
def test_stratified_indices_refuses_bad_sizes(bad):
    with pytest.raises(ValueError, match="integer >= 1"):
        stratified_indices(np.arange(5), bad)


# ============================================================================================ digits
def test_digits_default_is_unchanged():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]
    x_tr, x_te, y_tr, y_te = train_test_split(x, bunch.target.astype(np.int64), test_size=0.2, random_state=0,
                                              stratify=bunch.target)
    data = load_dataset("digits")
    for got, want in ((data.x_train, x_tr), (data.y_train, y_tr), (data.x_test, x_te), (data.y_test, y_te)):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()  # bit-identical: cached models are keyed by these arrays
    assert data.nb_classes == 10 and data.classes == [str(i) for i in range(10)]


def test_digits_limit_is_stratified_and_leaves_training_alone():
    full = load_digits_dataset()
    data = load_dataset("digits", limit=20)
    assert np.bincount(data.y_test, minlength=10).tolist() == [2] * 10
    assert data.x_train.tobytes() == full.x_train.tobytes() and data.y_train.tobytes() == full.y_train.tobytes()
    idx = stratified_indices(full.y_test, 20, seed=0)
    np.testing.assert_array_equal(data.x_test, full.x_test[idx])
    np.testing.assert_array_equal(data.y_test, full.y_test[idx])
    again = load_dataset("digits", limit=20)
    np.testing.assert_array_equal(again.x_test, data.x_test)


def test_digits_train_limit_is_stratified_and_leaves_test_alone():
    full = load_digits_dataset()
    data = load_dataset("digits", train_limit=30)
    assert np.bincount(data.y_train, minlength=10).tolist() == [3] * 10
    assert data.x_test.tobytes() == full.x_test.tobytes()
    assert load_dataset("digits", limit=10_000).x_test.tobytes() == full.x_test.tobytes()  # limit >= N: all


@pytest.mark.parametrize("kwargs", [{"limit": 0}, {"train_limit": -3}, {"limit": 1.5}])
def test_load_dataset_refuses_bad_limits(kwargs):
    with pytest.raises(ValueError, match="limit must be an integer >= 1 or None"):
        load_dataset("digits", **kwargs)


def test_load_dataset_unknown_spec():
    with pytest.raises(ValueError, match="Unknown data set"):
        load_dataset("no-such-thing")


# ============================================================================================ .npz
def _npz(tmp_path, name="d.npz", **arrays):
    path = str(tmp_path / name)
    np.savez(path, **arrays)
    return path


def test_npz_default_split_is_unchanged(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((50, 1, 4, 4)).astype(np.float32)
    y = np.arange(50) % 5
    data = load_npz_dataset(_npz(tmp_path, x=x, y=y))
    perm = np.random.default_rng(0).permutation(50)
    assert data.x_test.tobytes() == x[perm[:10]].tobytes() and data.x_train.tobytes() == x[perm[10:]].tobytes()
    assert data.y_test.dtype == np.int64 and data.y_test.tolist() == y[perm[:10]].tolist()
    assert data.nb_classes == 5 and data.input_shape == (1, 4, 4)


def test_npz_non_integer_labels_are_refused(tmp_path):
    path = _npz(tmp_path, x=np.zeros((4, 1, 2, 2)), y=np.array([0.0, 1.0, 3.5, 2.0]))
    with pytest.raises(ValueError, match=r"whole-number class indices.*3\.5.*never rounded or truncated"):
        load_dataset(path)


def test_npz_whole_float_labels_are_fine(tmp_path):
    data = load_dataset(_npz(tmp_path, x_train=np.zeros((3, 1, 2, 2)), y_train=np.array([0.0, 1.0, 2.0]),
                             x_test=np.zeros((2, 1, 2, 2)), y_test=np.array([[2.0], [1.0]])))
    assert data.y_train.dtype == np.int64 and data.y_train.tolist() == [0, 1, 2] and data.y_test.tolist() == [2, 1]


def test_npz_one_hot_labels_become_indices(tmp_path):
    labels = np.array([0, 3, 1, 3, 0, 1])
    one_hot = np.eye(5, dtype=np.float32)[labels]  # 5 columns although only 0, 1, 3 occur
    data = load_dataset(_npz(tmp_path, x_train=np.zeros((6, 1, 2, 2)), y_train=one_hot,
                             x_test=np.zeros((2, 1, 2, 2)), y_test=np.eye(5, dtype=np.uint8)[[4, 2]]))
    assert data.y_train.tolist() == labels.tolist() and data.y_test.tolist() == [4, 2]
    assert data.nb_classes == 5


def test_npz_soft_labels_and_bad_shapes_are_refused(tmp_path):
    soft = np.array([[0.7, 0.3], [0.2, 0.8]])
    with pytest.raises(ValueError, match="one-hot rows"):
        load_dataset(_npz(tmp_path, "a.npz", x=np.zeros((2, 1, 2, 2)), y=soft))
    with pytest.raises(ValueError, match="different widths"):
        load_dataset(_npz(tmp_path, "b.npz", x_train=np.zeros((2, 4)), y_train=np.eye(3)[[0, 1]],
                          x_test=np.zeros((2, 4)), y_test=np.eye(4)[[0, 1]]))
    with pytest.raises(ValueError, match="3 inputs but 'y' has 2 labels"):
        load_dataset(_npz(tmp_path, "c.npz", x=np.zeros((3, 1, 2, 2)), y=np.array([0, 1])))
    with pytest.raises(ValueError, match="non-negative"):
        load_dataset(_npz(tmp_path, "d.npz", x=np.zeros((3, 1, 2, 2)), y=np.array([0, -1, 1])))
    with pytest.raises(ValueError, match="numeric class labels"):
        load_dataset(_npz(tmp_path, "e.npz", x=np.zeros((2, 1, 2, 2)), y=np.array(["cat", "dog"])))


def test_npz_damaged_file(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"this is not a zip archive")
    with pytest.raises(ValueError, match="Could not read .*broken.npz"):
        load_dataset(str(path))


def test_npz_limits_are_stratified(tmp_path):
    rng = np.random.default_rng(1)
    x_tr, y_tr = rng.random((60, 1, 3, 3)), np.repeat(np.arange(4), 15)
    x_te, y_te = rng.random((40, 1, 3, 3)), np.repeat(np.arange(4), 10)
    path = _npz(tmp_path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    data = load_dataset(path, limit=8)
    assert np.bincount(data.y_test).tolist() == [2, 2, 2, 2]
    assert data.x_train.tobytes() == x_tr.astype(np.float32).tobytes()
    idx = stratified_indices(y_te, 8, seed=0)
    np.testing.assert_array_equal(data.x_test, x_te[idx].astype(np.float32))
    assert np.bincount(load_dataset(path, train_limit=12).y_train).tolist() == [3, 3, 3, 3]


# ============================================================================================ CIFAR
@pytest.fixture
def no_torchvision(monkeypatch):
    """torchvision made unimportable (whether or not it is installed)."""
    monkeypatch.setitem(sys.modules, "torchvision", None)


def test_cifar10_loads_with_numpy_alone(tmp_path, no_torchvision):
    folder, (x_tr, y_tr), (x_te, y_te) = write_cifar10(str(tmp_path))
    for spec in (folder, str(tmp_path)):  # the folder itself or its parent
        data = load_dataset(spec)
        assert data.name == "cifar10" and data.nb_classes == 10 and data.classes == CIFAR10_NAMES
        assert data.x_train.shape == (100, 3, 32, 32) and data.x_test.shape == (20, 3, 32, 32)
        assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
        np.testing.assert_array_equal(data.x_train, as_images(x_tr))
        np.testing.assert_array_equal(data.x_test, as_images(x_te))
        np.testing.assert_array_equal(data.y_train, y_tr)
        np.testing.assert_array_equal(data.y_test, y_te)
        assert data.clip_values == (0.0, 1.0) and 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0


def test_cifar10_channel_layout(tmp_path):
    folder, (x_tr, _), _ = write_cifar10(str(tmp_path))
    data = load_cifar(folder)
    # byte 1024·c + 32·row + col of an image is channel c (R, G, B) at (row, col)
    for i, c, r, col in [(0, 0, 0, 0), (7, 1, 5, 31), (99, 2, 31, 3), (42, 2, 17, 17)]:
        assert data.x_train[i, c, r, col] == np.float32(x_tr[i, 1024 * c + 32 * r + col]) / np.float32(255)


def test_cifar10_limits_are_stratified_and_separate(tmp_path):
    folder, (x_tr, y_tr), (x_te, y_te) = write_cifar10(str(tmp_path))
    data = load_dataset(folder, limit=10, split_seed=3)
    assert np.bincount(data.y_test, minlength=10).tolist() == [1] * 10  # the test batch is class-sorted
    np.testing.assert_array_equal(data.x_train, as_images(x_tr))  # limit never touches the training set
    idx = stratified_indices(y_te, 10, seed=3)
    np.testing.assert_array_equal(data.x_test, as_images(x_te)[idx])
    np.testing.assert_array_equal(load_dataset(folder, limit=10, split_seed=3).x_test, data.x_test)
    small = load_dataset(folder, train_limit=30)
    assert np.bincount(small.y_train, minlength=10).tolist() == [3] * 10
    np.testing.assert_array_equal(small.x_test, as_images(x_te))
    np.testing.assert_array_equal(small.x_train, as_images(x_tr)[stratified_indices(y_tr, 30, seed=0)])


def test_cifar100_fine_and_coarse(tmp_path, no_torchvision):
    folder, train, test = write_cifar100(str(tmp_path))
    data = load_dataset(str(tmp_path))
    assert data.name == "cifar100" and data.nb_classes == 100 and data.classes[7] == "fine7"
    np.testing.assert_array_equal(data.x_train, as_images(train[b"data"]))
    np.testing.assert_array_equal(data.y_test, test[b"fine_labels"])
    coarse = load_cifar(folder, cifar100_labels="coarse", limit=40)
    assert coarse.nb_classes == 20 and coarse.classes[0] == "coarse0"
    assert np.bincount(coarse.y_test, minlength=20).tolist() == [2] * 20
    np.testing.assert_array_equal(coarse.y_train, train[b"coarse_labels"])


def test_cifar_image_size_must_be_32(tmp_path):
    folder, _, _ = write_cifar10(str(tmp_path))
    with pytest.raises(ValueError, match="image_size must be 32"):
        load_dataset(folder, image_size=64)


def test_cifar_both_in_parent_is_ambiguous(tmp_path):
    write_cifar10(str(tmp_path))
    write_cifar100(str(tmp_path))
    with pytest.raises(ValueError, match="holds both"):
        load_dataset(str(tmp_path))


def _damage(folder, name, content):
    path = os.path.join(folder, name)
    if isinstance(content, bytes):
        with open(path, "wb") as fh:
            fh.write(content)
    else:
        _pickle(path, content)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("data_batch_3", b"\x80\x04\x95truncated", r"data_batch_3.*not a readable CIFAR python batch"),
    ("data_batch_2", b"PK\x03\x04 a zip, not a pickle", r"data_batch_2.*not a readable CIFAR python batch"),
    ("data_batch_1", [1, 2, 3], r"data_batch_1.*pickled list.*dict"),
    ("test_batch", {b"pixels": np.zeros((2, 3072), np.uint8)}, r"test_batch.*needs b'data' and b'labels'"),
    ("data_batch_4", {b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, r"data_batch_4.*\(N, 3072\)"),
    ("data_batch_5", {b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, r"data_batch_5.*uint8"),
    ("data_batch_1", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"data_batch_1.*labels in 0..9"),
    ("data_batch_1", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, r"data_batch_1.*2 integer labels"),
    ("batches.meta", {b"label_names": [b"a", b"b"]}, r"batches.meta.*10 class names"),
])
def test_cifar_damaged_files_name_the_file(tmp_path, name, content, message):
    folder, _, _ = write_cifar10(str(tmp_path))
    _damage(folder, name, content)
    with pytest.raises(ValueError, match=message):
        load_dataset(str(tmp_path))


def test_cifar_missing_files_are_listed(tmp_path):
    folder, _, _ = write_cifar10(str(tmp_path))
    os.remove(os.path.join(folder, "data_batch_4"))
    with pytest.raises(ValueError, match=r"lacks \['data_batch_4'\]"):
        load_dataset(folder)


# ============================================================================================ ImageNet-style
def write_image_folder(root, per_class, val_per_class, classes=("ant", "bee", "cat"), side=6, seed=0):
    """root/train/<class>/*.png and root/val/<class>/*.png of random RGB images; returns {path: uint8 HWC}."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    written = {}
    for split, n in (("train", per_class), ("val", val_per_class)):
        for c in classes:
            os.makedirs(os.path.join(root, split, c))
            for i in range(n):
                img = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
                path = os.path.join(root, split, c, f"{i:03d}.png")
                Image.fromarray(img).save(path)
                written[path] = img
    return written


def test_image_folder_without_torchvision_is_a_clear_error(tmp_path, no_torchvision):
    pytest.importorskip("PIL")
    write_image_folder(str(tmp_path), 2, 1)
    with pytest.raises(ValueError, match=r"need torchvision.*not installed.*torch \S+.*--no-deps") as err:
        load_dataset(str(tmp_path))
    assert "CIFAR-10/100 folders and .npz files need no torchvision" in str(err.value)


@pytest.mark.parametrize("error", ['RuntimeError("operator torchvision::nms does not exist")',
                                   'AttributeError("partially initialized module \'torchvision\'")',
                                   'ImportError("libc10.so: undefined symbol")'])
def test_broken_torchvision_is_one_clear_error(tmp_path, monkeypatch, error):
    """A torchvision built for another torch fails at import with all sorts of exceptions."""
    pytest.importorskip("PIL")
    fake = tmp_path / "site"
    (fake / "torchvision").mkdir(parents=True)
    (fake / "torchvision" / "__init__.py").write_text(f"raise {error}\n")
    monkeypatch.syspath_prepend(str(fake))
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        monkeypatch.delitem(sys.modules, name)
    write_image_folder(str(tmp_path / "data"), 2, 1)
    with pytest.raises(ValueError, match=r"importing torchvision .*failed with .*torch \S+ is installed") as err:
        load_dataset(str(tmp_path / "data"))
    assert error.split("(")[0] in str(err.value) and "pip install 'torchvision==" in str(err.value)


FAKE_TORCHVISION = {
    # A stand-in with torchvision's interface for the calls the loader makes, recording every decoded file;
    # the images are written at the requested size, so Resize/CenterCrop are identities here.
    "__init__.py": "",
    "transforms.py": """
        import numpy as np
        import torch

        class Compose:
            def __init__(self, fs):
                self.fs = fs
            def __call__(self, img):
                for f in self.fs:
                    img = f(img)
                return img

        class Resize:
            def __init__(self, size):
                self.size = size
            def __call__(self, img):
                assert min(img.size) == self.size
                return img

        CenterCrop = Resize

        class ToTensor:
            def __call__(self, img):
                return torch.from_numpy(np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0)
        """,
    "datasets/__init__.py": "",
    "datasets/folder.py": """
        from PIL import Image
        DECODED = []

        def default_loader(path):
            DECODED.append(path)
            with open(path, "rb") as fh:
                return Image.open(fh).convert("RGB")
        """,
}


@pytest.fixture
def fake_torchvision(tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    site = tmp_path / "fake_site"
    for name, text in FAKE_TORCHVISION.items():
        (site / "torchvision" / name).parent.mkdir(parents=True, exist_ok=True)
        (site / "torchvision" / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(site))
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        monkeypatch.delitem(sys.modules, name)
    import torchvision.datasets.folder

    yield torchvision.datasets.folder.DECODED
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def test_image_folder_labels_values_and_limits(tmp_path, fake_torchvision):
    root = str(tmp_path / "imgs")
    written = write_image_folder(root, per_class=5, val_per_class=4, side=6)
    data = load_image_folder(root, image_size=6, limit=6, train_limit=9, split_seed=2)
    assert data.name == "imgs" and data.classes == ["ant", "bee", "cat"] and data.nb_classes == 3
    assert data.x_test.shape == (6, 3, 6, 6) and data.x_train.shape == (9, 3, 6, 6)
    assert np.bincount(data.y_test).tolist() == [2, 2, 2] and np.bincount(data.y_train).tolist() == [3, 3, 3]
    assert len(fake_torchvision) == 15  # only the selected files were decoded, not all 27
    decoded_val = [p for p in fake_torchvision if f"{os.sep}val{os.sep}" in p]
    for x, y, path in zip(data.x_test, data.y_test, decoded_val):
        assert path.split(os.sep)[-2] == data.classes[y]
        np.testing.assert_array_equal(x, written[path].transpose(2, 0, 1).astype(np.float32) / 255.0)
    assert load_image_folder(root, image_size=6).x_train.shape == (15, 3, 6, 6)  # train_limit None: all


def test_image_folder_val_may_lack_a_class_but_not_add_one(tmp_path, fake_torchvision):
    root = str(tmp_path / "imgs")
    written = write_image_folder(root, per_class=2, val_per_class=1, side=6)
    for path in [p for p in written if f"{os.sep}val{os.sep}ant{os.sep}" in p]:
        os.remove(path)
    os.rmdir(os.path.join(root, "val", "ant"))
    data = load_dataset(root, image_size=6)
    assert data.y_test.tolist() == [1, 2]  # bee and cat keep their training indices
    os.makedirs(os.path.join(root, "val", "dog"))
    with pytest.raises(ValueError, match=r"classes that .* lacks: \['dog'\]"):
        load_dataset(root, image_size=6)


def test_image_folder_structure_errors(tmp_path, fake_torchvision):
    os.makedirs(tmp_path / "a" / "train" / "x")
    os.makedirs(tmp_path / "a" / "val")
    with pytest.raises(ValueError, match=r"class folder .*x' holds no images"):
        load_dataset(str(tmp_path / "a"))
    os.makedirs(tmp_path / "b" / "train")
    os.makedirs(tmp_path / "b" / "val")
    with pytest.raises(ValueError, match="has no class sub-folders"):
        load_dataset(str(tmp_path / "b"))


def test_folder_of_neither_kind(tmp_path, no_torchvision):
    os.makedirs(tmp_path / "c" / "train")
    with pytest.raises(ValueError, match="holds neither 'cifar-10-batches-py' nor train/ and val/"):
        load_dataset(str(tmp_path / "c"))


def test_image_folder_with_real_torchvision(tmp_path):
    pytest.importorskip("torchvision", reason="torchvision (the [vision] extra) is not installed")
    root = str(tmp_path / "imgs")
    written = write_image_folder(root, per_class=3, val_per_class=2, side=8)
    data = load_dataset(root, image_size=8, limit=3)
    assert data.x_test.shape == (3, 3, 8, 8) and np.bincount(data.y_test).tolist() == [1, 1, 1]
    full = load_dataset(root, image_size=8)
    train_paths = sorted(p for p in written if f"{os.sep}train{os.sep}" in p)
    for x, path in zip(full.x_train, train_paths):
        np.testing.assert_allclose(x, written[path].transpose(2, 0, 1) / 255.0, atol=1e-6)
