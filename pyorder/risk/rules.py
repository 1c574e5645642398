"""Risk rules and their conditions: a small, safe expression language over the features.

A rule is an action and a condition, as in Stripe Radar (``docs/risk.md``, "Rules"):

    block if device_buyers_24h >= 5 and agent_class == 3
    review if ip_region_mismatch == 1 and amount > 3 * buyer_amount_24h
    request_3ds if score >= 50 and missing(buyer_orders_total)

A condition is a Python expression, parsed by the standard library's ``ast`` and refused unless
every node is on a short list: comparisons (chained too), ``and``/``or``/``not``, arithmetic
(``+ - * /``, unary minus), numbers, feature names, ``score`` (the model's 0-99 score) and
``missing(name)``. Nothing is evaluated by ``eval``: each condition is compiled into closures
for one order and into NumPy operations for a whole feature matrix (the evaluation, and the
batch path), which agree. A missing feature is NaN: every comparison with it is false (so
``x < 3`` and ``x >= 3`` are both false for a missing ``x``), and ``missing(x)`` tests it.
"""

import ast
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]
Row = Sequence[float]
SCORE = "score"
"""The name of the model's 0-99 score in a condition."""


class RuleError(ValueError):
    """A rule that cannot be used: its condition does not parse, names an unknown feature, or
    uses something outside the language. The message says which and where."""


class Action(StrEnum):
    """What a rule does when its condition holds; rules are looked at in this order (Radar's):
    a 3-D Secure request is noted and the others still run, then the first of allow, block and
    review that fires decides."""

    REQUEST_3DS = "request_3ds"
    ALLOW = "allow"
    BLOCK = "block"
    REVIEW = "review"


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    action: Action
    when: str
    """The condition, in the language of this module."""


_Value = Callable[[Row, float], float]
_Vector = Callable[[Matrix, npt.NDArray[np.float64]], npt.NDArray[np.float64]]
_COMPARE: dict[type[ast.cmpop], tuple[Callable[[float, float], bool], np.ufunc]] = {
    ast.Lt: (operator.lt, np.less),
    ast.LtE: (operator.le, np.less_equal),
    ast.Gt: (operator.gt, np.greater),
    ast.GtE: (operator.ge, np.greater_equal),
    ast.Eq: (operator.eq, np.equal),
    ast.NotEq: (lambda a, b: a != b and not (math.isnan(a) or math.isnan(b)), np.not_equal),
}
"""Python's and NumPy's comparisons agree on NaN (false) but for ``!=``: made false too."""
_ARITHMETIC: dict[type[ast.operator], tuple[Callable[[float, float], float], np.ufunc]] = {
    ast.Add: (operator.add, np.add),
    ast.Sub: (operator.sub, np.subtract),
    ast.Mult: (operator.mul, np.multiply),
    ast.Div: (lambda a, b: a / b if b else math.nan, np.divide),
}
"""Division by zero gives a missing value (NaN), in both."""


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled condition: ``holds`` for one order's feature row, ``mask`` for a matrix."""

    text: str
    holds: Callable[[Row, float], bool]
    mask: Callable[[Matrix, npt.NDArray[np.float64]], Mask]


def compile_condition(text: str, names: Sequence[str]) -> Condition:
    """Compile ``text`` over the features ``names`` (a row's columns, in order); raises
    ``RuleError`` for anything outside the language."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise RuleError(f"{text!r} does not parse: {e.msg} at column {e.offset}") from e
    return _Compiler(text, {name: i for i, name in enumerate(names)}).condition(tree.body)


class _Compiler:
    def __init__(self, text: str, columns: dict[str, int]) -> None:
        self.text = text
        self.columns = columns

    def fail(self, node: ast.AST, what: str) -> RuleError:
        column = getattr(node, "col_offset", 0) + 1
        return RuleError(f"{self.text!r}, column {column}: {what}")

    def condition(self, node: ast.expr) -> Condition:
        holds, mask = self.test(node)
        return Condition(self.text, holds, mask)

    def test(
        self, node: ast.expr
    ) -> tuple[Callable[[Row, float], bool], Callable[[Matrix, npt.NDArray[np.float64]], Mask]]:
        if isinstance(node, ast.BoolOp):
            parts = [self.test(v) for v in node.values]
            if isinstance(node.op, ast.And):
                return (
                    lambda r, s: all(h(r, s) for h, _ in parts),
                    lambda m, s: np.logical_and.reduce([k(m, s) for _, k in parts]),
                )
            return (
                lambda r, s: any(h(r, s) for h, _ in parts),
                lambda m, s: np.logical_or.reduce([k(m, s) for _, k in parts]),
            )
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            h, k = self.test(node.operand)
            return (lambda r, s: not h(r, s), lambda m, s: ~k(m, s))
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call):
            column = self.missing_call(node)
            return (
                lambda r, s: math.isnan(r[column]),
                lambda m, s: np.isnan(m[:, column]),
            )
        raise self.fail(node, "a condition must be a comparison, and/or/not, or missing(name)")

    def compare(
        self, node: ast.Compare
    ) -> tuple[Callable[[Row, float], bool], Callable[[Matrix, npt.NDArray[np.float64]], Mask]]:
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise self.fail(node, f"{type(op).__name__} is not a comparison of numbers")
        values = [self.value(node.left), *(self.value(c) for c in node.comparators)]
        steps = []
        for i, op in enumerate(node.ops):
            compare = _COMPARE[type(op)]
            steps.append((values[i], values[i + 1], *compare, isinstance(op, ast.NotEq)))

        def holds(r: Row, s: float) -> bool:
            return all(cmp(a[0](r, s), b[0](r, s)) for a, b, cmp, _, _ in steps)

        def mask(m: Matrix, s: npt.NDArray[np.float64]) -> Mask:
            out = np.ones(len(m), dtype=bool)
            with np.errstate(invalid="ignore"):
                for a, b, _, ufunc, not_equal in steps:
                    left, right = a[1](m, s), b[1](m, s)
                    got: Mask = ufunc(left, right)
                    if not_equal:  # NaN != x is true in NumPy: false here, as for one row
                        got &= ~(np.isnan(left) | np.isnan(right))
                    out &= got
            return out

        return holds, mask

    def value(self, node: ast.expr) -> tuple[_Value, _Vector]:
        value = node.value if isinstance(node, ast.Constant) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
            return (lambda r, s: number, lambda m, s: np.full(len(m), number))
        if isinstance(node, ast.Name):
            if node.id == SCORE:
                return (lambda r, s: s, lambda m, s: s)
            column = self.columns.get(node.id)
            if column is None:
                raise self.fail(node, f"unknown feature {node.id!r}")
            return (lambda r, s: r[column], lambda m, s: m[:, column])
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            f, v = self.value(node.operand)
            return (lambda r, s: -f(r, s), lambda m, s: -v(m, s))
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            op, ufunc = _ARITHMETIC[type(node.op)]
            (fa, va), (fb, vb) = self.value(node.left), self.value(node.right)

            def vector(m: Matrix, s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
                left, right = va(m, s), vb(m, s)
                with np.errstate(divide="ignore", invalid="ignore"):
                    out: npt.NDArray[np.float64] = ufunc(left, right)
                if ufunc is np.divide:
                    out[right == 0] = np.nan
                return out

            return (lambda r, s: op(fa(r, s), fb(r, s)), vector)
        raise self.fail(node, "a value must be a number, a feature, score, or + - * / of them")

    def missing_call(self, node: ast.Call) -> int:
        if not (
            isinstance(node.func, ast.Name)
            and node.func.id == "missing"
            and len(node.args) == 1
            and not node.keywords
            and isinstance(node.args[0], ast.Name)
        ):
            raise self.fail(node, "the one function is missing(feature)")
        column = self.columns.get(node.args[0].id)
        if column is None:
            raise self.fail(node.args[0], f"unknown feature {node.args[0].id!r}")
        return column


Step = tuple[str, float]
"""One step of a condition's postfix program for the core (``core_rs/src/risk/policy.rs``,
``Op``): (name, argument), the argument a column, a number or a count (0.0 when unused)."""

_STEP_OF: dict[type[ast.AST], str] = {
    ast.Lt: "lt",
    ast.LtE: "le",
    ast.Gt: "gt",
    ast.GtE: "ge",
    ast.Eq: "eq",
    ast.NotEq: "ne",
    ast.Add: "add",
    ast.Sub: "sub",
    ast.Mult: "mul",
    ast.Div: "div",
}


def program(text: str, names: Sequence[str]) -> list[Step]:
    """The condition ``text`` as a postfix program the core runs per order (the same
    decision as ``compile_condition``'s; ``tests/risk/test_decide_core.py`` holds them equal).
    Raises ``RuleError`` as ``compile_condition`` does."""
    compile_condition(text, names)  # the checks and their messages are that compiler's
    columns = {name: i for i, name in enumerate(names)}
    out: list[Step] = []

    def test(node: ast.expr) -> None:
        if isinstance(node, ast.BoolOp):
            for v in node.values:
                test(v)
            out.append(("and" if isinstance(node.op, ast.And) else "or", float(len(node.values))))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            test(node.operand)
            out.append(("not", 0.0))
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for i, op in enumerate(node.ops):
                value(operands[i])
                value(operands[i + 1])
                out.append((_STEP_OF[type(op)], 0.0))
            if len(node.ops) > 1:
                out.append(("and", float(len(node.ops))))
        else:  # missing(name), checked by compile_condition
            assert isinstance(node, ast.Call)
            assert isinstance(node.args[0], ast.Name)
            out.append(("missing", float(columns[node.args[0].id])))

    def value(node: ast.expr) -> None:
        if isinstance(node, ast.Constant):
            assert isinstance(node.value, int | float)
            out.append(("number", float(node.value)))
        elif isinstance(node, ast.Name):
            if node.id == SCORE:
                out.append(("score", 0.0))
            else:
                out.append(("feature", float(columns[node.id])))
        elif isinstance(node, ast.UnaryOp):
            value(node.operand)
            out.append(("neg", 0.0))
        else:
            assert isinstance(node, ast.BinOp)
            value(node.left)
            value(node.right)
            out.append((_STEP_OF[type(node.op)], 0.0))

    test(ast.parse(text.strip(), mode="eval").body)
    return out
