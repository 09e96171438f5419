r"""``${task.path}`` references: parsing and substitution.

Grammar::

    ref   := "${" TASK step* "}"
    TASK  := one or more characters other than . [ ] } (spaces allowed)
    step  := "." KEY | "[" INT "]"      (INT may be negative)
    "$${" is a literal "${"

Rules (CONTRACT.md §4):

* a parameter that is exactly one reference gets the value itself, type kept;
* a reference inside longer text becomes text: strings as themselves,
  everything else as JSON;
* in ``python/execute`` ``code`` (:func:`substitute_code`), a reference outside
  a string literal becomes a Python literal, and one inside a string literal
  becomes the escaped body for that literal's quotes and prefix, so that no
  substituted text can ever become code;
* a path starting with ``result`` on a result without a ``result`` key skips
  that step; ``${t}`` alone means ``${t.result}``;
* a missing key or index raises :class:`TaskParameterError` naming the
  reference and the keys that do exist.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import attrs

from .errors import ErrorCode, TaskParameterError

__all__ = [
    "Ref",
    "RefSyntaxError",
    "find_refs",
    "parse_ref",
    "py_literal",
    "resolve",
    "scan_refs",
    "substitute",
    "substitute_code",
]

#: Matches an escape or a whole reference; group 1 is the reference body.
_TOKEN: Final = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_TASK: Final = re.compile(r"[^.\[\]}]+")
_STEP: Final = re.compile(r"\.([^.\[\]}]+)|\[\s*(-?\d+)\s*\]")

Lookup = Callable[["Ref"], Any]


class RefSyntaxError(ValueError):
    """A ``${...}`` whose body does not follow the grammar."""


@attrs.frozen
class Ref:
    """One parsed reference: the task it names and the path into its result."""

    task: str
    path: tuple[str | int, ...]
    text: str

    def __str__(self) -> str:
        return self.text


def parse_ref(body: str) -> Ref:
    """Parse the inside of ``${...}``.

    Raises:
        RefSyntaxError: the body does not follow the grammar.
    """
    text = "${" + body + "}"
    match = _TASK.match(body)
    if match is None or not match.group().strip():
        raise RefSyntaxError(f"{text} names no task; write ${{task.field}}")
    path: list[str | int] = []
    pos = match.end()
    while pos < len(body):
        step = _STEP.match(body, pos)
        if step is None:
            raise RefSyntaxError(
                f"{text} is malformed at {body[pos:]!r}; use .key or [index] steps"
            )
        key, index = step.groups()
        path.append(key if key is not None else int(index))
        pos = step.end()
    return Ref(match.group().strip(), tuple(path), text)


def _refs_in_text(text: str) -> Iterator[Ref]:
    for match in _TOKEN.finditer(text):
        if match.group(1) is not None:
            yield parse_ref(match.group(1))


def find_refs(value: Any) -> Iterator[Ref]:
    """Yield every reference in the strings of ``value`` (dicts and lists walked).

    Raises:
        RefSyntaxError: a reference is malformed.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is str:
            if "${" in item:
                yield from _refs_in_text(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def scan_refs(value: Any) -> tuple[list[Ref], bool]:
    """Every reference in ``value``, and whether it needs substituting at all.

    The flag is also true for a value whose only marker is the ``$${`` escape:
    the escape must become ``${`` whether or not real references sit beside it.

    Raises:
        RefSyntaxError: a reference is malformed.
    """
    refs: list[Ref] = []
    marked = False
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is str:
            if "${" in item:
                marked = True
                refs.extend(_refs_in_text(item))
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return refs, marked


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        keys = ", ".join(repr(k) for k in list(value)[:20]) or "none"
        return f"the keys that exist are {keys}"
    if isinstance(value, list):
        return f"the list has {len(value)} items"
    return f"the value there is a {type(value).__name__}"


def resolve(ref: Ref, result: Any) -> Any:
    """Follow ``ref.path`` into a task's result.

    Raises:
        TaskParameterError: a key or index is missing (code TASK_PARAMETER_ERROR).
    """
    path = ref.path or ("result",)
    value = result
    for i, step in enumerate(path):
        if i == 0 and step == "result" and isinstance(value, dict) and "result" not in value:
            continue  # the legacy `result` step: ${llm.result.content}
        if isinstance(step, int):
            if isinstance(value, list) and -len(value) <= step < len(value):
                value = value[step]
                continue
        elif isinstance(value, dict) and step in value:
            value = value[step]
            continue
        where = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in path[:i])
        raise TaskParameterError(
            f"Reference {ref.text} cannot be resolved: "
            f"{'index' if isinstance(step, int) else 'key'} {step!r} not found at "
            f"{ref.task}{where}; {_describe(value)}.",
            ErrorCode.TASK_PARAMETER_ERROR,
            {
                "reference": ref.text,
                "missing": step,
                "available": list(value)[:100] if isinstance(value, dict) else None,
            },
        )
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=repr)


def _render(text: str, lookup: Lookup) -> Any:
    """Substitute the references in one string."""
    match = _TOKEN.fullmatch(text)
    if match is not None and match.group(1) is not None:
        return lookup(parse_ref(match.group(1)))  # whole value: type kept

    def repl(m: re.Match[str]) -> str:
        body = m.group(1)
        return "${" if body is None else _as_text(lookup(parse_ref(body)))

    return _TOKEN.sub(repl, text)


def substitute(value: Any, lookup: Lookup) -> Any:
    """Return ``value`` with every reference in its strings substituted.

    Containers without references are returned as they are (not copied).

    Args:
        value: A parameter value: str, dict, list or scalar.
        lookup: Maps a :class:`Ref` to its value (usually via :func:`resolve`).
    """
    if type(value) is str:
        return _render(value, lookup) if "${" in value else value
    if isinstance(value, dict):
        new = {k: substitute(v, lookup) for k, v in value.items()}
        return value if all(new[k] is v for k, v in value.items()) else new
    if isinstance(value, list):
        items = [substitute(v, lookup) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


# --- code-aware substitution -------------------------------------------------

_CODE_TOKEN: Final = re.compile(
    r"""(?P<comment>\#)
      | (?P<word>[^\W\d]\w*|\d\w*)(?P<wquote>'\'\'|\"\"\"|'|\")?
      | (?P<quote>'\'\'|\"\"\"|'|\")
      | \$\$\{ | \$\{(?P<ref>[^}]*)\}""",
    re.VERBOSE,
)
_STRING_END: Final = {
    "'": re.compile(r"(?:[^'\\\n]|\\.)*('|$)", re.DOTALL | re.MULTILINE),
    '"': re.compile(r'(?:[^"\\\n]|\\.)*("|$)', re.DOTALL | re.MULTILINE),
    "'''": re.compile(r"(?:[^'\\]|\\.|'(?!''))*(''')?", re.DOTALL),
    '"""': re.compile(r'(?:[^"\\]|\\.|"(?!""))*(""")?', re.DOTALL),
}
_VALID_PREFIXES: Final = frozenset({"", "r", "u", "b", "f", "br", "rb", "fr", "rf"})


def py_literal(value: Any) -> str:
    """Return Python source that evaluates to ``value`` (a JSON-like value).

    Strings use ``repr`` (always one line); non-finite floats become
    ``float('nan')`` and friends; objects outside JSON become the literal of
    their ``repr`` text.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        return f"float({repr(value)!r})"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(py_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{py_literal(k)}: {py_literal(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    return repr(repr(value))


def _escape_body(text: str, quote: str, fstring: bool) -> str:
    """Escape ``text`` to sit inside a non-raw str literal with this quote."""
    out: list[str] = []
    q = quote[0]
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == q:
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif fstring and ch in "{}":
            out.append(ch * 2)
        elif ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF:
            out.append(ch)
        else:
            code = ord(ch)
            out.append(
                f"\\x{code:02x}"
                if code < 0x100
                else f"\\u{code:04x}"
                if code < 0x10000
                else f"\\U{code:08x}"
            )
    return "".join(out)


def _escape_bytes_body(text: str, quote: str) -> str:
    out: list[str] = []
    q = ord(quote[0])
    for byte in text.encode("utf-8", "surrogatepass"):
        if byte == 0x5C or byte == q:
            out.append("\\" + chr(byte))
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


def _substitute_in_string(body: str, prefix: str, quote: str, lookup: Lookup) -> str:
    low = prefix.lower()
    raw, is_bytes, fstring = "r" in low, "b" in low, "f" in low
    out: list[str] = []
    pos = depth = 0
    n = len(body)
    while pos < n:
        m = _TOKEN.match(body, pos)
        if m is not None:
            if m.group(1) is None:
                out.append("${")
            else:
                ref = parse_ref(m.group(1))
                if depth > 0:
                    raise TaskParameterError(
                        f"Reference {ref.text} sits inside an f-string expression "
                        "{...}, where its value would become code; move it into the "
                        "f-string's text or assign it to a variable first.",
                        ErrorCode.TASK_PARAMETER_ERROR,
                        {"reference": ref.text},
                    )
                text = _as_text(lookup(ref))
                if raw:
                    # A raw literal cannot hold every text: close it, add an
                    # escaped literal, reopen (adjacent literals concatenate).
                    lit = repr(text.encode("utf-8", "surrogatepass")) if is_bytes else repr(text)
                    out.append(f"{quote} {lit} {prefix}{quote}")
                elif is_bytes:
                    out.append(_escape_bytes_body(text, quote))
                else:
                    out.append(_escape_body(text, quote, fstring))
            pos = m.end()
            continue
        ch = body[pos]
        if ch == "\\" and not raw:
            out.append(body[pos : pos + 2])
            pos += 2
            continue
        if fstring:
            if depth == 0 and body[pos : pos + 2] in ("{{", "}}"):
                out.append(body[pos : pos + 2])
                pos += 2
                continue
            if ch == "{":
                depth += 1
            elif ch == "}" and depth > 0:
                depth -= 1
        out.append(ch)
        pos += 1
    return "".join(out)


def substitute_code(code: str, lookup: Lookup) -> str:
    """Substitute references in Python source without ever creating code.

    A reference outside string literals (and in comments) becomes
    :func:`py_literal` of its value; inside a literal it becomes text escaped
    for that literal's quote style and prefix (``r``, ``b``, ``f``, triple
    quotes). ``$${`` becomes ``${``.

    Raises:
        TaskParameterError: a reference cannot be resolved, or sits inside an
            f-string expression.
    """
    if "${" not in code:
        return code
    out: list[str] = []
    pos = 0
    n = len(code)
    while pos < n:
        m = _CODE_TOKEN.search(code, pos)
        if m is None:
            out.append(code[pos:])
            break
        out.append(code[pos : m.start()])
        pos = m.end()
        if m.group("comment") is not None:
            end = code.find("\n", pos)
            end = n if end == -1 else end
            out.append(_TOKEN.sub(lambda r: _code_ref(r.group(1), lookup), code[m.start() : end]))
            pos = end
            continue
        word, quote = m.group("word"), m.group("wquote") or m.group("quote")
        if quote is None:
            out.append(word if word is not None else _code_ref(m.group("ref"), lookup))
            continue
        prefix = word or ""
        if prefix.lower() not in _VALID_PREFIXES:
            out.append(prefix)  # an identifier, then a plain string
            prefix = ""
        end_match = _STRING_END[quote].match(code, pos)
        assert end_match is not None  # the patterns match the empty string
        closing = end_match.group(1) or ""
        body = code[pos : end_match.end() - len(closing)]
        out.append(prefix + quote + _substitute_in_string(body, prefix, quote, lookup) + closing)
        pos = end_match.end()
    return "".join(out)


def _code_ref(body: str | None, lookup: Lookup) -> str:
    if body is None:
        return "${"
    return py_literal(lookup(parse_ref(body)))


def make_lookup(results: Mapping[str, Any], aliases: Mapping[str, str] | None = None) -> Lookup:
    """A :data:`Lookup` over ``results`` (task id → result dict).

    Args:
        results: The results visible to the task.
        aliases: Maps task names to ids, so references may use either.
    """

    def lookup(ref: Ref) -> Any:
        task_id = ref.task
        if task_id not in results and aliases is not None:
            task_id = aliases.get(task_id, task_id)
        if task_id not in results:
            raise TaskParameterError(
                f"Reference {ref.text} names task {ref.task!r}, which has no result; "
                "only completed tasks of this workflow can be referenced.",
                ErrorCode.TASK_PARAMETER_ERROR,
                {"reference": ref.text},
            )
        return resolve(ref, results[task_id])

    return lookup
