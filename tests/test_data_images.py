"""Fashion-MNIST from Debian's package: sizes, classes, a reference decode, subsets, errors, corruptions.

Tests marked by the ``fashion`` fixture read the real files and skip, naming the package to install,
where they are absent; the others build small IDX files of their own in ``tmp_path``.
"""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml

from trustkit import data as td
from trustkit.data._images import _fashion_mnist_root

CARD = Path(__file__).resolve().parents[1] / "data_cards" / "fashion_mnist.md"
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz")


def _real_root():
    root = _fashion_mnist_root()
    absent = [f for f in FILES if not (root / f).is_file()]
    if absent:
        pytest.skip(f"Fashion-MNIST files absent under {root} (e.g. {absent[0]}): install them with "
                    "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu) or set TRUSTKIT_FASHION_MNIST")
    return root


def _raw(root, name, offset):
    """Independent decode of one real file: gzip + numpy, past the fixed IDX header."""
    return np.frombuffer(gzip.decompress((root / name).read_bytes()), dtype=np.uint8, offset=offset)


@pytest.fixture(scope="module")
def fashion():
    _real_root()
    return td.load_fashion_mnist(seed=0)


@pytest.fixture(scope="module")
def small():
    _real_root()
    return td.load_fashion_mnist(seed=0, max_train=1000, max_test=500)


def _idx_bytes(array, *, type_code=0x08):
    array = np.asarray(array)
    return struct.pack(">BBBB", 0, 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) \
        + array.astype(np.uint8).tobytes()


def _write_root(root, n_train=300, n_test=100, **override):
    """Four synthetic gzip IDX files; ``override`` maps a file name to the bytes to write instead."""
    rng = np.random.default_rng(0)
    arrays = {
        FILES[0]: rng.integers(0, 256, (n_train, 28, 28)), FILES[1]: np.arange(n_train) % 10,
        FILES[2]: rng.integers(0, 256, (n_test, 28, 28)), FILES[3]: np.arange(n_test) % 10,
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        (root / name).write_bytes(override.get(name, gzip.compress(_idx_bytes(array))))
    return arrays


# --- the real files ------------------------------------------------------------------------------

def test_default_sizes_shape_and_pixel_range(fashion):
    assert (len(fashion.train), len(fashion.val), len(fashion.test)) == (54000, 6000, 10000)
    assert len(fashion.train) + len(fashion.val) == 60000
    assert fashion.input_shape == (1, 28, 28) and fashion.n_classes == 10 and fashion.kind == "image"
    assert (fashion.name, fashion.card, fashion.label_name, fashion.sensitive) == (
        "fashion_mnist", "fashion_mnist", "class", None)
    for split in (fashion.train, fashion.val, fashion.test):
        assert split.X.dtype == np.float32 and split.X.min() == 0.0 and split.X.max() == 1.0
    assert fashion.notes["classes"] == list(td.FASHION_MNIST_CLASSES)
    assert td.FASHION_MNIST_CLASSES[0] == "T-shirt/top" and td.FASHION_MNIST_CLASSES[9] == "Ankle boot"


def test_official_label_counts_and_stratified_validation(fashion):
    train_all = np.concatenate([fashion.train.y, fashion.val.y])
    assert np.bincount(train_all).tolist() == [6000] * 10
    assert np.bincount(fashion.test.y).tolist() == [1000] * 10
    assert np.bincount(fashion.val.y).tolist() == [600] * 10
    # train and validation partition the training file; the test split is the whole test file in order
    idx = np.concatenate([fashion.train.index, fashion.val.index])
    assert sorted(idx.tolist()) == list(range(60000))
    np.testing.assert_array_equal(fashion.test.index, np.arange(60000, 70000))


def test_images_and_labels_match_an_independent_decode(fashion):
    root = _real_root()
    tr_images = _raw(root, FILES[0], 16).reshape(60000, 28, 28)
    tr_labels = _raw(root, FILES[1], 8)
    pick = np.random.default_rng(1).choice(len(fashion.train), size=500, replace=False)
    rows = fashion.train.index[pick]
    np.testing.assert_array_equal(np.rint(fashion.train.X[pick, 0] * 255), tr_images[rows])
    np.testing.assert_array_equal(fashion.train.y, tr_labels[fashion.train.index])
    np.testing.assert_array_equal(fashion.val.y, tr_labels[fashion.val.index])
    np.testing.assert_array_equal(fashion.train.X[pick, 0], tr_images[rows].astype(np.float32) / 255)


def test_debian_labels_are_upstreams():
    # MD5 of the decompressed label files of github.com/zalandoresearch/fashion-mnist (data/fashion);
    # Debian recompressed the .gz files, so the README's checksums of the .gz files do not apply
    import hashlib

    root = _real_root()
    md5 = {name: hashlib.md5(gzip.decompress((root / name).read_bytes())).hexdigest() for name in FILES[1::2]}
    assert md5 == {FILES[1]: "9018921c3c673c538a1fc5bad174d6f9", FILES[3]: "15d484375f8d13e6eb1aabb0c3f46965"}


def test_test_split_matches_torchvisions_reader(fashion, tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    root = _real_root()
    for name in FILES[2:]:
        (tmp_path / name[:-3]).write_bytes(gzip.decompress((root / name).read_bytes()))
    images = read_image_file(str(tmp_path / FILES[2][:-3])).numpy()
    labels = read_label_file(str(tmp_path / FILES[3][:-3])).numpy()
    assert images.shape == (10000, 28, 28)
    np.testing.assert_array_equal(fashion.test.y, labels)
    np.testing.assert_array_equal(fashion.test.X[:, 0], images.astype(np.float32) / 255)


def test_same_seed_same_task_other_seed_other_subsets(small):
    again = td.load_fashion_mnist(seed=0, max_train=1000, max_test=500)
    for name in ("train", "val", "test"):
        a, b = small.split(name), again.split(name)
        np.testing.assert_array_equal(a.X, b.X)
        np.testing.assert_array_equal(a.y, b.y)
        np.testing.assert_array_equal(a.index, b.index)
    other = td.load_fashion_mnist(seed=1, max_train=1000, max_test=500)
    assert not np.array_equal(other.train.index, small.train.index)
    assert not np.array_equal(other.test.index, small.test.index)


def test_max_train_and_max_test_are_stratified_subsets(small):
    assert (len(small.train), len(small.val), len(small.test)) == (900, 100, 500)
    assert np.bincount(np.concatenate([small.train.y, small.val.y])).tolist() == [100] * 10
    assert np.bincount(small.val.y).tolist() == [10] * 10
    assert np.bincount(small.test.y).tolist() == [50] * 10
    assert small.train.index.max() < 60000 and small.test.index.min() >= 60000
    assert len(np.unique(np.concatenate([small.train.index, small.val.index]))) == 1000
    # a subset larger than the file keeps everything
    assert len(td.load_fashion_mnist(seed=0, max_train=1000, max_test=10**6).test) == 10000


def test_load_task_by_name(small):
    task = td.load_task("fashion_mnist", seed=0, max_train=1000, max_test=500)
    assert "fashion_mnist" in td.IMAGE_DATASETS and "fashion_mnist" in td.DATASETS
    np.testing.assert_array_equal(task.test.X, small.test.X)
    np.testing.assert_array_equal(task.val.index, small.val.index)


def test_image_size_resizes(small):
    big = td.load_fashion_mnist(seed=0, max_train=1000, max_test=500, image_size=32)
    assert big.input_shape == (1, 32, 32) and big.notes["image_size"] == 32
    assert 0.0 <= big.test.X.min() and big.test.X.max() <= 1.0
    np.testing.assert_array_equal(big.test.y, small.test.y)
    # the resized image is the 28 px one, smoothly resampled (the mean grey level is kept)
    np.testing.assert_allclose(big.test.X.mean(axis=(1, 2, 3)), small.test.X.mean(axis=(1, 2, 3)), atol=0.02)


@pytest.mark.parametrize("corruption", ["gaussian_noise", "defocus_blur", "fog", "frost", "pixelate",
                                        "jpeg_compression"])
def test_corruptions_apply_to_28px_images(small, corruption):
    X = small.test.X[:3]
    out = td.corrupt_images(X, corruption, 3, seed=0)
    assert out.shape == (3, 1, 28, 28) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.abs(out - X).mean() > 1e-3
    np.testing.assert_array_equal(out, td.corrupt_images(X, corruption, 3, seed=0))


def test_availability_and_cli_report_the_real_files(capsys):
    root = _real_root()
    row = td.dataset_availability(["fashion_mnist"], root="/somewhere/else").iloc[0]
    assert (row["kind"], row["status"]) == ("image", "available")
    assert str(root) in row["detail"] and "data_cards/fashion_mnist.md" in row["detail"]
    from trustkit.cli import main

    assert main(["datasets", "fashion_mnist"]) == 0
    out = capsys.readouterr().out
    assert out.split("\n\n")[1].splitlines()[1].split()[:3] == ["fashion_mnist", "image", "70000"]


def test_card_matches_the_loader(fashion):
    text = CARD.read_text()
    card = yaml.safe_load(text.split("---\n")[1])
    assert card["name"] == "fashion_mnist" and card["licence"].startswith("MIT")
    assert card["rows_raw"] == card["rows_after_preprocessing"] == len(fashion.train) + len(fashion.val) \
        + len(fashion.test) == 70000
    assert card["label"] == {"column": "class", "positive": None, "positive_rate": None}
    assert card["sensitive"] is None
    for section in ("## Source", "## Licence", "## Preprocessing in trustkit", "## Known issues", "## Citation"):
        assert section in text
    assert all(name in text for name in td.FASHION_MNIST_CLASSES)


# --- without the real files: missing, corrupt and synthetic files --------------------------------

def test_missing_files_say_what_to_install(tmp_path, monkeypatch):
    monkeypatch.delenv("TRUSTKIT_FASHION_MNIST", raising=False)
    with pytest.raises(FileNotFoundError) as err:
        td.load_fashion_mnist(root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path) in msg and "4 of 4 files absent" in msg and "train-images-idx3-ubyte.gz" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "root=" in msg and "load_digits()" in msg
    # the environment variable moves the default folder, for the loader and the availability table
    monkeypatch.setenv("TRUSTKIT_FASHION_MNIST", str(tmp_path / "elsewhere"))
    with pytest.raises(FileNotFoundError, match="elsewhere"):
        td.load_task("fashion_mnist")
    row = td.dataset_availability(["fashion_mnist"]).iloc[0]
    assert row["status"] == "missing" and "elsewhere" in row["detail"]
    assert "apt-get install dataset-fashion-mnist" in row["detail"] and "'digits'" in row["detail"]


def test_one_missing_file_is_named(tmp_path):
    _write_root(tmp_path)
    (tmp_path / FILES[3]).unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 4 files absent \(e\.g\. t10k-labels-idx1-ubyte\.gz\)"):
        td.load_fashion_mnist(root=tmp_path)


def test_synthetic_root_through_the_environment_variable(tmp_path, monkeypatch):
    arrays = _write_root(tmp_path, n_train=300, n_test=100)
    monkeypatch.setenv("TRUSTKIT_FASHION_MNIST", str(tmp_path))
    assert td.dataset_availability(["fashion_mnist"])["status"].item() == "available"
    task = td.load_fashion_mnist(seed=0, val_size=0.2, max_test=50)
    assert (len(task.train), len(task.val), len(task.test)) == (240, 60, 50)
    assert task.notes["root"] == str(tmp_path)
    np.testing.assert_array_equal(task.test.X[:, 0] * 255, arrays[FILES[2]][task.test.index - 300])
    np.testing.assert_array_equal(task.train.y, arrays[FILES[1]][task.train.index])


def _corrupt(kind):
    good = _idx_bytes(np.zeros((300, 28, 28)))
    packed = gzip.compress(good)
    return {
        "truncated gzip": (FILES[0], packed[: len(packed) // 2], "not a readable gzip file"),
        "not gzip": (FILES[0], b"this is not gzip data" * 10, "not a readable gzip file"),
        "bad magic": (FILES[0], gzip.compress(b"\x12\x34" + good[2:]), r"not an IDX file \(magic number 12340803\)"),
        "unknown type": (FILES[0], gzip.compress(b"\x00\x00\x07" + good[3:]), "not an IDX file"),
        "short data": (FILES[0], gzip.compress(good[:-28 * 28]), r"holds 234416 data bytes but its header"),
        "long data": (FILES[1], gzip.compress(_idx_bytes(np.arange(300) % 10) + b"\0"), "holds 301 data bytes"),
        "cut header": (FILES[1], gzip.compress(b"\x00\x00\x08\x01\x00"), "ends inside its IDX header"),
        "wrong rank": (FILES[1], gzip.compress(_idx_bytes(np.zeros((300, 2)))), "2-dimensional array, expected 1"),
        "not bytes": (FILES[1], gzip.compress(_idx_bytes(np.zeros(300), type_code=0x0D)[:8] + bytes(1200)),
                      "must hold unsigned bytes"),
        "other image size": (FILES[0], gzip.compress(_idx_bytes(np.zeros((300, 32, 32)))), "must hold 28x28 images"),
        "count mismatch": (FILES[1], gzip.compress(_idx_bytes(np.arange(299) % 10)), "300 images but 299 labels"),
        "label out of range": (FILES[3], gzip.compress(_idx_bytes(np.arange(100) % 11)), "label 10"),
    }[kind]


@pytest.mark.parametrize("kind", ["truncated gzip", "not gzip", "bad magic", "unknown type", "short data",
                                  "long data", "cut header", "wrong rank", "not bytes", "other image size",
                                  "count mismatch", "label out of range"])
def test_corrupt_files_are_clear_errors(tmp_path, kind):
    name, content, pattern = _corrupt(kind)
    _write_root(tmp_path, **{name: content})
    with pytest.raises(ValueError, match=pattern) as err:
        td.load_fashion_mnist(root=tmp_path)
    assert name in str(err.value) or "Fashion-MNIST's" in str(err.value)


def test_subsets_keep_each_class_share_up_to_rounding(tmp_path):
    # unequal classes: each class of the subset is within one image of its share (largest remainder)
    labels = np.repeat(np.arange(10), [45, 35, 25, 25, 25, 25, 25, 25, 35, 35])
    _write_root(tmp_path, n_train=300, n_test=100, **{FILES[1]: gzip.compress(_idx_bytes(labels))})
    task = td.load_fashion_mnist(root=tmp_path, max_train=100, max_test=95, val_size=0.2)
    assert len(task.train) + len(task.val) == 100 and len(task.test) == 95
    counts = np.bincount(np.concatenate([task.train.y, task.val.y]), minlength=10)
    assert np.all(np.abs(counts - np.bincount(labels) / 3) < 1), counts
    assert np.all(np.abs(np.bincount(task.test.y, minlength=10) - 9.5) < 1)
    np.testing.assert_array_equal(task.train.y, labels[task.train.index])
    np.testing.assert_array_equal(task.val.y, labels[task.val.index])
    assert len(td.load_fashion_mnist(root=tmp_path, max_test=10).test) == 10


def test_argument_errors(tmp_path):
    _write_root(tmp_path, n_train=300, n_test=100)
    with pytest.raises(ValueError, match="leaves 9 for training and 1 for validation"):
        td.load_fashion_mnist(root=tmp_path, max_train=10)
    with pytest.raises(ValueError, match="max_test must be at least 10"):
        td.load_fashion_mnist(root=tmp_path, max_test=5)
    with pytest.raises(ValueError, match="max_train must be an integer > 0"):
        td.load_fashion_mnist(root=tmp_path, max_train=0)
    with pytest.raises(ValueError, match=r"image_size must be an integer in \[8, 256\]"):
        td.load_fashion_mnist(root=tmp_path, image_size=4)
    with pytest.raises(TypeError, match="positional"):
        td.load_fashion_mnist(tmp_path)  # keyword-only
