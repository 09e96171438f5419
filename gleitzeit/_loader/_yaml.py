"""YAML text to Python values, built straight from libyaml's parse events.

``yaml.load`` with libyaml's ``CSafeLoader`` first builds a node per value
(each with its marks: about 7 KB per task of a generated workflow), then walks
the nodes in Python. Building dicts, lists and scalars as the events arrive
takes a fraction of the time and keeps no nodes. It covers the plain YAML
workflows are written in; an anchor or alias, an explicit tag, a merge key, a
complex key or a second document sends the text to ``yaml.load`` instead, as
does any error (so messages and marks are PyYAML's own). Scalars resolve as
the safe loader resolves them (``yes`` is true, ``0x10`` is 16, dates are
dates).
"""

from __future__ import annotations

from typing import Any, Final

import yaml

__all__ = ["load_yaml"]

_WILDCARD: Final[list[Any]] = yaml.SafeLoader.yaml_implicit_resolvers.get(None, [])
#: The safe loader's resolvers, by a plain scalar's first character.
_RESOLVERS: Final[dict[Any, list[Any]]] = {
    first: [*resolvers, *_WILDCARD]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_CONSTRUCTORS: Final = yaml.SafeLoader.yaml_constructors
_INT: Final = "tag:yaml.org,2002:int"
_NULL: Final = "tag:yaml.org,2002:null"
#: Scalar tags built here with the safe constructor (merge and value keys are not).
_SCALARS: Final = frozenset(
    {
        _INT,
        _NULL,
        "tag:yaml.org,2002:bool",
        "tag:yaml.org,2002:float",
        "tag:yaml.org,2002:timestamp",
    }
)
_KEY_TYPES: Final = (str, int, float, bool, type(None))


class _Unusual(Exception):
    """Something only ``yaml.load`` builds (or words) right."""


def load_yaml(text: str) -> Any:
    """The value of a YAML document, as ``yaml.load`` with the safe loader gives it.

    Raises:
        yaml.YAMLError: as ``yaml.load`` raises it.
    """
    loader: Any = getattr(yaml, "CSafeLoader", None)
    if loader is not None:
        try:
            return _from_events(text)
        except (_Unusual, yaml.YAMLError):
            pass
    # The pure-Python parser when PyYAML was built without libyaml (slower).
    return yaml.load(text, Loader=loader or yaml.SafeLoader)


class _Scalars:
    """Resolves plain scalars; the safe constructor is made on first need."""

    def __init__(self) -> None:
        self.constructor: Any = None

    def plain(self, value: str) -> Any:
        for tag, regexp in _RESOLVERS.get(value[:1], _WILDCARD):
            if regexp.match(value):
                if tag == _INT and value.isdigit() and (value[0] != "0" or value == "0"):
                    return int(value)
                if tag == _NULL:
                    return None
                if tag not in _SCALARS:
                    raise _Unusual
                if self.constructor is None:
                    self.constructor = yaml.SafeLoader("")
                return _CONSTRUCTORS[tag](self.constructor, yaml.ScalarNode(tag, value))
        return value


def _from_events(text: str) -> Any:
    from yaml._yaml import CParser  # libyaml's parser

    scalar_event = yaml.ScalarEvent
    map_start, map_end = yaml.MappingStartEvent, yaml.MappingEndEvent
    seq_start, seq_end = yaml.SequenceStartEvent, yaml.SequenceEndEvent
    no_key = _KEY_TYPES  # a sentinel no YAML value can be
    scalars = _Scalars()
    parser = CParser(text)
    try:
        get = parser.get_event
        get()  # the stream's start
        event: Any = get()
        if type(event) is yaml.StreamEndEvent:
            return None  # empty (or only comments)
        stack: list[tuple[Any, Any]] = []
        current: Any = None  # the dict or list being filled
        key: Any = no_key
        root: Any = None
        while True:
            event = get()
            kind = type(event)
            if kind is scalar_event:
                if event.tag is not None or event.anchor is not None:
                    raise _Unusual
                value = event.value
                if event.implicit[0]:  # plain (not quoted): may be a number, null, ...
                    value = scalars.plain(value)
            elif kind is map_start or kind is seq_start:
                if event.tag is not None or event.anchor is not None:
                    raise _Unusual
                value = {} if kind is map_start else []
                if current is None:
                    root = value
                elif type(current) is dict:
                    if key is no_key:
                        raise _Unusual  # a mapping or list as a key
                    current[key] = value
                    key = no_key
                else:
                    current.append(value)
                stack.append((current, key))
                current, key = value, no_key
                continue
            elif kind is map_end or kind is seq_end:
                current, key = stack.pop()
                continue
            elif kind is yaml.DocumentEndEvent:
                break
            else:  # an alias
                raise _Unusual
            if current is None:
                root = value
            elif type(current) is dict:
                if key is no_key:
                    if type(value) not in _KEY_TYPES or value == "<<":
                        raise _Unusual
                    key = value
                else:
                    current[key] = value
                    key = no_key
            else:
                current.append(value)
        if type(get()) is not yaml.StreamEndEvent:
            raise _Unusual  # a second document: yaml.load says so
        return root
    finally:
        parser.dispose()
