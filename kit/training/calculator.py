"""The calculator tool: safe arithmetic for python / python_output parts.

Built-in tasks compute their tool outputs here, and sampling runs a model's `<|python_start|>` call
through it, so the kit never executes text from a model or a data file (no `eval`). The expression
is parsed with `ast` and only a small grammar is walked:

- numbers (int, float), `+ - * / // % **`, parentheses, unary minus/plus;
- thousands separators are tolerated (`1,000 + 5`), as GSM8K-style text often has them;
- the letter-count form the spelling-bee task uses: `'strawberry'.count('r')`.

Sizes are bounded (expression length, exponent, digits of any intermediate result) so a hostile
expression cannot hang or exhaust memory.
"""

from __future__ import annotations

import ast
import math
import operator
import re

MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 100
MAX_INT_BITS = 512  # about 154 decimal digits; larger results are refused

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")


class CalculatorError(ValueError):
    """An expression the calculator refuses; the message says what and where."""


def evaluate(expr: str) -> int | float:
    """Evaluate an arithmetic or letter-count expression; raise CalculatorError otherwise."""
    if not isinstance(expr, str):
        raise CalculatorError(f"expected a string expression, got {type(expr).__name__}")
    text = expr.strip()
    if not text:
        raise CalculatorError("empty expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    if "'" not in text and '"' not in text:
        text = _THOUSANDS.sub("", text)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise CalculatorError(f"cannot parse {expr!r}: {exc.msg} (column {exc.offset})") from None
    return _walk(tree.body, expr)


def format_result(value: int | float) -> str:
    """The python_output text: integers plainly, floats with up to 10 significant digits."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CalculatorError(f"not a number: {value!r}")
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def _walk(node: ast.AST, expr: str) -> int | float:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise CalculatorError(f"{expr!r}: only numbers are allowed, found {node.value!r}")
        return _checked(node.value, expr)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_walk(node.operand, expr))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _walk(node.left, expr), _walk(node.right, expr)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right, expr)
        try:
            result = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise CalculatorError(f"{expr!r}: division by zero") from None
        except OverflowError:
            raise CalculatorError(f"{expr!r}: result too large") from None
        if isinstance(result, complex):
            raise CalculatorError(f"{expr!r}: result is not a real number")
        return _checked(result, expr)
    if isinstance(node, ast.Call):
        return _letter_count(node, expr)
    raise CalculatorError(f"{expr!r}: {type(node).__name__} is not allowed (numbers, + - * / // % ** and "
                          f"'word'.count('c') only)")


def _check_power(base: int | float, exponent: int | float, expr: str) -> None:
    if abs(exponent) > MAX_EXPONENT:
        raise CalculatorError(f"{expr!r}: exponent {exponent} exceeds {MAX_EXPONENT}")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        if base.bit_length() * exponent > MAX_INT_BITS:
            raise CalculatorError(f"{expr!r}: result too large")


def _checked(value: int | float, expr: str) -> int | float:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculatorError(f"{expr!r}: result too large")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError(f"{expr!r}: result is not finite")
    return value


def _letter_count(node: ast.Call, expr: str) -> int:
    func = node.func
    ok = (
        isinstance(func, ast.Attribute) and func.attr == "count"
        and isinstance(func.value, ast.Constant) and isinstance(func.value.value, str)
        and len(node.args) == 1 and not node.keywords
        and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
    )
    if not ok:
        raise CalculatorError(f"{expr!r}: the only call allowed is 'word'.count('letters')")
    needle = node.args[0].value
    if not needle:
        raise CalculatorError(f"{expr!r}: count() needs a non-empty string")
    return func.value.value.count(needle)
