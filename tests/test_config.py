"""Threads: one setting, applied in this process and inherited by the processes trustkit starts."""

import os
import subprocess
import sys

import pytest
import torch

import trustkit.config as config
from trustkit.config import default_threads, set_threads, using_threads, worker_threads


@pytest.fixture
def restore_threads():
    before, env = torch.get_num_threads(), {k: os.environ.get(k) for k in ("TRUSTKIT_THREADS", "OMP_NUM_THREADS")}
    yield
    torch.set_num_threads(before)
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_set_threads_sets_torch_and_the_environment(restore_threads):
    assert set_threads(1) == 1 and torch.get_num_threads() == 1
    assert os.environ["TRUSTKIT_THREADS"] == "1" and os.environ["OMP_NUM_THREADS"] == "1"
    from threadpoolctl import threadpool_info

    assert all(p["num_threads"] == 1 for p in threadpool_info())  # numpy's BLAS too


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_set_threads_refuses_what_is_not_a_count(bad, restore_threads):
    with pytest.raises(ValueError, match="threads must be a whole number >= 1"):
        set_threads(bad)


def test_the_default_divides_the_cores_among_workers(monkeypatch):
    monkeypatch.delenv("TRUSTKIT_THREADS", raising=False)
    assert worker_threads(2, cores=2) == 1 and worker_threads(3, cores=8) == 2 and worker_threads(9, cores=4) == 1
    monkeypatch.setenv("TRUSTKIT_THREADS", "3")
    assert default_threads(workers=4) == 3  # an explicit setting wins
    monkeypatch.setenv("TRUSTKIT_THREADS", "many")
    with pytest.raises(ValueError, match="TRUSTKIT_THREADS must be a whole number of threads >= 1; got 'many'"):
        default_threads()


def test_a_process_started_with_the_setting_applies_it_on_import():
    env = {**os.environ, "TRUSTKIT_THREADS": "1", "OMP_NUM_THREADS": ""}
    code = "import torch; n = torch.get_num_threads(); import trustkit; print(n, torch.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[1] == "1"


def test_every_training_record_keeps_its_threads(restore_threads):
    from trustkit.data import load_german
    from trustkit.train import Trainer

    set_threads(1)
    rec = Trainer(epochs=1, progress=False).fit(load_german(seed=0))
    assert rec.usage["threads"] == 1 and rec.summary()["threads"] == 1


def test_a_later_call_divides_the_cores_again_instead_of_keeping_its_own_export(monkeypatch, restore_threads):
    monkeypatch.setattr(config, "_OUTSIDE", None)  # nobody outside this process chose a number
    monkeypatch.setattr(config, "available_cores", lambda: 4)
    assert set_threads() == 4 and os.environ["TRUSTKIT_THREADS"] == "4"
    assert set_threads(workers=2) == 2 and torch.get_num_threads() == 2  # not the 4 this process exported
    assert set_threads(workers=4) == 1
    # a number the user (or a parent process) gave still wins over dividing the cores
    monkeypatch.setattr(config, "_OUTSIDE", "3")
    assert set_threads(workers=2) == 3
    monkeypatch.setenv("TRUSTKIT_THREADS", "2")  # set by hand in this process: a choice too
    assert default_threads(workers=4) == 2


def test_using_threads_restores_the_callers_threads_and_environment(restore_threads):
    from threadpoolctl import threadpool_info

    set_threads(2)
    pools = [p["num_threads"] for p in threadpool_info()]
    with using_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1 and os.environ["TRUSTKIT_THREADS"] == "1"
        assert all(p["num_threads"] == 1 for p in threadpool_info())
    assert torch.get_num_threads() == 2 and os.environ["TRUSTKIT_THREADS"] == "2" and os.environ["OMP_NUM_THREADS"] == "2"
    assert [p["num_threads"] for p in threadpool_info()] == pools
    with pytest.raises(RuntimeError), using_threads(1):  # restored when the block raises too
        raise RuntimeError
    assert torch.get_num_threads() == 2
