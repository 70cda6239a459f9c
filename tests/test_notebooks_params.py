"""Every notebook's ``parameters`` cell reads cleanly with papermill (no notebook is executed).

The parameters are found independently of papermill, with Python's ``ast`` over the cell; papermill
must then list each of them, with the type written in the cell (papermill takes a parameter's type
from its annotation only) and the same default, and must not warn that it cannot parse a line
(it gives up on a line with a second ``=``, e.g. in a trailing comment). The annotations must agree
with the default values and with the ``check_parameters`` spec the notebook enforces at run time.
"""

import ast
import io
import logging
import subprocess
import sys
import tokenize
from pathlib import Path

import nbformat
import papermill
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PAPERMILL = Path(sys.executable).with_name("papermill")


def _cells(path):
    return nbformat.read(path, as_version=4).cells


def _parameters_source(path) -> str:
    (cell,) = [c for c in _cells(path) if "parameters" in c.metadata.get("tags", [])]
    return cell.source


def _parameters(source: str) -> dict:
    """``{name: (annotation node or None, default node)}`` of the assignments of a parameters cell."""
    out = {}
    for stmt in ast.parse(source).body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            out[stmt.target.id] = (stmt.annotation, stmt.value)
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            out[stmt.targets[0].id] = (None, stmt.value)
        else:
            raise AssertionError(f"the parameters cell holds only `name: type = value` lines; "
                                 f"got {ast.unparse(stmt)!r}")
    return out


def _annotation(node: ast.expr) -> ast.expr:
    """The annotation as an expression (a string annotation such as ``"Optional[str]"`` parsed)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return ast.parse(node.value, mode="eval").body
    return node


def _conforms(value, ann: ast.expr) -> bool:
    """Whether a literal default ``value`` is of the annotated type."""
    if isinstance(ann, ast.Name) and ann.id in ("bool", "int", "float", "str"):
        if ann.id == "bool":
            return isinstance(value, bool)
        if ann.id == "str":
            return isinstance(value, str)
        if ann.id == "int":
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(ann, ast.Subscript) and isinstance(ann.value, ast.Name):
        if ann.value.id == "list":
            return isinstance(value, list) and all(_conforms(v, ann.slice) for v in value)
        if ann.value.id == "Optional":
            return value is None or _conforms(value, ann.slice)
        if ann.value.id == "dict" and isinstance(ann.slice, ast.Tuple):
            k, v = ann.slice.elts
            return isinstance(value, dict) and all(_conforms(a, k) and _conforms(b, v) for a, b in value.items())
    raise AssertionError(f"annotation {ast.unparse(ann)!r} is none of bool, int, float, str, list[...], "
                         f"dict[..., ...], Optional[...]")


def _spec_annotation(node: ast.expr) -> str:
    """A ``check_parameters`` spec entry (``bool``, ``[int]``, ``(str, None)``) written as an annotation."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.List) and len(node.elts) == 1:
        return f"list[{_spec_annotation(node.elts[0])}]"
    if isinstance(node, ast.Tuple):
        kinds = [e for e in node.elts if not (isinstance(e, ast.Constant) and e.value is None)]
        if len(kinds) == 1 and len(node.elts) == 2:
            return f"Optional[{_spec_annotation(kinds[0])}]"
    raise AssertionError(f"unexpected check_parameters spec {ast.unparse(node)!r}")


def _checked_spec(path) -> dict:
    """``{name: annotation}`` from the ``check_parameters(globals(), {...})`` call of the notebook."""
    for cell in _cells(path):
        if cell.cell_type != "code" or "check_parameters(" not in cell.source:
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check_parameters"
                    and len(node.args) >= 2 and isinstance(node.args[1], ast.Dict)):
                return {k.value: _spec_annotation(v) for k, v in zip(node.args[1].keys, node.args[1].values)}
    raise AssertionError(f"{path.name} never calls check_parameters(globals(), {{...}})")


def _flat(s: str) -> str:
    return "".join(s.split())


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_lists_every_parameter_with_its_type_and_default(path, caplog):
    expected = _parameters(_parameters_source(path))
    with caplog.at_level(logging.WARNING):
        inspected = papermill.inspect_notebook(str(path))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not warnings, f"papermill warns on {path.name}: {warnings}"
    assert list(inspected) == list(expected), f"{path.name}: papermill finds {list(inspected)}"
    for name, (ann, default) in expected.items():
        got = inspected[name]
        assert got["inferred_type_name"] not in ("None", ""), (
            f"{path.name}: papermill knows no type for {name!r}: annotate it (`{name}: <type> = ...`)")
        assert ann is not None
        assert _flat(got["inferred_type_name"]) == _flat(ast.unparse(_annotation(ann))), (path.name, name, got)
        value = ast.literal_eval(default)
        assert ast.literal_eval(got["default"]) == value, f"{path.name}: papermill reads {name!r} as {got['default']!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_annotations_agree_with_the_defaults_and_the_checked_spec(path):
    params = _parameters(_parameters_source(path))
    spec = _checked_spec(path)
    assert set(spec) == set(params), (
        f"{path.name}: check_parameters checks {sorted(spec)}, the cell sets {sorted(params)}")
    for name, (ann, default) in params.items():
        assert ann is not None, f"{path.name}: {name!r} has no annotation"
        ann = _annotation(ann)
        assert _conforms(ast.literal_eval(default), ann), (
            f"{path.name}: {name!r} = {ast.unparse(default)} is no {ast.unparse(ann)}")
        assert _flat(ast.unparse(ann)) == _flat(spec[name]), (
            f"{path.name}: {name!r} is annotated {ast.unparse(ann)} but checked as {spec[name]}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_comments_of_the_parameters_cell_stand_on_their_own_lines(path):
    source = _parameters_source(path)
    lines = source.splitlines()
    trailing = [lines[t.start[0] - 1] for t in tokenize.generate_tokens(io.StringIO(source).readline)
                if t.type == tokenize.COMMENT and lines[t.start[0] - 1][: t.start[1]].strip()]
    assert not trailing, f"{path.name}: put these comments on their own line above the parameter: {trailing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_help_notebook_from_the_command_line(path):
    expected = _parameters(_parameters_source(path))
    # without --log-level WARNING, --help-notebook lowers the log level to ERROR and hides parse warnings
    proc = subprocess.run([str(PAPERMILL), "--log-level", "WARNING", "--help-notebook", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert "Unable to parse" not in out, out
    assert "Unknown type" not in out, out
    for name, (ann, _) in expected.items():
        assert f"  {name}: {ast.unparse(_annotation(ann))} (default " in out, (name, out)
