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

import json
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
    if max_bytes is not None and len(data) > max_bytes:
        raise MalformedError(f"{source}: {len(data)} bytes; at most {max_bytes} expected", subject=source)

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
    return doc


def _compose(loader: yaml.SafeLoader, source: str, max_depth: int) -> yaml.Node | None:
    """One document's node tree, built iteratively from parser events with every bound applied."""
    import yaml

    def fail(what: str, event: yaml.Event) -> MalformedError:
        mark = event.start_mark
        where = f" (line {mark.line + 1})" if mark is not None else ""
        return MalformedError(f"{source}: {what}{where}", subject=source)

    loader.get_event()  # StreamStart
    if loader.check_event(yaml.StreamEndEvent):
        return None
    loader.get_event()  # DocumentStart
    stack: list[yaml.CollectionNode] = []
    pending: list[yaml.Node | None] = []  # a mapping's key waiting for its value
    keys: list[set[tuple[str, str]]] = []
    root: yaml.Node | None = None
    while root is None:
        event = loader.get_event()
        node: yaml.Node
        if isinstance(event, yaml.AliasEvent):
            raise fail("YAML aliases are not accepted", event)
        if isinstance(event, yaml.ScalarEvent):
            tag = event.tag
            if tag is None or tag == "!":
                tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
            node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            if len(stack) >= max_depth:
                raise fail(f"YAML nested deeper than {max_depth} levels", event)
            kind: type[yaml.CollectionNode] = (
                yaml.SequenceNode if isinstance(event, yaml.SequenceStartEvent) else yaml.MappingNode
            )
            tag = event.tag
            if tag is None or tag == "!":
                tag = loader.resolve(kind, None, event.implicit)
            node = kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            done = stack.pop()
            pending.pop()
            keys.pop()
            done.end_mark = event.end_mark
            if not stack:
                root = done
            continue
        else:  # pragma: no cover - libyaml emits nothing else inside a document
            raise fail(f"unexpected YAML event {type(event).__name__}", event)
        if stack:
            parent = stack[-1]
            if isinstance(parent, yaml.SequenceNode):
                parent.value.append(node)
            elif pending[-1] is None:
                if isinstance(node, yaml.ScalarNode):
                    key = (node.tag, node.value)
                    if key in keys[-1]:
                        raise fail(f"duplicate key {node.value!r}", event)
                    keys[-1].add(key)
                pending[-1] = node
            else:
                parent.value.append((pending[-1], node))
                pending[-1] = None
        elif isinstance(node, yaml.ScalarNode):
            root = node
        if isinstance(node, yaml.CollectionNode):
            stack.append(node)
            pending.append(None)
            keys.append(set())
    end = loader.get_event()  # DocumentEnd
    if not loader.check_event(yaml.StreamEndEvent):
        raise fail("more than one YAML document", end)
    return root


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
    if max_bytes is not None and len(data) > max_bytes:
        raise MalformedError(f"{source}: {len(data)} bytes; at most {max_bytes} expected", subject=source)
    import yaml

    default: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    instance = (loader or default)(data)
    try:
        node = _compose(instance, source, max_depth)
        return None if node is None else instance.construct_document(node)
    except RecursionError:  # pragma: no cover - bounded by max_depth; kept so a bug cannot become a traceback
        raise MalformedError(f"{source}: YAML nested too deeply", subject=source) from None
    except (yaml.YAMLError, ValueError, TypeError) as exc:  # construction errors (bad !!int, unhashable key...)
        raise MalformedError(f"{source}: not valid YAML ({exc})", subject=source) from None
    finally:
        instance.dispose()


__all__ = ["DEFAULT_MAX_DEPTH", "load_json", "load_yaml"]
