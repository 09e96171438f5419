"""YAML built from libyaml's events gives what yaml.load's safe loader gives."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gleitzeit import load_workflow
from gleitzeit._loader._yaml import load_yaml
from gleitzeit.core.errors import WorkflowValidationError

from .strategies import json_values

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.skipif(
    not getattr(yaml, "__with_libyaml__", False), reason="PyYAML without libyaml"
)


def _safe(text: str) -> Any:
    return yaml.load(text, Loader=yaml.CSafeLoader)


@given(json_values, st.sampled_from([None, True, False]))
@settings(max_examples=300, deadline=None)
def test_any_value_reads_back_as_the_safe_loader_reads_it(value: Any, flow: bool | None) -> None:
    text = yaml.dump(value, Dumper=yaml.CSafeDumper, default_flow_style=flow)
    assert load_yaml(text) == _safe(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: yes\nb: 0x10\nc: 1_000\nd: 2001-12-14\ne: .5\nf: ~\ng: 012\nh: '5'\ni: 1:20\n",
        "j: -.inf\nk: 1e3\nl: +12\nm: null\nn: ''\no:\np: [1, {q: r}]\n",
        "s: |\n  two\n  lines\nt: >\n  folded\n  text\n",
        "- &a x\n- *a\n",  # an alias
        "a: !!str 5\n",  # an explicit tag
        "base: &b {x: 1}\nderived:\n  <<: *b\n  y: 2\n",  # a merge key
        "2001-12-14: a date key\n",
        "",
        "# only a comment\n",
        "just text",
        "[1, 2]",
        "a: 1\na: 2\n",  # the last of a repeated key wins
    ],
)
def test_documents_read_as_the_safe_loader_reads_them(text: str) -> None:
    assert load_yaml(text) == _safe(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\n---\nb: 2\n",
        "a: [1, 2\n",
        "a: *nothing\n",
        "a:\n  - b\n c: d\n",
        "a: 'open\n",
        "? [1, 2]\n: an unhashable key\n",
    ],
)
def test_errors_are_the_safe_loaders_own(text: str) -> None:
    with pytest.raises(yaml.YAMLError) as expected:
        _safe(text)
    with pytest.raises(yaml.YAMLError) as got:
        load_yaml(text)
    assert type(got.value) is type(expected.value)
    assert str(got.value) == str(expected.value)


def test_a_syntax_error_deep_in_a_big_file_names_its_line(tmp_path: Path) -> None:
    lines = ["name: big", "tasks:"]
    for i in range(200):
        lines += [f"  - id: t{i}", "    method: python/execute", "    params: {code: 'x = 1'}"]
    lines[400] = "    params: {code: 'x = 1'"  # unclosed flow mapping
    path = tmp_path / "big.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(WorkflowValidationError) as info:
        load_workflow(path)
    problem = info.value.data["problems"][0]
    assert problem["message"].startswith("YAML syntax error at line")
    assert problem["line"] >= 401
