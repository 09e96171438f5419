"""Tests for gleitzeit.core._refs: parsing and substituting ``${...}``."""

from __future__ import annotations

import ast
import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gleitzeit.core._refs import (
    Ref,
    RefSyntaxError,
    find_refs,
    make_lookup,
    parse_ref,
    py_literal,
    substitute,
    substitute_code,
)
from gleitzeit.core.errors import ErrorCode, TaskParameterError

from .strategies import json_values

RESULTS: dict[str, Any] = {
    "fetch": {"result": {"items": [{"name": "first"}, {"name": "last"}], "n": 3}},
    "llm": {"response": "text", "content": "text", "model": "m"},
    "Load Data": {"result": [1, 2, 3]},
}
LOOKUP = make_lookup(RESULTS, {"Loader": "Load Data"})

tricky_text = (
    st.text(
        alphabet=st.sampled_from(
            [
                '"',
                "'",
                "\\",
                "\n",
                "\r",
                "\t",
                "{",
                "}",
                "$",
                "#",
                "a",
                " ",
                "\x00",
                "é",
                "\u2028",
                "\U0001f600",
                "N",
                "x",
            ]
        )
    )
    | st.text()
)


def test_parse_grammar() -> None:
    """Dots, [index], negative index and names with spaces parse into steps."""
    assert parse_ref("fetch.result.items[0].name") == Ref(
        "fetch", ("result", "items", 0, "name"), "${fetch.result.items[0].name}"
    )
    assert parse_ref("Load Data.result[-1]").path == ("result", -1)
    assert parse_ref("t").path == ()


@pytest.mark.parametrize("body", ["", ".x", "t.", "t[x]", "t..a", "t[1"])
def test_malformed_references_are_rejected(body: str) -> None:
    """A body outside the grammar raises RefSyntaxError with the reference in it."""
    with pytest.raises(RefSyntaxError, match=r"\$\{"):
        parse_ref(body)


def test_whole_value_keeps_type() -> None:
    """A parameter that is exactly one reference gets the value itself."""
    assert substitute("${fetch.result}", LOOKUP) == RESULTS["fetch"]["result"]
    assert substitute("${fetch.result.n}", LOOKUP) == 3
    assert substitute("${fetch.result.items[-1].name}", LOOKUP) == "last"
    assert substitute("${Loader.result}", LOOKUP) == [1, 2, 3]  # by name


def test_embedded_values_become_text_and_json() -> None:
    """References inside text become strings (as is) or JSON."""
    out = substitute(
        {"p": ["n=${fetch.result.n} x=${fetch.result.items[0]} ${llm.response}"]}, LOOKUP
    )
    assert out == {"p": ['n=3 x={"name": "first"} text']}


def test_escape_and_legacy_result_step() -> None:
    """$${ is a literal ${; a leading `result` step is skipped where there is none."""
    assert substitute("cost: $${price} ${llm.result.content}", LOOKUP) == "cost: ${price} text"
    assert substitute("${llm}", LOOKUP) == RESULTS["llm"]
    assert substitute("${Load Data}", LOOKUP) == [1, 2, 3]


def test_containers_without_refs_are_not_copied() -> None:
    """Substitution returns the same object when nothing changes (no copying cost)."""
    params = {"a": [1, {"b": "plain"}], "c": "text"}
    assert substitute(params, LOOKUP) is params


@pytest.mark.parametrize(
    ("text", "missing", "available"),
    [
        ("${fetch.result.nope}", "nope", ["items", "n"]),
        ("${fetch.result.items[5]}", 5, None),
        ("${llm.response.x}", "x", None),
    ],
)
def test_missing_path_names_reference_and_keys(text: str, missing: Any, available: Any) -> None:
    """A missing key or index is TASK_PARAMETER_ERROR naming the ref and existing keys."""
    with pytest.raises(TaskParameterError) as info:
        substitute("x " + text, LOOKUP)
    err = info.value
    assert err.code == ErrorCode.TASK_PARAMETER_ERROR
    assert text in err.message
    assert err.data["missing"] == missing
    assert err.data["available"] == available
    if available:
        assert all(repr(k) in err.message for k in available)


def test_reference_to_task_without_result() -> None:
    """A reference to a task with no result fails with TASK_PARAMETER_ERROR."""
    with pytest.raises(TaskParameterError, match="no result"):
        substitute("${ghost.result}", LOOKUP)


def test_find_refs_walks_nested_params() -> None:
    """find_refs sees references in nested dicts and lists, not in keys."""
    params = {"${no}": "x", "m": [{"content": "a ${llm.response} b ${fetch.result}"}]}
    assert sorted(r.task for r in find_refs(params)) == ["fetch", "llm"]


@given(json_values)
def test_whole_value_round_trips_every_json_value(value: Any) -> None:
    """Every JSON value passes unchanged through a whole-value reference."""
    lookup = make_lookup({"t": {"result": {"v": value}}})
    assert substitute("${t.result.v}", lookup) == value
    assert substitute(["${t.result.v}"], lookup) == [value]


@given(json_values)
def test_embedded_value_is_its_json_text(value: Any) -> None:
    """A reference inside text renders strings as themselves and the rest as JSON."""
    lookup = make_lookup({"t": {"result": value}})
    expected = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    assert substitute("<${t.result}>", lookup) == f"<{expected}>"


# --- code-aware substitution ---------------------------------------------------

STYLES = [
    p + q for p in ("", "r", "f", "b", "rb", "fr", "R", "F", "u") for q in ("'", '"', "'''", '"""')
]


def _only_assignment(code: str) -> ast.expr:
    tree = ast.parse(code)
    assert len(tree.body) == 1, "substitution must not add statements"
    stmt = tree.body[0]
    assert isinstance(stmt, ast.Assign)
    return stmt.value


@given(tricky_text, st.sampled_from(STYLES), st.text(alphabet="ab {}", max_size=4))
@example("'; import os #", '"', "")
@example('"""', '"""', "")
@example("\\", "r'", "")
@example("{__import__('os')}", 'f"', "")
def test_string_literal_reference_evaluates_to_exact_text(
    text: str, style: str, around: str
) -> None:
    """Inside any literal style, the substituted literal evaluates to exactly the text."""
    quote = style.lstrip("rRbBfFuU")
    prefix = style[: len(style) - len(quote)]
    is_bytes = "b" in prefix.lower()
    source_around = around
    if "f" in prefix.lower():
        source_around = around.replace("{", "{{").replace("}", "}}")
    code = f"x = {prefix}{quote}{source_around}${{t.response}}{source_around}{quote}"
    out = substitute_code(code, make_lookup({"t": {"response": text}}))
    node = _only_assignment(out)
    expected_around: str | bytes = around.encode() if is_bytes else around
    if isinstance(node, ast.JoinedStr):  # an f-string: it must hold no expression
        assert all(isinstance(v, ast.Constant) for v in node.values)
        value: object = "".join(str(v.value) for v in node.values if isinstance(v, ast.Constant))
    else:
        value = ast.literal_eval(node)
    if isinstance(expected_around, bytes):
        assert value == expected_around + text.encode("utf-8", "surrogatepass") + expected_around
    else:
        assert value == expected_around + text + expected_around


@given(json_values)
def test_code_reference_outside_strings_is_a_literal(value: Any) -> None:
    """Outside string literals a reference becomes a Python literal of the value."""
    out = substitute_code("x = ${t.result}", make_lookup({"t": {"result": value}}))
    assert ast.literal_eval(_only_assignment(out)) == value


@given(tricky_text)
def test_code_reference_in_comment_stays_a_comment(text: str) -> None:
    """A reference in a comment cannot end the comment and start code."""
    out = substitute_code("x = 1  # seen: ${t.response}\n", make_lookup({"t": {"response": text}}))
    assert ast.literal_eval(_only_assignment(out)) == 1


def test_seed_pattern_is_safe() -> None:
    """The seed's `report = "${Generate Report.response}"` is safe whatever the reply."""
    reply = 'done"\nimport os; os.system("echo pwned")\nx = "'
    code = 'data = ${T.result}\nreport = "${Generate Report.response}"\nresult = len(data)\n'
    lookup = make_lookup({"T": {"result": [1, 2]}, "Generate Report": {"response": reply}})
    out = substitute_code(code, lookup)
    names: dict[str, Any] = {}
    exec(compile(out, "<test>", "exec"), names)
    assert names["report"] == reply
    assert names["data"] == [1, 2]
    assert len(ast.parse(out).body) == 3


def test_reference_inside_fstring_expression_is_refused() -> None:
    """A reference inside an f-string {expression} would become code: refused."""
    with pytest.raises(TaskParameterError, match="f-string expression"):
        substitute_code('x = f"{${t.response}}"', make_lookup({"t": {"response": "1"}}))


def test_code_escape_and_identifier_before_string() -> None:
    """`$${` stays literal in code; a string right after a keyword is still a string."""
    lookup = make_lookup({"t": {"response": 'a"b'}})
    out = substitute_code('x = "q" in"${t.response}"\ny = "$${z}"', lookup)
    names: dict[str, Any] = {}
    exec(out, names)
    assert names["x"] is False
    assert names["y"] == "${z}"


@pytest.mark.parametrize(
    ("value", "source"),
    [
        (float("nan"), "float('nan')"),
        (float("-inf"), "float('-inf')"),
        ((1, 2), "[1, 2]"),
        (object, repr(repr(object))),
    ],
)
def test_py_literal_edge_values(value: Any, source: str) -> None:
    """Non-finite floats, tuples and foreign objects still give valid source."""
    assert py_literal(value) == source
