"""Reading workflow files: ``.yaml``/``.yml``/``.json`` text into a dict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._problems import Problems

if TYPE_CHECKING:
    import os

__all__ = ["read_document"]


def read_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``.yaml``/``.yml``/``.json`` file into a dict.

    Raises:
        WorkflowValidationError: the file is missing, unreadable, empty, of an
            unknown type, not a mapping, or has a syntax error (with line and
            column in the problem).
    """
    p = Path(path)
    problems = Problems()
    source = str(p)
    suffix = p.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        text_given = isinstance(path, str) and ("\n" in path or path.lstrip()[:1] in ("{", "-"))
        if text_given:
            problems.add(
                "this looks like workflow text, not a file path; pass a path to a "
                ".yaml/.json file, or parse the text first (yaml.safe_load) and pass the dict"
            )
        elif p.is_dir():
            problems.add(
                f"{p} is a directory, not a workflow file; pass the path of a .yaml, "
                ".yml or .json file inside it (for a folder of inputs, use a batch)"
            )
        elif not p.exists():
            problems.add(
                f"file not found: {p.resolve()}; check the path (relative paths start at "
                f"{Path.cwd()}); workflow files end in .yaml, .yml or .json"
            )
        else:
            problems.add(
                f"unsupported file type {p.suffix or '(none)'!r}; use a .yaml, .yml or .json file"
            )
        problems.raise_if_any(None, source)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.add(
            f"file not found: {p.resolve()}; check the path (relative paths start at {Path.cwd()})"
        )
    except IsADirectoryError:
        problems.add(f"{p} is a directory, not a workflow file")
    except UnicodeDecodeError as exc:
        problems.add(f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})")
    except OSError as exc:
        problems.add(f"cannot read the file: {exc.strerror or exc}")
    problems.raise_if_any(None, source)
    doc: Any
    if suffix == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.add(
                f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                line=exc.lineno,
                column=exc.colno,
            )
    else:
        import yaml  # deferred: only files need it

        from ._yaml import load_yaml

        # Values built from libyaml's parse events when PyYAML has libyaml
        # (several times faster than yaml.load on big documents, no node tree);
        # anything unusual, and every error, goes through yaml.load's safe loader.
        try:
            doc = load_yaml(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
            reason = exc.problem or exc.context or "invalid YAML"
            problems.add(
                f"YAML syntax error at line {line}, column {col}: {reason}", line=line, column=col
            )
        except yaml.YAMLError as exc:
            problems.add(f"YAML error: {exc}")
    problems.raise_if_any(None, source)
    if doc is None:
        problems.add("the file is empty; a workflow needs at least 'name' and 'tasks'")
    elif not isinstance(doc, dict):
        problems.add(
            f"the document is a {type(doc).__name__}; a workflow must be a mapping "
            "with 'name' and 'tasks'"
        )
    problems.raise_if_any(None, source)
    return doc  # type: ignore[no-any-return]
