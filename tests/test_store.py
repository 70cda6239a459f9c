"""The result store: writes in progress stay invisible, corrupt records are skipped and re-run,
numpy and torch values are kept with their kind."""

import math
import os
import re
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from trustkit.experiments import ResultStore, run_grid, run_key


def _square(cfg):
    return {"v": cfg["i"] ** 2}


def _kill_a_writer_before_its_rename(path, config, result):
    """Run ``ResultStore(path).put(config, result)`` in a process killed just before the rename."""
    code = f"""
import os
from trustkit.experiments import ResultStore
os.replace = lambda *a, **k: os._exit(9)  # killed after writing the temporary file, before the rename
ResultStore({str(path)!r}).put({config!r}, {result!r})
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == 9, proc.stderr.decode()


# ------------------------------------------------------------------ writes in progress


def test_a_write_killed_before_its_rename_is_invisible_to_readers(tmp_path):
    store = ResultStore(tmp_path)
    store.put({"i": 0}, {"v": 0})
    _kill_a_writer_before_its_rename(tmp_path, {"i": 1}, {"v": 1})
    leftovers = [f for f in tmp_path.iterdir() if f.name != f"{run_key({'i': 0})}.json"]
    assert len(leftovers) == 1  # the killed writer's temporary file is there ...
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ... and no reader sees it, not even as a corrupt record
        assert len(store) == 1
        assert store.records() == [{"i": 0, "v": 0}]
        assert store.frame().to_dict("records") == [{"i": 0, "v": 0}]
        assert not store.has({"i": 1})
        df = run_grid([{"i": 0}, {"i": 1}], _square, store=ResultStore(tmp_path), progress=False)
    assert df["v"].tolist() == [0, 1] and len(store) == 2


def test_stale_temporary_files_are_removed_and_fresh_ones_kept(tmp_path):
    _kill_a_writer_before_its_rename(tmp_path, {"i": 1}, {"v": 1})
    _kill_a_writer_before_its_rename(tmp_path, {"i": 2}, {"v": 4})
    stale, fresh = sorted(tmp_path.iterdir())
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    ResultStore(tmp_path)
    # a fresh one may belong to a writer still at work: only the old one goes
    assert sorted(tmp_path.iterdir()) == [fresh]


# ------------------------------------------------------------------ corrupt records

CORRUPTIONS = {
    "truncated": b'{"config": {"i": 1}, "result": {"v"',
    "empty": b"",
    "not a record": b"[1, 2, 3]",
    "no result": b'{"config": {"i": 1}}',
    "result not a mapping": b'{"config": {"i": 1}, "result": 5}',
    "not utf-8": b"\xff\xfe\x00garbage",
}


@pytest.mark.parametrize("content", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_readers_skip_a_corrupt_record_with_a_warning_naming_it(tmp_path, content):
    store = ResultStore(tmp_path)
    for i in range(3):
        store.put({"i": i}, {"v": i * 10})
    bad = tmp_path / f"{run_key({'i': 1})}.json"
    bad.write_bytes(content)
    named = re.escape(str(bad))
    with pytest.warns(UserWarning, match=named):
        assert len(store) == 2
    with pytest.warns(UserWarning, match=named):
        frame = store.frame()
    assert sorted(frame[["i", "v"]].values.tolist()) == [[0, 0], [2, 20]]
    with pytest.warns(UserWarning, match=named):
        assert sorted(r["i"] for r in store.records()) == [0, 2]
    with pytest.warns(UserWarning, match=named):
        assert sorted(r["i"] for r in store) == [0, 2]
    with pytest.warns(UserWarning, match=named):
        assert not store.has({"i": 1})
    assert store.has({"i": 0}) and store.has({"i": 2})
    with pytest.raises(ValueError, match=named):
        store.get({"i": 1})


@pytest.mark.parametrize("content", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_run_grid_runs_a_corrupt_record_again_and_overwrites_it(tmp_path, content):
    store = ResultStore(tmp_path)
    configs = [{"i": i} for i in range(4)]
    run_grid(configs, _square, store=store, progress=False)
    bad = tmp_path / f"{run_key({'i': 2})}.json"
    bad.write_bytes(content)
    calls = []

    def run(cfg):
        calls.append(cfg["i"])
        return _square(cfg)

    with pytest.warns(UserWarning, match=re.escape(str(bad))):
        df = run_grid(configs, run, store=store, progress=False)
    assert calls == [2]  # only the corrupt one ran again
    assert df["v"].tolist() == [0, 1, 4, 9]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the record was overwritten: nothing corrupt is left
        assert store.get({"i": 2}) == {"v": 4} and len(store) == 4
        run_grid(configs, run, store=store, progress=False)
    assert calls == [2]


def test_a_missing_record_is_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no result stored"):
        ResultStore(tmp_path).get({"i": 0})


# ------------------------------------------------------------------ what a result may hold


def _same(a, b):
    """Equal values of the same Python type, NaN equal to NaN, element by element."""
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def test_numpy_and_torch_values_come_back_as_python_numbers_of_their_kind(tmp_path):
    store = ResultStore(tmp_path)
    result = {
        "n": np.int64(7), "n32": np.int32(-3), "u8": np.uint8(255), "flag": np.bool_(True), "off": np.bool_(False),
        "x": np.float32(0.5), "nan": np.float64("nan"), "py_nan": float("nan"), "inf": float("inf"),
        "counts": np.array([1, 2, 3]), "mask": np.array([True, False]), "grid": np.array([[0.25, np.nan], [1.0, 2.0]]),
        "empty": np.zeros(0), "names": np.array(["a", "b"]),
        "mixed": np.array([np.int64(1), "a", None], dtype=object),
        "t": torch.tensor([1.5, 2.5], requires_grad=True), "t_int": torch.tensor([[1, 2]]), "t0": torch.tensor(3),
        "t_bool": torch.tensor([True]), "pair": (np.int64(1), 2.0),
        "nested": {"deep": [np.float64(0.125), np.int16(4)]},
        "by_class": {np.int64(0): 0.5, np.int64(1): 0.75},
        "native": 4, "truth": True, "none": None, "text": "ok",
    }
    expected = {
        "n": 7, "n32": -3, "u8": 255, "flag": True, "off": False,
        "x": 0.5, "nan": float("nan"), "py_nan": float("nan"), "inf": float("inf"),
        "counts": [1, 2, 3], "mask": [True, False], "grid": [[0.25, float("nan")], [1.0, 2.0]],
        "empty": [], "names": ["a", "b"], "mixed": [1, "a", None],
        "t": [1.5, 2.5], "t_int": [[1, 2]], "t0": 3,
        "t_bool": [True], "pair": [1, 2.0], "nested": {"deep": [0.125, 4]},
        "by_class": {"0": 0.5, "1": 0.75},  # JSON keys are strings
        "native": 4, "truth": True, "none": None, "text": "ok",
    }
    store.put({"seed": np.int64(0)}, result)
    back = ResultStore(tmp_path).get({"seed": 0})
    for k in expected:
        assert _same(back[k], expected[k]), (k, back[k], expected[k])
    assert back.keys() == expected.keys()
    (row,) = store.records()
    assert type(row["seed"]) is int and type(row["n"]) is int and type(row["flag"]) is bool


@settings(max_examples=40, deadline=None)
@given(arr=hnp.arrays(dtype=st.sampled_from([np.int8, np.int64, np.uint32, np.float32, np.float64, np.bool_]),
                      shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4)))
def test_any_numeric_array_round_trips(tmp_path_factory, arr):
    store = ResultStore(tmp_path_factory.mktemp("s"))
    store.put({"k": 0}, {"a": arr, "first": arr.flat[0] if arr.size else None})
    back = store.get({"k": 0})
    # the independent reference: element by element, each numpy element as the Python number it is
    def ref(a):
        return a.item() if a.ndim == 0 else [ref(a[i]) for i in range(a.shape[0])]

    assert _same(back["a"], ref(arr))
    assert _same(back["first"], arr.flat[0].item() if arr.size else None)


@pytest.mark.parametrize("result, where", [
    ({"ok": 1, "model": object()}, "result['model']"),
    ({"a": {"b": [1, {2, 3}]}}, "result['a']['b'][1]"),
    ({"z": np.array([1 + 2j])}, "result['z']"),
    ({"when": np.datetime64("2020-01-01")}, "result['when']"),
    ({"objs": np.array([1, object()], dtype=object)}, "result['objs'][1]"),
    ({"by": {(0, 1): 2.0}}, "result['by']"),
])
def test_what_json_cannot_hold_is_refused_naming_the_key_before_anything_is_written(tmp_path, result, where):
    store = ResultStore(tmp_path)
    with pytest.raises(TypeError, match=re.escape(where)):
        store.put({"i": 0}, result)
    assert list(tmp_path.iterdir()) == []  # no record, no temporary file


def test_run_grid_with_numpy_results_resumes_to_the_same_frame(tmp_path):
    def run(cfg):
        return {"curve": np.linspace(0, 1, 3) * cfg["i"], "n": np.int64(cfg["i"]), "ok": np.bool_(cfg["i"] > 0)}

    configs = [{"i": i} for i in range(3)]
    fresh = run_grid(configs, run, store=ResultStore(tmp_path), progress=False)
    resumed = run_grid(configs, lambda cfg: pytest.fail("ran again"), store=ResultStore(tmp_path), progress=False)
    assert fresh.equals(resumed)
    assert resumed["curve"].tolist() == [[0.0, 0.0, 0.0], [0.0, 0.5, 1.0], [0.0, 1.0, 2.0]]
    assert resumed["n"].dtype == np.int64 and resumed["ok"].dtype == bool


def test_numpy_numbers_in_a_config_name_the_same_run_as_python_numbers():
    assert run_key({"seed": np.int64(3), "lr": np.float32(0.5)}) == run_key({"seed": 3, "lr": 0.5})
    assert run_key({"seed": torch.tensor(3)}) == run_key({"seed": 3})
    assert run_key({"seed": 3}) != run_key({"seed": 3.5})


def test_a_sequential_grid_with_its_own_threads_gives_the_caller_its_threads_back(tmp_path):
    from trustkit.config import using_threads

    with using_threads(2):  # the caller's setting, restored for the other tests afterwards
        df = run_grid([{"i": 0}, {"i": 1}], lambda c: {"threads": torch.get_num_threads()}, store=ResultStore(tmp_path),
                      progress=False, threads=1)
        assert (df.threads == 1).all()  # the runs ran with the grid's threads
        assert torch.get_num_threads() == 2  # and the caller has its own back
