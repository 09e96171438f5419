"""Finding a batch's files: glob patterns with ``**`` and ``{a,b}`` alternatives.

Patterns match paths relative to the batch directory, written with ``/``:

* ``*`` and ``?`` match within one path segment (never a ``/``), and
  ``[abc]`` / ``[!abc]`` match one character of (not of) a set;
* ``**/`` matches zero or more folders, so ``**/*.md`` also takes the top
  folder's files; a trailing ``**`` matches everything below;
* ``{a,b}`` gives alternatives (nested braces work): ``*.{jpg,png}``;
* a name that starts with ``.`` is only matched by a segment that starts with
  ``.`` itself, as in the shell: ``*`` skips ``.git``, ``.*`` takes it;
* ``recursive=True`` makes a pattern without a ``/`` match in every folder
  below as well (``*.md`` behaves as ``**/*.md``).

Only files are taken: folders are skipped, and a symlink that points nowhere
is kept (its entry fails when it runs, saying so). Symlinked folders are not
descended into, so a link loop cannot make the walk endless. The result is
sorted and free of duplicates. All of this is blocking file-system work: call
:func:`find_files` through ``anyio.to_thread.run_sync``.
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

__all__ = ["expand_braces", "find_files", "pattern_problem", "pattern_regex"]


def expand_braces(pattern: str) -> list[str]:
    """Every alternative of ``{a,b}`` groups, in order (``"*.{a,b}"`` → ``*.a``, ``*.b``).

    A ``{`` without a matching ``}`` or without a ``,`` is kept as a literal.
    """
    depth = 0
    start = -1
    commas: list[int] = []
    for i, ch in enumerate(pattern):
        if ch == "{":
            if depth == 0:
                start, commas = i, []
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                if not commas:
                    # "{x}" has no alternatives: keep it, expand what follows.
                    return [pattern[: i + 1] + rest for rest in expand_braces(pattern[i + 1 :])]
                head, tail = pattern[:start], pattern[i + 1 :]
                bounds = [start, *commas, i]
                out: list[str] = []
                for a, b in itertools.pairwise(bounds):
                    for choice in expand_braces(pattern[a + 1 : b]):
                        out.extend(head + choice + rest for rest in expand_braces(tail))
                return list(dict.fromkeys(out))
        elif ch == "," and depth == 1:
            commas.append(i)
    return [pattern]


def _translate(pattern: str) -> str:
    """One brace-free pattern as a regular expression (for ``fullmatch``)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    segment_start = True
    while i < n:
        ch = pattern[i]
        if ch == "*" and pattern.startswith("**", i) and segment_start:
            after = i + 2
            if after == n:  # a trailing ** : everything below
                out.append(r"(?:(?!\.)[^/]*(?:/(?!\.)[^/]*)*)")
                i = after
                continue
            if pattern[after] == "/":  # **/ : zero or more folders
                out.append(r"(?:(?!\.)[^/]+/)*")
                i = after + 1
                continue
        if ch == "*":
            while i + 1 < n and pattern[i + 1] == "*":
                i += 1  # "a**b" is "a*b"
            out.append(r"(?!\.)[^/]*" if segment_start else r"[^/]*")
        elif ch == "?":
            out.append(r"(?!\.)[^/]" if segment_start else r"[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "^") else i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end]
                negate = body[:1] in ("!", "^")
                body = body[1:] if negate else body
                chars = body.replace("\\", "\\\\").replace("^", "\\^")
                lead = r"(?!\.)" if segment_start else ""
                out.append(f"{lead}(?!/)[{'^' if negate else ''}{chars}]")
                i = end
        elif ch == "/":
            out.append("/")
            i += 1
            segment_start = True
            continue
        else:
            out.append(re.escape(ch))
        segment_start = False
        i += 1
    return "".join(out)


def _normalize(pattern: str, recursive: bool) -> list[str]:
    alternatives = []
    for alt in expand_braces(pattern):
        while alt.startswith("./"):
            alt = alt[2:]
        if recursive and "/" not in alt:
            alt = "**/" + alt
        alternatives.append(alt)
    return alternatives


def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` can never match inside a directory, or None when it can."""
    if not pattern:
        return "the pattern is empty; use '*' for every file"
    for alt in expand_braces(pattern):
        if alt.startswith("/") or Path(alt).is_absolute():
            return (
                f"the pattern {pattern!r} is absolute; patterns match paths inside "
                "'directory' (put the folder in 'directory')"
            )
        if ".." in alt.split("/"):
            return (
                f"the pattern {pattern!r} leaves the directory with '..'; patterns match "
                "paths inside 'directory' (put the folder in 'directory')"
            )
    return None


def pattern_regex(pattern: str, recursive: bool = False) -> re.Pattern[str]:
    """The compiled expression that ``fullmatch``-es the relative paths ``pattern`` takes."""
    alternatives = _normalize(pattern, recursive)
    return re.compile("|".join(f"(?:{_translate(alt)})" for alt in alternatives))


def find_files(directory: Path, pattern: str, recursive: bool = False) -> list[str]:
    """The files below ``directory`` matching ``pattern``, as sorted relative paths.

    Blocking: run it in a worker thread. Unreadable folders are skipped.
    """
    alternatives = _normalize(pattern, recursive)
    regex = re.compile("|".join(f"(?:{_translate(alt)})" for alt in alternatives))
    deep = any("/" in alt for alt in alternatives)
    # Hidden folders are walked only when some pattern segment starts with ".".
    hidden = any(seg.startswith(".") for alt in alternatives for seg in alt.split("/")[:-1])
    found: set[str] = set()
    pending: list[tuple[str, str]] = [(os.fspath(directory), "")]
    while pending:
        folder, prefix = pending.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            continue  # an unreadable folder holds nothing we can take
        for entry in entries:
            rel = prefix + entry.name
            if _is_file_entry(entry):
                if regex.fullmatch(rel):
                    found.add(rel)
            elif deep and (hidden or not entry.name.startswith(".")):
                try:
                    descend = entry.is_dir(follow_symlinks=False)
                except OSError:
                    descend = False
                if descend:
                    pending.append((entry.path, rel + "/"))
    return sorted(found)


def _is_file_entry(entry: os.DirEntry[str]) -> bool:
    """A regular file (or a link to one), or a dangling symlink; never a folder,
    pipe or socket (reading a pipe could block forever)."""
    try:
        if entry.is_file():
            return True
        return entry.is_symlink() and not os.path.exists(entry.path)
    except OSError:
        return False
