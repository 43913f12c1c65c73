"""Bounded parsers for hostile JSON and YAML: one way to read a manifest, a signature document or a descriptor.

Every document signery reads came from someone else, so size, nesting depth and structure are bounded *before*
anything is built from it, and whatever two mainstream readers could read differently is refused:

- JSON: depth is bounded (Python's decoder raises :class:`RecursionError` past ~1,000 levels; this turns that
  and anything deeper than ``max_depth`` into ``malformed``); duplicate keys are refused, and with
  ``fold_keys`` also keys equal but for case, because Go's ``encoding/json`` matches struct fields case-insensitively
  and takes the *last* match while Python keeps the first spelling apart.
- YAML: composed once, iteratively, from libyaml's events (the C composer recurses and crashes the interpreter on
  deep nesting): aliases are refused (an alias bomb expands exponentially), so are duplicate keys (Go's yaml.v3,
  which the Dify daemon uses, rejects them; PyYAML keeps the last), more than one document, and nesting beyond
  ``max_depth``. Then PyYAML's safe constructor builds plain Python values from the bounded node tree.

Errors are :class:`~signery.errors.MalformedError` naming ``source``.
"""

from __future__ import annotations

import gc
import json
import re
from typing import TYPE_CHECKING, Any

from ..errors import MalformedError

if TYPE_CHECKING:  # PyYAML takes ~50 ms to import: only a YAML document pays for it
    import yaml

DEFAULT_MAX_DEPTH = 64  # manifests and descriptors nest a handful of levels; 64 leaves room and bounds recursion


def _depth(doc: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value, iteratively; stops counting once past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # how JSON spells a (possibly lone) surrogate
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")


def refuse_lone_surrogates(doc: Any, data: bytes | str, *, source: str) -> None:
    """Refuse a JSON value holding a lone surrogate (``"\\ud800"``): Python keeps it in a ``str`` that no UTF-8
    writer can encode, so it fails far from here (a YAML dump that does not read back, canonical JSON, printing).
    Only documents that spell a surrogate escape at all are walked."""
    found = _SURROGATE_ESCAPE_BYTES.search(data) if isinstance(data, bytes) else _SURROGATE_ESCAPE.search(data)
    if not found:
        return
    stack = [doc]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise MalformedError(f"{source}: a string holds a lone UTF-16 surrogate", subject=source) from None


def load_json(
    data: bytes | str,
    *,
    source: str,
    max_bytes: int | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
    fold_keys: bool = False,
) -> Any:
    """Parse a JSON document from an untrusted source.

    Raises:
        MalformedError: over ``max_bytes``, not JSON, nested deeper than ``max_depth``, or a duplicate key
            (with ``fold_keys``, also a key equal to another but for case).
    """
    size = len(data.encode()) if isinstance(data, str) else len(data)
    if max_bytes is not None and size > max_bytes:
        raise MalformedError(f"{source}: {size} bytes; at most {max_bytes} expected", subject=source)

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            k = key.casefold() if fold_keys else key
            if k in seen:
                raise MalformedError(f"{source}: duplicate key {key!r}", subject=source)
            seen.add(k)
        return dict(items)

    try:
        doc = json.loads(data, object_pairs_hook=pairs)
    except RecursionError:
        raise MalformedError(f"{source}: JSON nested too deeply", subject=source) from None
    except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise MalformedError(f"{source}: not valid JSON ({exc})", subject=source) from None
    if _depth(doc, max_depth) > max_depth:
        raise MalformedError(f"{source}: JSON nested deeper than {max_depth} levels", subject=source)
    refuse_lone_surrogates(doc, data, source=source)
    return doc


_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"


def _build(loader: Any, source: str, max_depth: int) -> Any:
    """One document's plain Python value, built iteratively from parser events with every bound applied.

    Nothing recurses, so depth is bounded only by ``max_depth``; scalars are resolved and constructed by the
    loader's own resolver and safe constructors (so values are exactly PyYAML's), collections only as plain
    mappings and sequences.
    """
    import yaml

    def fail(what: str, event: yaml.Event) -> MalformedError:
        mark = event.start_mark
        where = f" (line {mark.line + 1})" if mark is not None else ""
        return MalformedError(f"{source}: {what}{where}", subject=source)

    constructors = loader.yaml_constructors
    resolved: dict[tuple[str, tuple[bool, bool]], str] = {}  # plain scalars repeat: resolve each value once
    loader.get_event()  # StreamStart
    if loader.check_event(yaml.StreamEndEvent):
        return None
    loader.get_event()  # DocumentStart
    stack: list[dict[Any, Any] | list[Any]] = []
    keys: list[Any] = []  # per open mapping: its pending key, or _NO_KEY
    root: Any = _NO_KEY
    while root is _NO_KEY:
        event: Any = loader.get_event()
        value: Any
        if isinstance(event, yaml.ScalarEvent):
            tag = event.tag
            if tag is None or tag == "!":
                key = (event.value, event.implicit)
                tag = resolved.get(key)
                if tag is None:
                    tag = resolved[key] = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
            if tag == _STR:
                value = event.value
            elif tag == _MERGE:
                raise fail("YAML merge keys are not accepted", event)
            elif tag in constructors:
                start: Any = event.start_mark  # libyaml's own Mark type, which the constructors accept
                node = yaml.ScalarNode(tag, event.value, start, start, style=event.style)
                value = constructors[tag](loader, node)
            else:
                raise fail(f"YAML tag {tag!r} is not accepted", event)
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            is_map = isinstance(event, yaml.MappingStartEvent)
            tag = event.tag
            if tag not in (None, "!", _MAP if is_map else _SEQ):
                raise fail(f"YAML tag {tag!r} is not accepted", event)
            if len(stack) >= max_depth:
                raise fail(f"YAML nested deeper than {max_depth} levels", event)
            value = {} if is_map else []
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            value = stack.pop()
            keys.pop()
            if not stack:
                root = value
            continue
        elif isinstance(event, yaml.AliasEvent):
            raise fail("YAML aliases are not accepted", event)
        else:  # pragma: no cover - libyaml emits nothing else inside a document
            raise fail(f"unexpected YAML event {type(event).__name__}", event)
        if getattr(event, "anchor", None) is not None:
            raise fail("YAML anchors are not accepted", event)
        if isinstance(event, yaml.CollectionStartEvent):
            if stack:
                _attach(stack, keys, value, event, fail)  # attached now, filled in as its events arrive
            stack.append(value)
            keys.append(_NO_KEY)
            continue
        if not stack:
            root = value
        else:
            _attach(stack, keys, value, event, fail)
    end = loader.get_event()  # DocumentEnd
    if not loader.check_event(yaml.StreamEndEvent):
        raise fail("more than one YAML document", end)
    return root


_NO_KEY = object()


def _attach(stack: list[Any], keys: list[Any], value: Any, event: Any, fail: Any) -> None:
    parent = stack[-1]
    if isinstance(parent, list):
        parent.append(value)
    elif keys[-1] is _NO_KEY:
        if isinstance(value, (dict, list)):
            raise fail("a YAML mapping key that is itself a mapping or sequence", event)
        if value in parent:
            raise fail(f"duplicate key {value!r}", event)
        keys[-1] = value
    else:
        parent[keys[-1]] = value
        keys[-1] = _NO_KEY


def load_yaml(
    data: bytes | str,
    *,
    source: str,
    max_bytes: int | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
    loader: type[yaml.SafeLoader] | None = None,
) -> Any:
    """Parse one YAML document from an untrusted source into plain Python values (safe tags only).

    ``loader`` is a :class:`yaml.SafeLoader` subclass with other implicit resolvers (OCM turns timestamps off);
    by default libyaml's ``CSafeLoader`` where PyYAML was built with it.

    Raises:
        MalformedError: over ``max_bytes``, not YAML, an alias, a duplicate key, several documents, or nesting
            deeper than ``max_depth``.
    """
    size = len(data.encode()) if isinstance(data, str) else len(data)
    if max_bytes is not None and size > max_bytes:
        raise MalformedError(f"{source}: {size} bytes; at most {max_bytes} expected", subject=source)
    import yaml

    default: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    instance = (loader or default)(data)
    collecting = gc.isenabled()
    gc.disable()  # the values built here hold no cycles; collections triggered by their number only cost time
    try:
        return _build(instance, source, max_depth)
    except RecursionError:  # pragma: no cover - bounded by max_depth; kept so a bug cannot become a traceback
        raise MalformedError(f"{source}: YAML nested too deeply", subject=source) from None
    except (yaml.YAMLError, ValueError, TypeError) as exc:  # construction errors (bad !!int, unhashable key...)
        raise MalformedError(f"{source}: not valid YAML ({exc})", subject=source) from None
    finally:
        if collecting:
            gc.enable()
        instance.dispose()


__all__ = ["DEFAULT_MAX_DEPTH", "load_json", "load_yaml", "refuse_lone_surrogates"]
