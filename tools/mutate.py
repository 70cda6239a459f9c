"""Mutation testing for trustkit: how many small, plausible bugs do the tests catch?

The tool parses each target module with :mod:`ast`, makes one *mutant* per mutation site (a copy of the
module with exactly one small edit), and runs the target's test files against every mutant inside an
isolated copy of the repository. A mutant is *killed* when the tests fail (or time out) and *survives*
when they still pass; a surviving mutant is a behaviour no test pins down.

Operators
---------
``cmp_flip``
    Negate one comparison operator: ``<`` <-> ``>=``, ``<=`` <-> ``>``, ``==`` <-> ``!=``,
    ``is`` <-> ``is not``, ``in`` <-> ``not in`` (one mutant per operator of a chained comparison).
``cmp_boundary`` (off unless named in ``--operators``)
    Move a boundary: ``<`` <-> ``<=``, ``>`` <-> ``>=``.
``neg_remove``
    Remove a unary minus: ``-x`` -> ``x``.
``neg_add``
    Negate a non-zero numeric literal that is an operand of an arithmetic expression: ``x * 2`` -> ``x * -2``.
``binop``
    Swap ``+`` <-> ``-`` and ``*`` <-> ``/``, in expressions and in augmented assignments (``+=`` -> ``-=``).
``minmax``
    Swap ``min`` <-> ``max`` in calls: builtins, methods and functions (``min``, ``amin``, ``argmin``,
    ``minimum``, ``nanmin``, ``nanargmin`` and their ``max`` twins) and the ``min=``/``max=`` keywords
    of a call (``x.clamp(min=0)`` -> ``x.clamp(max=0)``).
``boolop``
    Swap ``and`` <-> ``or``.
``bool_const``
    Flip ``True`` <-> ``False`` in ``return`` values and in default values of parameters.
``order_flip``
    Reverse an ordering: flip ``reverse=`` / ``descending=`` / ``largest=`` of a call (``not (...)`` when
    the value is not a literal), add ``reverse=True`` to ``sorted(...)`` and ``descending=True`` to
    ``torch.sort``/``torch.argsort`` when absent, negate the key of ``np.argsort(x)``, and drop a
    ``[::-1]`` reversal.

Never mutated: docstrings and other string expressions, f-strings, ``__repr__``/``__str__`` bodies,
calls to ``warnings.warn``/``print``/logging, ``raise`` statements (their messages), ``assert``
statements, type annotations, and the bodies of ``if TYPE_CHECKING:`` and ``if __name__ == "__main__":``.

How a run works
---------------
1. ``trustkit/`` (the package of the target), the folders that hold the test files and the pytest
   configuration files are copied once to a temporary directory; the working tree is never written.
2. The test files run once, unmutated, to time them (the per-mutant timeout is ``--timeout-factor``
   times that, at least ``--min-timeout`` seconds; a timeout counts as killed), and once more under a
   line tracer (``sys.settrace``, in a pytest plugin loaded with ``-p``) that records which lines of the
   target files each test executes. Mutants on lines no test executes are *not covered*: they are not
   run, and are reported apart.
3. Each mutant is written over its file in the copy and the tests run there with
   ``TRUSTKIT_TEST_THREADS=1 OMP_NUM_THREADS=1 python -m pytest -x -q -p no:cacheprovider -p no:randomly``,
   ``PYTHONPATH`` and the working directory set to the copy; a guard plugin stops the run with exit
   status 99 unless the package and the mutated module are imported from the copy. By default only the
   tests that executed the mutated line run; a mutant on a line that runs at import time, or inside a
   fixture's setup or teardown, runs the whole test files (``--all-tests`` always runs them all).

Survival rate = survived / (killed + survived); the rate "with not covered" counts not-covered mutants
as survivors. Timeouts count as killed. The JSON output lists every mutant with its status, and the
survivors and not-covered mutants apart, each with its file, line and the line before and after.

Examples
--------
Run the three default areas on a sample of 60 mutants each::

    python tools/mutate.py --repo . --sample 60 --seed 0 --out mutation.json

One area with explicit test files::

    python tools/mutate.py --repo . --target trustkit/metrics \\
        --tests tests/test_metrics.py tests/test_robustness.py --out metrics.json

Check some survivors again after writing tests for them (ids from the JSON, or from ``--list``)::

    python tools/mutate.py --repo . --target trustkit/metrics --ids trustkit/metrics/_utility.py:141:19:boolop:1
"""
from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import glob
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

#: default areas: target (file or folder, relative to the repository) -> test file globs
DEFAULT_TARGETS: dict[str, list[str]] = {
    "trustkit/metrics": ["tests/test_metrics*.py", "tests/test_robustness.py"],
    "trustkit/train/_schedulers.py": ["tests/test_train_schedulers.py"],
    "trustkit/select": ["tests/test_select*.py"],
}

ALL_OPERATORS = ("cmp_flip", "cmp_boundary", "neg_remove", "neg_add", "binop", "minmax", "boolop",
                 "bool_const", "order_flip")
DEFAULT_OPERATORS = tuple(op for op in ALL_OPERATORS if op != "cmp_boundary")

CONFIG_FILES = ("pyproject.toml", "setup.cfg", "pytest.ini", "tox.ini", "conftest.py")
GUARD_EXIT = 99

_CMP_FLIP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.LtE: ast.Gt, ast.Gt: ast.LtE, ast.Eq: ast.NotEq,
             ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In}
_CMP_BOUNDARY = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}
_CMP_TEXT = {ast.Lt: "<", ast.GtE: ">=", ast.LtE: "<=", ast.Gt: ">", ast.Eq: "==", ast.NotEq: "!=",
             ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}
_CMP_RE = {ast.Lt: r"<(?!=)", ast.GtE: r">=", ast.LtE: r"<=", ast.Gt: r">(?!=)", ast.Eq: r"==",
           ast.NotEq: r"!=", ast.Is: r"\bis\b(?!\s+not\b)", ast.IsNot: r"\bis\s+not\b",
           ast.In: r"(?<!not )\bin\b", ast.NotIn: r"\bnot\s+in\b"}
_BINOP_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}
_BINOP_TEXT = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_MINMAX = {}
for _lo, _hi in [("min", "max"), ("amin", "amax"), ("argmin", "argmax"), ("minimum", "maximum"),
                 ("nanmin", "nanmax"), ("nanargmin", "nanargmax")]:
    _MINMAX[_lo], _MINMAX[_hi] = _hi, _lo
_ORDER_KEYWORDS = {"reverse", "descending", "largest"}
_SKIP_FUNCTIONS = {"__repr__", "__str__", "__format__", "_repr_html_", "_repr_markdown_"}
_LOG_NAMES = {"logging", "logger", "log", "_log", "_logger", "LOGGER", "LOG"}


@dataclasses.dataclass
class Mutant:
    """One mutant: a single edit of one file."""

    id: str
    file: str  # path relative to the repository, with forward slashes
    line: int
    col: int
    operator: str
    original: str  # the source text that is replaced
    mutated: str  # the text that replaces it
    scope: str  # "body": runs when a function is called; "import": runs when the module is imported
    cover_lines: tuple[int, int]  # any executed line in this range covers the mutant
    start: int = 0  # character offsets of the edit in the file
    end: int = 0
    edits: tuple = ()  # (start, end, new text) edits of the file text
    line_before: str = ""
    line_after: str = ""
    status: str = "pending"
    duration_s: float = 0.0
    tests_run: str = ""
    killed_by: str = ""  # the first failing test, as pytest reports it

    def public(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("start", "end", "cover_lines", "edits"):
            d.pop(k)
        return d


# --------------------------------------------------------------------------------------------------
# mutant generation


class _Source:
    """Maps (line, col) positions of an AST node to offsets in the text."""

    def __init__(self, text: str):
        self.text = text
        self.line_starts = [0]
        for m in re.finditer("\n", text):
            self.line_starts.append(m.end())
        self._lines = text.splitlines()

    def offset(self, line: int, col: int) -> int:
        # ast columns are UTF-8 byte offsets
        start = self.line_starts[line - 1]
        line_text = self.text[start:self.line_starts[line] if line < len(self.line_starts) else None]
        return start + len(line_text.encode("utf-8")[:col].decode("utf-8", errors="ignore"))

    def start(self, node: ast.AST) -> int:
        return self.offset(node.lineno, node.col_offset)

    def end(self, node: ast.AST) -> int:
        return self.offset(node.end_lineno, node.end_col_offset)

    def line_of(self, offset: int) -> int:
        lo, hi = 0, len(self.line_starts)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.line_starts[mid] <= offset:
                lo = mid
            else:
                hi = mid
        return lo + 1


def _strip_comments(gap: str) -> str:
    """Blank out comments in text that holds no string literal (the gap between two operands)."""
    return re.sub(r"#[^\n]*", lambda m: " " * len(m.group()), gap)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _is_main_guard(test: ast.expr) -> bool:
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and len(test.comparators) == 1 and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__")


def _is_log_call(node: ast.Call) -> bool:
    f = node.func
    if isinstance(f, ast.Name):
        return f.id in {"print", "warn"}
    if isinstance(f, ast.Attribute):
        base = f.value
        if isinstance(base, ast.Name) and base.id == "warnings" and f.attr == "warn":
            return True
        while isinstance(base, ast.Attribute):
            if base.attr in _LOG_NAMES:
                return True
            base = base.value
        if isinstance(base, ast.Name) and base.id in _LOG_NAMES:
            return True
    return False


def _is_numeric_constant(node: ast.AST) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, (int, float))
            and not isinstance(node.value, bool) and node.value != 0)


def _func_name(node: ast.Call) -> tuple[str | None, str | None]:
    """(receiver name or None, function/method name) of a call."""
    f = node.func
    if isinstance(f, ast.Name):
        return None, f.id
    if isinstance(f, ast.Attribute):
        return (f.value.id if isinstance(f.value, ast.Name) else ""), f.attr
    return None, None


class _Collector:
    """Walks a module and proposes edits; every edit is checked against the expected tree."""

    def __init__(self, text: str, relpath: str, operators: tuple[str, ...]):
        self.src = _Source(text)
        self.text = text
        self.relpath = relpath
        self.operators = set(operators)
        self.tree = ast.parse(text)
        self.mutants: list[Mutant] = []
        self._target_dump = None

    # -- walking ----------------------------------------------------------------------------------
    def run(self) -> list[Mutant]:
        self._walk(self.tree, parent=None, field=None, index=None, scope="import", stmt=None)
        self.mutants.sort(key=lambda m: (m.start, m.operator, m.mutated))
        seen: dict[str, int] = {}
        for m in self.mutants:
            base = f"{m.file}:{m.line}:{m.col}:{m.operator}"
            seen[base] = seen.get(base, 0) + 1
            m.id = f"{base}:{seen[base]}"
        return self.mutants

    def _walk(self, node, parent, field, index, scope, stmt):
        if isinstance(node, ast.stmt):
            stmt = node
        if self._skip(node):
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name in _SKIP_FUNCTIONS:
                return
            for d in node.decorator_list:
                self._walk(d, node, "decorator_list", None, scope, stmt)
            self._visit_args(node.args, scope, stmt, function=node)
            for i, child in enumerate(node.body):
                self._walk(child, node, "body", i, "body", child)
            return
        if isinstance(node, ast.Lambda):
            self._visit_args(node.args, scope, stmt, function=node)
            self._walk(node.body, node, "body", None, "body", stmt)
            return
        if isinstance(node, ast.If) and (_is_type_checking(node.test) or _is_main_guard(node.test)):
            for i, child in enumerate(node.orelse):
                self._walk(child, node, "orelse", i, scope, child)
            return
        if isinstance(node, ast.AnnAssign):
            if node.value is not None:
                self._walk(node.value, node, "value", None, scope, stmt)
            return
        self._mutate(node, parent, field, index, scope, stmt)
        for fname, value in ast.iter_fields(node):
            if isinstance(value, list):
                for i, child in enumerate(value):
                    if isinstance(child, ast.AST):
                        self._walk(child, node, fname, i, scope,
                                   child if isinstance(child, ast.stmt) else stmt)
            elif isinstance(value, ast.AST):
                self._walk(value, node, fname, None, scope, stmt)

    def _visit_args(self, args: ast.arguments, scope, stmt, function):
        # default values are evaluated when the def statement runs: scope of the enclosing code
        for i, d in enumerate(args.defaults):
            self._walk(d, args, "defaults", i, scope, stmt)
            self._bool_const(d, args, "defaults", i, scope, stmt)
        for i, d in enumerate(args.kw_defaults):
            if d is not None:
                self._walk(d, args, "kw_defaults", i, scope, stmt)
                self._bool_const(d, args, "kw_defaults", i, scope, stmt)

    def _skip(self, node) -> bool:
        if isinstance(node, (ast.Raise, ast.Assert, ast.JoinedStr, ast.Import, ast.ImportFrom, ast.Global,
                             ast.Nonlocal)):
            return True
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value,
                                                                                                str):
            return True
        if isinstance(node, ast.Call) and _is_log_call(node):
            return True
        return False

    # -- proposing edits --------------------------------------------------------------------------
    def _mutate(self, node, parent, field, index, scope, stmt):
        ops = self.operators
        if isinstance(node, ast.Compare):
            prev = node.left
            for i, (op, right) in enumerate(zip(node.ops, node.comparators)):
                for name, table in (("cmp_flip", _CMP_FLIP), ("cmp_boundary", _CMP_BOUNDARY)):
                    if name in ops and type(op) in table:
                        new = copy.copy(node)
                        new.ops = list(node.ops)
                        new.ops[i] = table[type(op)]()
                        self._gap_edit(node, new, parent, field, index, prev, right, _CMP_RE[type(op)],
                                       _CMP_TEXT[table[type(op)]], name, scope, stmt)
                prev = right
        elif isinstance(node, ast.BinOp) and "binop" in ops and type(node.op) in _BINOP_SWAP:
            new = copy.copy(node)
            new.op = _BINOP_SWAP[type(node.op)]()
            self._gap_edit(node, new, parent, field, index, node.left, node.right,
                           re.escape(_BINOP_TEXT[type(node.op)]), _BINOP_TEXT[type(new.op)], "binop", scope, stmt)
        elif isinstance(node, ast.AugAssign) and "binop" in ops and type(node.op) in _BINOP_SWAP:
            new = copy.copy(node)
            new.op = _BINOP_SWAP[type(node.op)]()
            self._gap_edit(node, new, parent, field, index, node.target, node.value,
                           re.escape(_BINOP_TEXT[type(node.op)] + "="), _BINOP_TEXT[type(new.op)] + "=", "binop",
                           scope, stmt)
        elif isinstance(node, ast.BoolOp) and "boolop" in ops:
            new = copy.copy(node)
            new.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            old_word, new_word = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
            edits = []
            for a, b in zip(node.values, node.values[1:]):
                edit = self._find_in_gap(a, b, rf"\b{old_word}\b")
                if edit is None:
                    edits = None
                    break
                edits.append((edit[0], edit[1], new_word))
            self._propose(node, new, parent, field, index, edits, "boolop", scope, stmt)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and "neg_remove" in ops:
            s = self.src.start(node)
            if self.text[s] == "-":
                self._propose(node, node.operand, parent, field, index, [(s, s + 1, "")], "neg_remove", scope, stmt)
        elif isinstance(node, ast.Call):
            self._mutate_call(node, parent, field, index, scope, stmt)
        elif isinstance(node, ast.Subscript) and "order_flip" in ops:
            sl = node.slice
            if (isinstance(sl, ast.Slice) and sl.lower is None and sl.upper is None and sl.step is not None
                    and isinstance(sl.step, ast.UnaryOp) and isinstance(sl.step.op, ast.USub)
                    and isinstance(sl.step.operand, ast.Constant) and sl.step.operand.value == 1):
                value_end = self.src.end(node.value)
                self._propose(node, node.value, parent, field, index, [(value_end, self.src.end(node), "")],
                              "order_flip", scope, stmt)
        elif isinstance(node, ast.Return) and node.value is not None:
            self._bool_const(node.value, node, "value", None, scope, stmt)
        if "neg_add" in ops and isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult,
                                                                                      ast.Div, ast.Pow,
                                                                                      ast.FloorDiv, ast.Mod)):
            for fname in ("left", "right"):
                operand = getattr(node, fname)
                if _is_numeric_constant(operand):
                    s = self.src.start(operand)
                    new = ast.UnaryOp(op=ast.USub(), operand=operand)
                    self._propose(operand, new, node, fname, None, [(s, s, "-")], "neg_add", scope, stmt,
                                  fallback_parens=True)

    def _mutate_call(self, node: ast.Call, parent, field, index, scope, stmt):
        ops = self.operators
        recv, name = _func_name(node)
        if "minmax" in ops:
            if name in _MINMAX:
                f = node.func
                new_func = copy.copy(f)
                if isinstance(f, ast.Name):
                    new_func.id = _MINMAX[name]
                else:
                    new_func.attr = _MINMAX[name]
                e = self.src.end(f)
                new = copy.copy(node)
                new.func = new_func
                if self.text[e - len(name):e] == name:
                    self._propose(node, new, parent, field, index, [(e - len(name), e, _MINMAX[name])], "minmax",
                                  scope, stmt)
            for k, kw in enumerate(node.keywords):
                if kw.arg in ("min", "max") and not any(o.arg == _MINMAX[kw.arg] for o in node.keywords):
                    new = copy.copy(node)
                    new.keywords = list(node.keywords)
                    new.keywords[k] = ast.keyword(arg=_MINMAX[kw.arg], value=kw.value)
                    s = self.src.start(kw)
                    if self.text[s:s + 3] == kw.arg:
                        self._propose(node, new, parent, field, index, [(s, s + 3, _MINMAX[kw.arg])], "minmax",
                                      scope, stmt)
        if "order_flip" not in ops:
            return
        flipped = False
        for k, kw in enumerate(node.keywords):
            if kw.arg in _ORDER_KEYWORDS:
                flipped = True
                new = copy.copy(node)
                new.keywords = list(node.keywords)
                v = kw.value
                if isinstance(v, ast.Constant) and isinstance(v.value, bool):
                    new_value = ast.Constant(value=not v.value)
                    text = repr(not v.value)
                else:
                    new_value = ast.UnaryOp(op=ast.Not(), operand=v)
                    text = f"not ({ast.get_source_segment(self.text, v)})"
                new.keywords[k] = ast.keyword(arg=kw.arg, value=new_value)
                self._propose(node, new, parent, field, index, [(self.src.start(v), self.src.end(v), text)],
                              "order_flip", scope, stmt)
        if flipped or not (node.args or node.keywords):
            return
        add = None
        if recv is None and name == "sorted":
            add = "reverse"
        elif recv == "torch" and name in ("sort", "argsort"):
            add = "descending"
        if add is not None:
            new = copy.copy(node)
            new.keywords = list(node.keywords) + [ast.keyword(arg=add, value=ast.Constant(value=True))]
            last = max([*node.args, *node.keywords], key=self.src.end)
            e = self.src.end(last)
            self._propose(node, new, parent, field, index, [(e, e, f", {add}=True")], "order_flip", scope, stmt)
        elif recv in ("np", "numpy") and name == "argsort" and node.args:
            a = node.args[0]
            new = copy.copy(node)
            new.args = [ast.UnaryOp(op=ast.USub(), operand=a), *node.args[1:]]
            s, e = self.src.start(a), self.src.end(a)
            self._propose(node, new, parent, field, index, [(s, e, f"-({self.text[s:e]})")], "order_flip", scope,
                          stmt)

    def _bool_const(self, value, parent, field, index, scope, stmt):
        if "bool_const" in self.operators and isinstance(value, ast.Constant) and isinstance(value.value, bool):
            new = ast.Constant(value=not value.value)
            self._propose(value, new, parent, field, index,
                          [(self.src.start(value), self.src.end(value), repr(not value.value))], "bool_const",
                          scope, stmt)

    def _find_in_gap(self, a: ast.AST, b: ast.AST, pattern: str):
        s, e = self.src.end(a), self.src.start(b)
        found = list(re.finditer(pattern, _strip_comments(self.text[s:e])))
        if len(found) != 1:
            return None
        return s + found[0].start(), s + found[0].end()

    def _gap_edit(self, node, new, parent, field, index, a, b, pattern, text, operator, scope, stmt):
        edit = self._find_in_gap(a, b, pattern)
        self._propose(node, new, parent, field, index, None if edit is None else [(edit[0], edit[1], text)],
                      operator, scope, stmt)

    def _propose(self, node, new, parent, field, index, edits, operator, scope, stmt, fallback_parens=False):
        """Accept the text edits only if the edited module parses to the tree with ``node`` -> ``new``."""
        if parent is None or field is None:
            return
        expected = self._expected_dump(node, new, parent, field, index)
        candidates = []
        if edits:
            candidates.append(edits)
        s, e = self.src.start(node), self.src.end(node)
        if fallback_parens and edits:
            candidates.append([(s, s, "(")] + edits + [(e, e, ")")])
        if isinstance(new, ast.AST) and not isinstance(new, ast.stmt):
            try:
                candidates.append([(s, e, "(" + ast.unparse(new) + ")")])
            except Exception:  # noqa: BLE001 - an unparsable node simply gets no fallback
                pass
        for cand in candidates:
            text = self._apply(cand)
            try:
                got = ast.dump(ast.parse(text))
            except SyntaxError:
                continue
            if got == expected:
                first = min(c[0] for c in cand)
                last = max(c[1] for c in cand)
                new_last = last + sum(len(t) - (b - a) for a, b, t in cand)
                line = self.src.line_of(first)
                line_start = self.src.line_starts[line - 1]
                header_end = node.end_lineno
                self.mutants.append(Mutant(
                    id="", file=self.relpath, line=line, col=first - line_start, operator=operator,
                    original=self.text[first:last], mutated=text[first:new_last], scope=scope,
                    cover_lines=(stmt.lineno if stmt is not None else node.lineno, header_end),
                    start=first, end=last, edits=tuple(cand),
                    line_before=self.text.splitlines()[line - 1].strip(),
                    line_after=text.splitlines()[line - 1].strip() if line <= len(text.splitlines()) else "",
                ))
                return

    def _apply(self, edits) -> str:
        out, pos = [], 0
        for a, b, t in sorted(edits, key=lambda x: (x[0], x[1])):
            out.append(self.text[pos:a])
            out.append(t)
            pos = b
        out.append(self.text[pos:])
        return "".join(out)

    def _expected_dump(self, node, new, parent, field, index) -> str:
        if index is None:
            setattr(parent, field, new)
            try:
                return ast.dump(self.tree)
            finally:
                setattr(parent, field, node)
        seq = getattr(parent, field)
        seq[index] = new
        try:
            return ast.dump(self.tree)
        finally:
            seq[index] = node


def generate_mutants(text: str, relpath: str, operators=DEFAULT_OPERATORS) -> list[Mutant]:
    """All mutants of one module's source ``text``; ``relpath`` names the file in the mutants."""
    return _Collector(text, relpath, tuple(operators)).run()


def apply_mutant(text: str, mutant: Mutant) -> str:
    """The module source with ``mutant`` applied."""
    edits = mutant.edits or [(mutant.start, mutant.end, mutant.mutated)]
    out, pos = [], 0
    for a, b, t in sorted(edits, key=lambda x: (x[0], x[1])):
        out.append(text[pos:a])
        out.append(t)
        pos = b
    out.append(text[pos:])
    return "".join(out)


# --------------------------------------------------------------------------------------------------
# pytest plugins written into the scratch directory

_GUARD_PLUGIN = textwrap.dedent('''
    """Stop the run unless the package under test is imported from the scratch copy."""
    import importlib
    import os
    import sys

    import pytest


    def _inside(path, root):
        path, root = os.path.realpath(path), os.path.realpath(root)
        return os.path.commonpath([path, root]) == root


    def pytest_collection_finish(session):
        root = os.environ["MUTATE_COPY_ROOT"]
        pkg = importlib.import_module(os.environ["MUTATE_PACKAGE"])
        problems = []
        if not _inside(pkg.__file__, root):
            problems.append(f"{pkg.__name__} imported from {pkg.__file__}, outside {root}")
        mod_name = os.environ.get("MUTATE_MODULE")
        if mod_name and mod_name in sys.modules:
            mod = sys.modules[mod_name]
            expected = os.path.join(root, os.environ["MUTATE_MODULE_FILE"])
            if os.path.realpath(mod.__file__) != os.path.realpath(expected):
                problems.append(f"{mod_name} imported from {mod.__file__}, expected {expected}")
        if problems:
            sys.stderr.write("MUTATE GUARD: " + "; ".join(problems) + "\\n")
            pytest.exit("mutate guard: " + "; ".join(problems), returncode=%d)
''' % GUARD_EXIT)

_TRACE_PLUGIN = textwrap.dedent('''
    """Record which lines of the target files each test phase executes (sys.settrace)."""
    import json
    import os
    import sys
    import threading

    import pytest

    _ROOT = os.path.realpath(os.environ["MUTATE_COPY_ROOT"])
    _TARGETS = set(json.loads(os.environ["MUTATE_TRACE_FILES"]))  # paths relative to the root
    _known = {}
    _records = {"<outside>": set()}
    _current = [_records["<outside>"]]
    _order = []


    def _target(filename):
        hit = _known.get(filename)
        if hit is None:
            path = os.path.realpath(filename)
            rel = os.path.relpath(path, _ROOT).replace(os.sep, "/") if path.startswith(_ROOT) else None
            hit = _known[filename] = rel if rel in _TARGETS else False
        return hit


    def _local(frame, event, arg):
        if event == "line":
            _current[0].add((_known[frame.f_code.co_filename], frame.f_lineno))
        return _local


    def _global(frame, event, arg):
        rel = _target(frame.f_code.co_filename)
        if rel:
            _current[0].add((rel, frame.f_lineno))
            return _local
        return None


    sys.settrace(_global)
    threading.settrace(_global)


    def _switch(key):
        _current[0] = _records.setdefault(key, set())


    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(item):
        _order.append(item.nodeid)
        _switch("setup\\t" + item.nodeid)
        yield
        _switch("<outside>")


    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(item):
        _switch("call\\t" + item.nodeid)
        yield
        _switch("<outside>")


    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_teardown(item):
        _switch("teardown\\t" + item.nodeid)
        yield
        _switch("<outside>")


    def pytest_sessionfinish(session, exitstatus):
        sys.settrace(None)
        threading.settrace(None)
        out = {"order": _order, "records": {k: sorted(v) for k, v in _records.items()}}
        with open(os.environ["MUTATE_TRACE_OUT"], "w") as fh:
            json.dump(out, fh)
''')


# --------------------------------------------------------------------------------------------------
# running tests in the scratch copy


class Sandbox:
    """A scratch copy of the package, the test folders and the pytest configuration."""

    def __init__(self, repo: Path, package: str, test_files: list[str], python: str, workdir: Path):
        self.repo = repo
        self.package = package
        self.python = python
        self.root = Path(tempfile.mkdtemp(prefix="mutate-copy-", dir=workdir))
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", ".pytest_cache")
        shutil.copytree(repo / package, self.root / package, ignore=ignore)
        for folder in sorted({Path(t).parts[0] for t in test_files if len(Path(t).parts) > 1}):
            if not (self.root / folder).exists():
                shutil.copytree(repo / folder, self.root / folder, ignore=ignore)
        for name in CONFIG_FILES:
            if (repo / name).is_file() and not (self.root / name).exists():
                shutil.copy2(repo / name, self.root / name)
        self.plugins = Path(tempfile.mkdtemp(prefix="mutate-plugins-", dir=workdir))
        (self.plugins / "_mutate_guard.py").write_text(_GUARD_PLUGIN)
        (self.plugins / "_mutate_trace.py").write_text(_TRACE_PLUGIN)

    def env(self, extra: dict | None = None) -> dict:
        env = dict(os.environ)
        for k in ("PYTHONHOME", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "COVERAGE_PROCESS_START"):
            env.pop(k, None)
        env.update({
            "PYTHONPATH": os.pathsep.join([str(self.root), str(self.plugins)]),
            "PYTHONDONTWRITEBYTECODE": "1",  # never reuse a compiled mutant (or original) of the same size
            "TRUSTKIT_TEST_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1", "MUTATE_COPY_ROOT": str(self.root), "MUTATE_PACKAGE": self.package,
        })
        env.update(extra or {})
        return env

    def pytest(self, tests: list[str], timeout: float | None, extra_env: dict | None = None, trace: bool = False,
               stop_first: bool = True):
        """Run pytest in the copy; returns (status, seconds, output tail); status is the exit code or 'timeout'."""
        cmd = [self.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
               "-p", "_mutate_guard"]
        if stop_first:
            cmd.insert(3, "-x")
        if trace:
            cmd += ["-p", "_mutate_trace"]
        cmd += list(tests)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=self.root, env=self.env(extra_env), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
            status = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            status = "timeout"
        seconds = time.perf_counter() - t0
        if status == GUARD_EXIT:
            raise RuntimeError("the tests did not import the code from the scratch copy:\n" + out[-2000:])
        return status, seconds, (out or "")[-3000:]

    def write(self, relpath: str, text: str):
        (self.root / relpath).write_text(text)

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.plugins, ignore_errors=True)


def _module_name(relpath: str) -> str:
    parts = list(Path(relpath).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


class Coverage:
    """Lines of the target files executed by the clean run, per test."""

    def __init__(self, trace: dict):
        self.order: list[str] = trace["order"]
        self.outside: dict[str, set[int]] = {}  # file -> lines run at import or in setup/teardown
        self.by_line: dict[tuple[str, int], set[str]] = {}
        for key, lines in trace["records"].items():
            phase, _, nodeid = key.partition("\t")
            for rel, line in lines:
                if phase == "call":
                    self.by_line.setdefault((rel, line), set()).add(nodeid)
                else:
                    self.outside.setdefault(rel, set()).add(line)
        self.files = {rel for rel, _ in self.by_line} | set(self.outside)

    def tests_for(self, mutant: Mutant):
        """None when not covered; 'all' when the whole test files must run; else the node ids, in run order."""
        if mutant.file not in self.files:
            return None
        if mutant.scope == "import":
            return "all"
        lo, hi = mutant.cover_lines
        lines = range(lo, hi + 1)
        if any(line in self.outside.get(mutant.file, ()) for line in lines):
            return "all"
        ids = set()
        for line in lines:
            ids |= self.by_line.get((mutant.file, line), set())
        if not ids:
            return None
        return [n for n in self.order if n in ids]


# --------------------------------------------------------------------------------------------------
# driver


def _target_files(repo: Path, target: str) -> list[str]:
    path = repo / target
    if path.is_file():
        return [target]
    if not path.is_dir():
        raise SystemExit(f"--target {target!r}: no such file or folder under {repo}")
    return sorted(p.relative_to(repo).as_posix() for p in path.rglob("*.py") if "__pycache__" not in p.parts)


def _test_files(repo: Path, patterns: list[str]) -> list[str]:
    files: list[str] = []
    for pat in patterns:
        hits = sorted(glob.glob(str(repo / pat)))
        if not hits:
            raise SystemExit(f"--tests {pat!r}: matches no file under {repo}")
        for h in hits:
            rel = Path(h).relative_to(repo).as_posix()
            if rel not in files:
                files.append(rel)
    return files


def _only(mutants: list[Mutant], ids) -> list[Mutant]:
    if not ids:
        return mutants
    wanted = set(ids)
    return [m for m in mutants if m.id in wanted]


def select_sample(mutants: list[Mutant], n: int, seed: int) -> list[Mutant]:
    """A reproducible random sample of ``n`` mutants (all when ``n`` is 0 or too large), in file order."""
    mutants = sorted(mutants, key=lambda m: m.id)
    if n and n < len(mutants):
        mutants = random.Random(seed).sample(mutants, n)
    return sorted(mutants, key=lambda m: (m.file, m.start, m.id))


def _summary(statuses: list[str]) -> dict:
    count = {s: sum(st == s for st in statuses) for s in ("killed", "timeout", "survived", "not_covered",
                                                               "error")}
    killed = count["killed"] + count["timeout"]
    tested = killed + count["survived"]
    with_nc = tested + count["not_covered"]
    return {
        "mutants": len(statuses), "killed": count["killed"], "timeout": count["timeout"],
        "survived": count["survived"], "not_covered": count["not_covered"], "error": count["error"],
        "survival_rate": count["survived"] / tested if tested else None,
        "survival_rate_with_not_covered": (count["survived"] + count["not_covered"]) / with_nc if with_nc else None,
    }


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def markdown(result: dict) -> str:
    commit = f" (commit `{result['commit'][:12]}`)" if result.get("commit") else ""
    lines = [f"# Mutation testing: {result['repo']}{commit}", "",
             f"operators: {', '.join(result['operators'])}; sample: {result['sample'] or 'all'} per target, "
             f"seed {result['seed']}; only the tests that run a mutated line: {not result['all_tests']}; "
             f"elapsed {result['elapsed_s'] / 60:.1f} min", ""]
    lines += ["| target / file | mutants | killed | timeout | survived | not covered | error | survival | "
              "survival incl. not covered |", "|---|---|---|---|---|---|---|---|---|"]

    def row(name, s):
        return (f"| {name} | {s['mutants']} | {s['killed']} | {s['timeout']} | {s['survived']} | "
                f"{s['not_covered']} | {s['error']} | {_pct(s['survival_rate'])} | "
                f"{_pct(s['survival_rate_with_not_covered'])} |")

    for t in result["targets"]:
        lines.append(row(f"**{t['target']}** ({t['mutants_generated']} generated)", t["summary"]))
        for f, s in t["files"].items():
            lines.append(row(f"&nbsp;&nbsp;{f}", s))
    lines.append(row("**overall**", result["summary"]))
    lines.append("")
    for t in result["targets"]:
        surv = [m for m in t["mutants"] if m["status"] == "survived"]
        if surv:
            lines += [f"## Survivors in {t['target']} ({len(surv)})", ""]
            for m in surv:
                lines.append(f"- `{m['file']}:{m['line']}` {m['operator']}: `{m['line_before']}` -> "
                             f"`{m['line_after']}`")
            lines.append("")
        nc = [m for m in t["mutants"] if m["status"] == "not_covered"]
        if nc:
            lines += [f"## Not covered in {t['target']} ({len(nc)})", ""]
            for m in nc:
                lines.append(f"- `{m['file']}:{m['line']}` {m['operator']}: `{m['line_before']}`")
            lines.append("")
    return "\n".join(lines)


def _log(msg: str):
    print(msg, file=sys.stderr, flush=True)


def run_target(repo: Path, target: str, tests: list[str], args, workdir: Path) -> dict:
    files = _target_files(repo, target)
    mutants: list[Mutant] = []
    sources: dict[str, str] = {}
    for rel in files:
        sources[rel] = (repo / rel).read_text()
        mutants += generate_mutants(sources[rel], rel, args.operators)
    generated = len(mutants)
    mutants = select_sample(_only(mutants, args.ids), args.sample, args.seed)
    package = Path(target).parts[0]
    _log(f"[{target}] {len(files)} files, {generated} mutants, testing {len(mutants)} with {len(tests)} test files")

    boxes = [Sandbox(repo, package, tests, args.python, workdir) for _ in range(max(1, args.jobs))]
    try:
        status, clean_s, out = boxes[0].pytest(tests, None, stop_first=False)
        if status != 0:
            raise SystemExit(f"[{target}] the clean test run fails (exit {status}):\n{out}")
        trace_out = boxes[0].plugins / "trace.json"
        status, traced_s, out = boxes[0].pytest(tests, None, trace=True, stop_first=False, extra_env={
            "MUTATE_TRACE_FILES": json.dumps(files), "MUTATE_TRACE_OUT": str(trace_out)})
        if status != 0:
            raise SystemExit(f"[{target}] the traced clean test run fails (exit {status}):\n{out}")
        cov = Coverage(json.loads(trace_out.read_text()))
        timeout = max(args.min_timeout, args.timeout_factor * clean_s)
        _log(f"[{target}] clean run {clean_s:.1f}s (traced {traced_s:.1f}s); timeout per mutant {timeout:.0f}s")

        todo = []
        for m in mutants:
            sel = cov.tests_for(m)
            if sel is None:
                m.status = "not_covered"
            else:
                todo.append((m, tests if (sel == "all" or args.all_tests) else sel))
        lock = threading.Lock()
        free = list(boxes)
        done = [0]
        t_start = time.perf_counter()

        def work(item):
            m, sel = item
            with lock:
                box = free.pop()
            try:
                box.write(m.file, apply_mutant(sources[m.file], m))
                env = {"MUTATE_MODULE": _module_name(m.file), "MUTATE_MODULE_FILE": m.file}
                st, secs, out = box.pytest(sel, timeout, extra_env=env)
                if st in (4, 5) and sel is not tests:  # node ids not found: fall back to the whole files
                    st, secs, out = box.pytest(tests, timeout, extra_env=env)
            finally:
                box.write(m.file, sources[m.file])
                with lock:
                    free.append(box)
            m.duration_s = round(secs, 2)
            m.tests_run = "all" if sel is tests else f"{len(sel)} tests"
            if st == "timeout":
                m.status = "timeout"
            elif st == 0:
                m.status = "survived"
            elif st in (1, 2):  # failing tests, or an error while importing / collecting
                m.status = "killed"
                first = re.search(r"^(?:FAILED|ERROR) (\S+)", out, re.MULTILINE)
                m.killed_by = first.group(1) if first else f"exit {st}"
            else:
                m.status = "error"
                m.tests_run += f"; exit {st}: {out[-300:]}"
            with lock:
                done[0] += 1
                el = time.perf_counter() - t_start
                eta = el / done[0] * (len(todo) - done[0])
                _log(f"[{target}] {done[0]}/{len(todo)} {m.status:8s} {secs:5.1f}s {m.file}:{m.line} "
                     f"{m.operator} `{m.original}` -> `{m.mutated}` (eta {eta / 60:.1f} min)")

        if args.jobs > 1:
            with ThreadPoolExecutor(args.jobs) as ex:
                list(ex.map(work, todo))
        else:
            for item in todo:
                work(item)
    finally:
        for b in boxes:
            b.cleanup()

    # the working tree must be untouched
    for rel, text in sources.items():
        if (repo / rel).read_text() != text:
            raise RuntimeError(f"{rel} changed in {repo} while mutating (someone else edited it?)")
    by_file = {}
    for rel in files:
        ms = [m for m in mutants if m.file == rel]
        if ms:
            by_file[rel] = _summary([m.status for m in ms])
    return {"target": target, "tests": tests, "files_mutated": files, "mutants_generated": generated,
            "clean_time_s": round(clean_s, 2), "traced_time_s": round(traced_s, 2), "timeout_s": round(timeout, 1),
            "summary": _summary([m.status for m in mutants]), "files": by_file,
            "mutants": [m.public() for m in mutants]}


def _git_commit(repo: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", default=".", help="repository root (default: current directory)")
    p.add_argument("--target", nargs="+", help="files or folders to mutate, relative to --repo "
                   f"(default: {', '.join(DEFAULT_TARGETS)})")
    p.add_argument("--tests", nargs="+", help="test files or globs, relative to --repo (default: the mapping of "
                   "each default target)")
    p.add_argument("--sample", type=int, default=0, help="test a random sample of N mutants per target (0: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample")
    p.add_argument("--jobs", type=int, default=1, help="mutants tested at once, each in its own copy")
    p.add_argument("--operators", nargs="+", default=list(DEFAULT_OPERATORS), choices=ALL_OPERATORS,
                   help="mutation operators (default: all but cmp_boundary)")
    p.add_argument("--timeout-factor", type=float, default=3.0, help="timeout = factor x clean run time")
    p.add_argument("--min-timeout", type=float, default=10.0, help="smallest per-mutant timeout, seconds")
    p.add_argument("--all-tests", action="store_true", help="run the whole test files for every mutant "
                   "instead of only the tests that execute the mutated line")
    p.add_argument("--python", default=sys.executable, help="interpreter that runs pytest")
    p.add_argument("--out", help="write the JSON results here")
    p.add_argument("--markdown", help="also write the Markdown summary here (it always goes to stdout)")
    p.add_argument("--ids", nargs="+", help="only these mutants (ids as in the JSON or --list), e.g. to "
                   "check survivors again after adding tests")
    p.add_argument("--list", action="store_true", help="only list the mutants (no tests run)")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    repo = Path(args.repo).resolve()
    if args.tests and not args.target:
        raise SystemExit("--tests needs --target")
    targets = args.target or list(DEFAULT_TARGETS)
    if args.list:
        for target in targets:
            for rel in _target_files(repo, target):
                for m in _only(generate_mutants((repo / rel).read_text(), rel, args.operators), args.ids):
                    print(f"{m.id}\t{m.line_before}\t->\t{m.line_after}")
        return {}
    plan = []
    for target in targets:
        patterns = args.tests or DEFAULT_TARGETS.get(target.rstrip("/"))
        if not patterns:
            raise SystemExit(f"--target {target!r} has no default test files: pass --tests")
        plan.append((target, _test_files(repo, patterns)))
    t0 = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="mutate-"))
    try:
        results = [run_target(repo, target, tests, args, workdir) for target, tests in plan]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    everything = [m["status"] for t in results for m in t["mutants"]]
    result = {
        "repo": str(repo), "commit": _git_commit(repo), "python": args.python, "operators": list(args.operators),
        "sample": args.sample, "seed": args.seed, "all_tests": args.all_tests,
        "elapsed_s": round(time.perf_counter() - t0, 1), "summary": _summary(everything), "targets": results,
        "survivors": [m for t in results for m in t["mutants"] if m["status"] == "survived"],
        "not_covered": [m for t in results for m in t["mutants"] if m["status"] == "not_covered"],
    }
    md = markdown(result)
    print(md)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(md + "\n")
    return result


if __name__ == "__main__":
    main()
