"""The mutation-testing tool (tools/mutate.py) on a tiny synthetic package."""
import ast
import importlib.util
import json
import sys
import textwrap
from pathlib import Path

import pytest

_TOOL = Path(__file__).resolve().parents[1] / "tools" / "mutate.py"


@pytest.fixture(scope="module")
def mutate():
    spec = importlib.util.spec_from_file_location("trustkit_mutate_tool", _TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while building the class
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _by_op(mutants):
    out = {}
    for m in mutants:
        out.setdefault(m.operator, []).append((m.original, m.mutated))
    return out


def test_operators_make_one_mutant_per_site(mutate):
    src = textwrap.dedent('''
        import numpy as np
        import torch


        def f(x, y, flag=True):
            if x < y and x != 0:  # a comment with < and and
                return -x
            z = min(x, y) * 2
            z += y - 1
            order = sorted([x, y])
            idx = torch.argsort(torch.tensor([x, y]), descending=True)
            return False
    ''')
    ms = mutate.generate_mutants(src, "pkg/m.py", mutate.ALL_OPERATORS)
    ops = _by_op(ms)
    assert sorted(ops["cmp_flip"]) == [("!=", "=="), ("<", ">=")]
    assert sorted(ops["cmp_boundary"]) == [("<", "<=")]
    assert ops["boolop"] == [("and", "or")]
    assert ops["neg_remove"] == [("-", "")]
    assert ops["minmax"] == [("min", "max")]
    assert sorted(ops["binop"]) == [("*", "/"), ("+=", "-="), ("-", "+")]
    assert sorted(ops["neg_add"]) == [("", "-"), ("", "-")]  # the literals 2 and 1
    assert sorted(ops["bool_const"]) == [("False", "True"), ("True", "False")]
    assert sorted(ops["order_flip"]) == [("", ", reverse=True"), ("True", "False")]
    lines = src.splitlines()
    for m in ms:
        mutated = mutate.apply_mutant(src, m)
        assert mutated != src
        ast.parse(mutated)
        # the edit is local: comments and the rest of the line survive
        assert "# a comment with < and and" in mutated
        assert m.line_before == lines[m.line - 1].strip()
        assert mutated.splitlines()[m.line - 1].strip() == m.line_after
    # the default set leaves the boundary operator out
    assert "cmp_boundary" not in _by_op(mutate.generate_mutants(src, "pkg/m.py"))


def test_edits_keep_precedence(mutate):
    # inserting a minus before 2 in ``2 ** x`` must not turn it into -(2 ** x)
    src = "def g(x):\n    return 2 ** x\n"
    (m,) = [m for m in mutate.generate_mutants(src, "m.py") if m.operator == "neg_add"]
    tree = ast.parse(mutate.apply_mutant(src, m))
    ret = tree.body[0].body[0].value
    assert isinstance(ret, ast.BinOp) and isinstance(ret.left, ast.UnaryOp)
    ns = {}
    exec(compile(tree, "m.py", "exec"), ns)
    assert ns["g"](2) == 4  # (-2) ** 2


def test_skipped_code(mutate):
    src = textwrap.dedent('''
        """Module docstring: a < b + c."""
        import warnings
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            LIMIT = 1 + 2


        class A:
            def __repr__(self):
                return f"A({1 + 2})" + "x"

            def check(self, n):
                """n < 0 is refused."""
                if n < 0:
                    raise ValueError("n must be >= 0, got " + str(n - 1))
                warnings.warn("n is " + str(n + 1), stacklevel=2)
                assert n >= 0
                return n
    ''')
    ms = mutate.generate_mutants(src, "m.py")
    assert [(m.line, m.operator, m.original, m.mutated) for m in ms] == [(16, "cmp_flip", "<", ">=")]


def test_sample_is_reproducible(mutate):
    src = "def h(a, b):\n    return (a + b) * (a - b) / (a < b) + min(a, b)\n"
    ms = mutate.generate_mutants(src, "m.py")
    ids = lambda s: [m.id for m in mutate.select_sample(ms, 3, s)]  # noqa: E731
    assert len(ms) > 3 and len(set(m.id for m in ms)) == len(ms)
    assert ids(0) == ids(0) and len(ids(0)) == 3
    assert {tuple(ids(s)) for s in range(10)} != {tuple(ids(0))}
    assert len(mutate.select_sample(ms, 0, 0)) == len(ms)


_TOY = '''
"""A toy module: x < y in a docstring is not code."""


def clip(x, lo, hi):
    if x < lo:
        return lo
    return x


def add(a, b):
    return a + b


def untested(a, b):
    return a * b


def spin(n):
    i = 0
    while i != n:
        i += 1
    return i
'''

_TOY_TESTS = '''
from toypkg.core import add, clip, spin


def test_clip():
    assert clip(5, 0, 10) == 5
    assert clip(-1, 0, 10) == 0


def test_add():
    assert add(2, 0) == 2


def test_spin():
    assert spin(3) == 3
'''


def _toy_repo(root: Path) -> Path:
    (root / "toypkg").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "toypkg" / "__init__.py").write_text("")
    (root / "toypkg" / "core.py").write_text(_TOY)
    (root / "tests" / "test_core.py").write_text(_TOY_TESTS)
    return root


def test_end_to_end_on_a_copy(mutate, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # a faster pytest start for the toy
    repo = _toy_repo(tmp_path / "repo")
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    out = tmp_path / "out.json"
    result = mutate.main(["--repo", str(repo), "--target", "toypkg/core.py", "--tests", "tests/test_core.py",
                          "--operators", "cmp_flip", "binop", "--min-timeout", "6", "--out", str(out)])
    status = {(m["line"], m["original"]): m["status"] for m in result["targets"][0]["mutants"]}
    assert status == {
        (6, "<"): "killed",  # clip(-1, 0, 10) == 0 fails
        (12, "+"): "survived",  # add(2, 0) cannot tell + from -
        (16, "*"): "not_covered",  # no test calls untested()
        (21, "!="): "killed",  # spin(3) returns 0
        (22, "+="): "timeout",  # i -= 1 never reaches n
    }
    killed_by = {m["line"]: m["killed_by"] for m in result["targets"][0]["mutants"] if m["status"] == "killed"}
    assert killed_by == {6: "tests/test_core.py::test_clip", 21: "tests/test_core.py::test_spin"}
    s = result["summary"]
    assert (s["killed"], s["timeout"], s["survived"], s["not_covered"]) == (2, 1, 1, 1)
    assert s["survival_rate"] == pytest.approx(1 / 4)
    assert s["survival_rate_with_not_covered"] == pytest.approx(2 / 5)
    saved = json.loads(out.read_text())
    assert [(m["file"], m["line"], m["line_before"], m["line_after"]) for m in saved["survivors"]] == [
        ("toypkg/core.py", 12, "return a + b", "return a - b")]
    assert [m["line"] for m in saved["not_covered"]] == [16]
    assert "| **overall** | 5 | 2 | 1 | 1 | 1 | 0 | 25.0% | 40.0% |" in capsys.readouterr().out
    # the repository itself was never written
    assert {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()} == before


def test_list_and_ids(mutate, tmp_path, capsys):
    repo = _toy_repo(tmp_path / "repo")
    args = ["--repo", str(repo), "--target", "toypkg/core.py", "--tests", "tests/test_core.py", "--list"]
    mutate.main(args)
    listed = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [row[0] for row in listed] == ["toypkg/core.py:6:9:cmp_flip:1", "toypkg/core.py:12:13:binop:1",
                                          "toypkg/core.py:16:13:binop:1", "toypkg/core.py:21:12:cmp_flip:1",
                                          "toypkg/core.py:22:10:binop:1"]
    assert listed[1][1:] == ["return a + b", "->", "return a - b"]
    mutate.main(args + ["--ids", "toypkg/core.py:16:13:binop:1", "no-such-id"])
    assert capsys.readouterr().out.splitlines() == ["toypkg/core.py:16:13:binop:1\treturn a * b\t->\treturn a / b"]


def test_guard_refuses_code_imported_from_outside_the_copy(mutate, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    repo = _toy_repo(tmp_path / "repo")
    # a test module that puts the original repository first on sys.path imports the unmutated package
    (repo / "tests" / "test_core.py").write_text(
        f"import sys\nsys.path.insert(0, {str(repo)!r})\nsys.modules.pop('toypkg', None)\n" + _TOY_TESTS)
    with pytest.raises(RuntimeError, match="did not import the code from the scratch copy"):
        mutate.main(["--repo", str(repo), "--target", "toypkg/core.py", "--tests", "tests/test_core.py"])
