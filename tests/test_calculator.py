"""kit.training.calculator: the arithmetic it accepts, and the expressions it refuses with a clear message."""

import pytest

from kit.training.calculator import CalculatorError, evaluate, format_result


@pytest.mark.parametrize("expr, value", [
    ("1+2*3", 7),
    ("(1+2)*3", 9),
    ("12/60", 0.2),
    ("0.2*50", 10.0),
    ("7//2", 3),
    ("7%3", 1),
    ("2**10", 1024),
    ("-3 + +4", 1),
    ("100 - 50 - 30 - 15", 5),
    ("1,000 + 5", 1005),
    ("'strawberry'.count('r')", 3),
    ("'banana'.count('z')", 0),
])
def test_evaluates(expr, value):
    assert evaluate(expr) == value


@pytest.mark.parametrize("value, text", [(7, "7"), (10.0, "10"), (0.2, "0.2"), (1 / 3, "0.3333333333"), (-2.5, "-2.5")])
def test_format_result(value, text):
    assert format_result(value) == text


@pytest.mark.parametrize("expr, reason", [
    ("__import__('os')", "call"),
    ("x + 1", "Name"),
    ("open('f').read()", "call"),
    ("'a'.upper()", "call"),
    ("[1, 2]", "List"),
    ("1/0", "division by zero"),
    ("2**1000", "exponent"),
    ("99999**99", "too large"),
    ("(-8)**0.5", "not a real number"),
    ("1e308*10", "not finite"),
    ("True + 1", "only numbers"),
    ("1 +", "cannot parse"),
    ("", "empty"),
    ("1+" * 200 + "1", "longer than"),
    ("'abc'.count('')", "non-empty"),
])
def test_refuses_with_reason(expr, reason):
    with pytest.raises(CalculatorError, match=reason):
        evaluate(expr)
