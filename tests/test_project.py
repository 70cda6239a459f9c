"""The project's tool configuration points at files that exist (a renamed module or test file would
otherwise leave mutation testing silently mutating nothing, or testing with nothing)."""

import glob
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def test_mutation_testing_scope_and_tests_exist():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    for pattern in cfg["only_mutate"]:
        assert glob.glob(str(ROOT / pattern)), f"only_mutate pattern {pattern!r} matches no file"
    for test_file in cfg["pytest_add_cli_args_test_selection"]:
        assert (ROOT / test_file).is_file(), f"{test_file} is listed for mutation testing but does not exist"
    assert cfg["source_paths"] == ["trustkit"]


def test_mutmut_is_pinned_with_the_rest_of_the_stack():
    pins = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert pins["mutmut"].startswith("3.")
    assert "mutants/" in (ROOT / ".gitignore").read_text().split()
