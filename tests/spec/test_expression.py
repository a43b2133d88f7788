"""Known objectives' expressions: the safe arithmetic (spec/expression.py) and the field
(objectives[].expression, checked against the search space in spec/rules.py)."""

from __future__ import annotations

import pytest

from nasop import crd, errors, spec
from nasop.spec import expression
from stubs import manifest

MLP = "784*hidden_size_1 + hidden_size_1 + hidden_size_1*hidden_size_2 + hidden_size_2"


def _with(text):
    m = manifest()
    m["spec"]["objectives"][1]["expression"] = text
    return m


def _error(text):
    with pytest.raises(errors.SpecError) as ei:
        spec.parse_manifest(_with(text))
    return str(ei.value)


def test_good_expression_evaluates_and_names_its_parameters():
    e = expression.parse(MLP + " + 10*hidden_size_2 + 10")
    assert e.names == ("hidden_size_1", "hidden_size_2")
    assert e({"hidden_size_1": 64, "hidden_size_2": 32}) == 784 * 64 + 64 + 64 * 32 + 32 + 330
    assert expression.parse("-(a // 2) % 3 ** 2 / 1")({"a": 7}) == (-(7 // 2) % 9) / 1
    assert expression.parse("min(a, 2, 5) + max(a, b) + abs(-a)")({"a": 3, "b": 4}) == 2 + 4 + 3


def test_expression_computes_on_tensors():
    torch = pytest.importorskip("torch")
    e = expression.parse("max(a, 2) * b + abs(a - 5)")
    a, b = torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.0])
    assert torch.equal(e({"a": a, "b": b}), torch.tensor([8.0, 8.0]))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a +", "not an arithmetic expression"),
        ("__import__('os').system('x')", "only min(...), max(...), abs(...)"),
        ("a.real", "not allowed (Attribute)"),
        ("a if b else 1", "not allowed (IfExp)"),
        ("a < b", "not allowed (Compare)"),
        ("[a, b]", "not allowed (List)"),
        ("lambda: 1", "not allowed (Lambda)"),
        ("a @ b", "operator in 'a @ b' is not allowed"),
        ("a << 2", "operator in 'a << 2' is not allowed"),
        ("~a", "operator in '~a' is not allowed"),
        ("'x' * 3", "'x' is not a number"),
        ("True + a", "True is not a number"),
        ("max(a)", "max() takes two or more arguments"),
        ("abs(a, b)", "abs() takes one argument"),
        ("max(*a, b)", "*arguments are not allowed"),
        ("round(a)", "only min(...), max(...), abs(...)"),
        ("min + 1", "min is a function"),
        ("a" * 3000, "longer than"),
    ],
)
def test_bad_expression_says_what_is_not_allowed(text, fragment):
    with pytest.raises(ValueError) as ei:
        expression.parse(text)
    assert fragment in str(ei.value)


def test_manifest_with_an_expression_parses():
    s = spec.parse_manifest(_with(MLP)).spec
    assert s.objectives[1].expression == MLP
    assert s.objectives[0].expression is None


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("784*hidden_size_3", ["objectives[1].expression", "unknown parameter(s) ['hidden_size_3"]),
        ("1 / (hidden_size_1 - 16)", ["objectives[1].expression", "divides by zero at"]),
        ("hidden_size_1 / (dropout - 0.5)", ["divides by zero at", "dropout=0.5"]),
        ("(dropout - 0.25) ** 0.5", ["not a real number at dropout=0", "negative number"]),
        ("10 ** (hidden_size_1 * 100)", ["overflows at hidden_size_1=16"]),
        ("hidden_size_1 +", ["spec.objectives[1].expression", "not an arithmetic expression"]),
        ("open('/etc/passwd')", ["spec.objectives[1].expression", "is not allowed"]),
    ],
)
def test_bad_expression_in_a_manifest_names_the_field_and_the_fix(text, fragments):
    message = _error(text)
    for fragment in fragments:
        assert fragment in message, message


def test_expression_on_a_string_choice_is_refused():
    m = _with("hidden_size_1 * act")
    m["spec"]["searchSpace"].append({"name": "act", "type": "choice", "values": ["relu", "tanh"]})
    m["spec"]["objectives"][1]["expression"] = "hidden_size_1 * act"
    with pytest.raises(errors.SpecError, match=r"non-numeric parameter\(s\) \['act'\]"):
        spec.parse_manifest(m)


def test_expression_may_use_numeric_choices_and_fixed_values():
    s = spec.parse_manifest(_with("hidden_size_1 * batch_size + epochs")).spec
    assert s.objectives[1].expression == "hidden_size_1 * batch_size + epochs"


def test_crd_describes_the_field():
    schema = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    objective = schema["properties"]["spec"]["properties"]["objectives"]["items"]
    field = objective["properties"]["expression"]
    assert field["type"] == "string" and field.get("nullable") is True
    assert "known objective" in field["description"] and "min, max, abs" in field["description"]
