"""Component descriptors: parse YAML or JSON (schema ``v2``, and ``ocm.software/v3alpha1`` for reading), validate
the fields signing depends on, and give both the raw document (written back unchanged except where signing edits
it) and its v2-shaped view (what every normalisation starts from).

YAML is read the way OCM's Go code reads it: timestamps stay strings, fields that Go types as strings become
strings (``version: 1`` is ``"1"``), and anchors/aliases are refused (a descriptor never needs them, and alias
expansion is how YAML bombs work).

Every descriptor, wherever it comes from (a file, a component archive directory or tar, a CTF layer), is read by
:func:`parse_descriptor`: size bounded before anything is parsed, then parsed once by the shared bounded parser
(:mod:`signery._internal.parse`: libyaml events, no aliases, no duplicate keys, one document, nesting at most
:data:`MAX_DEPTH`), so every failure is ``malformed`` naming the file. :class:`Descriptor` keeps the same depth
bound as an invariant (checked when built, and again by every copy), so normalisation never recurses deeper.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .._internal.parse import load_json, load_yaml
from ..errors import MalformedError, UsageError

SCHEMA_V2 = "v2"
SCHEMA_V3ALPHA1 = "ocm.software/v3alpha1"
MAX_DESCRIPTOR_BYTES = 8 << 20  # real descriptors are a few KiB; hundreds of resources stay far below this
MAX_ELEMENTS = 10_000  # resources, sources, references or signatures per descriptor
MAX_DEPTH = 64  # nested mappings/lists (the root is level 1); deeper documents only exist to exhaust the stack

# Fields the Go structs type as strings; YAML scalars there are coerced as sigs.k8s.io/yaml does.
_ELEMENT_STRING_FIELDS = ("name", "version", "type", "relation", "componentName")
_DIGEST_FIELDS = ("hashAlgorithm", "normalisationAlgorithm", "value")
_SCALARS = (str, bool, int, float)
_CONTAINERS = (dict, list)

if TYPE_CHECKING:
    _BaseLoader = yaml.SafeLoader
else:  # libyaml's parser when PyYAML has it: the bounded composer reads its events
    _BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):
    """The safe loader without the YAML 1.1 timestamp rule: OCM keeps ``creationTime`` as the string it was given."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}


class _Dumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_presenter)


def _go_string(value: Any) -> Any:
    """What a Go string field holds after sigs.k8s.io/yaml converted a YAML scalar into it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    return value


def _too_deep(where: str, limit: int = MAX_DEPTH) -> MalformedError:
    return MalformedError(f"{where}: nested more than {limit} levels deep", subject=where)


def check_tree(doc: Any, where: str, *, max_depth: int = MAX_DEPTH) -> None:
    """Refuse, iteratively, what a descriptor cannot hold: nesting beyond ``max_depth`` (the root is level 1, as
    in the parser), keys that are not strings, values that are not JSON values; ``malformed`` naming ``where``."""
    if not isinstance(doc, _CONTAINERS):
        if doc is not None and not isinstance(doc, _SCALARS):
            raise MalformedError(f"{where}: unsupported value of type {type(doc).__name__}", subject=where)
        return
    stack: list[tuple[Any, int]] = [(doc, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        value, depth = pop()
        if depth > max_depth:
            raise _too_deep(where, max_depth)
        children: Any = value
        if isinstance(value, dict):
            for k in value:
                if not isinstance(k, str):
                    raise MalformedError(f"{where}: keys must be strings, got {k!r}", subject=where)
            children = value.values()
        for v in children:
            if isinstance(v, _CONTAINERS):
                push((v, depth + 1))
            elif v is not None and not isinstance(v, _SCALARS):
                raise MalformedError(f"{where}: unsupported value of type {type(v).__name__}", subject=where)


def clone(value: Any, where: str = "component descriptor", depth: int = 1) -> Any:
    """A deep copy of a JSON-shaped value (mappings and lists copied, scalars shared: they are immutable).

    Much cheaper than :func:`copy.deepcopy` (no memo, no dispatch), and its recursion is bounded by
    :data:`MAX_DEPTH` whatever it is given: deeper input is ``malformed`` naming ``where``.
    """
    if depth > MAX_DEPTH:
        raise _too_deep(where)
    if isinstance(value, dict):
        return {k: clone(v, where, depth + 1) if isinstance(v, _CONTAINERS) else v for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v, where, depth + 1) if isinstance(v, _CONTAINERS) else v for v in value]
    return value


def _parse_bytes(data: bytes, source: str) -> Any:
    """The one way a descriptor's bytes become a document: bounded in size first, then parsed once."""
    if len(data) > MAX_DESCRIPTOR_BYTES:
        raise MalformedError(
            f"{source}: descriptor larger than {MAX_DESCRIPTOR_BYTES} bytes ({len(data)} or more)", subject=source
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedError(f"{source}: descriptor is not UTF-8", subject=source) from None
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("{"):
        return load_json(stripped, source=source, max_depth=MAX_DEPTH)
    return load_yaml(text, source=source, max_depth=MAX_DEPTH, loader=_Loader)


class Descriptor:
    """One component descriptor. ``raw`` is the document as read (with Go string coercions applied)."""

    def __init__(self, doc: Any, *, source: str = "component descriptor") -> None:
        self.source = source
        if not isinstance(doc, dict):
            raise MalformedError(f"{source}: a component descriptor is a mapping", subject=source)
        check_tree(doc, source)
        self.raw: dict[str, Any] = doc
        if "apiVersion" in doc or "kind" in doc:
            if doc.get("apiVersion") != SCHEMA_V3ALPHA1:
                raise MalformedError(
                    f"{source}: unsupported apiVersion {doc.get('apiVersion')!r} (expected {SCHEMA_V3ALPHA1})",
                    subject="apiVersion",
                )
            self.schema = SCHEMA_V3ALPHA1
            self._meta = self._mapping(doc, "metadata", "metadata")
            self._spec = self._mapping(doc, "spec", "spec", default={})
        else:
            meta = doc.get("meta")
            version = meta.get("schemaVersion") if isinstance(meta, dict) else None
            if version != SCHEMA_V2:
                raise MalformedError(
                    f"{source}: meta.schemaVersion is {version!r}; only v2 and {SCHEMA_V3ALPHA1} are supported",
                    subject="meta.schemaVersion",
                )
            self.schema = SCHEMA_V2
            self._meta = self._mapping(doc, "component", "component")
            self._spec = self._meta
        for key in ("name", "version"):
            value = _go_string(self._meta.get(key))
            if not isinstance(value, str) or not value:
                raise MalformedError(f"{source}: {self._where(key)} is missing or not a string", subject=key)
            self._meta[key] = value
        for kind in ("resources", "sources", "references"):
            self._check_elements(kind)
        sigs = doc.get("signatures")
        if sigs is not None and not isinstance(sigs, list):
            raise MalformedError(f"{source}: signatures must be a list", subject="signatures")
        for i, sig in enumerate(sigs or []):
            if not isinstance(sig, dict) or not isinstance(sig.get("name"), str):
                raise MalformedError(f"{source}: signatures[{i}] has no name", subject=f"signatures[{i}].name")

    def _where(self, key: str) -> str:
        return f"metadata.{key}" if self.schema == SCHEMA_V3ALPHA1 else f"component.{key}"

    def _mapping(self, parent: dict[str, Any], key: str, where: str, default: Any = None) -> dict[str, Any]:
        value = parent.get(key)
        if value is None and default is not None:
            value = parent[key] = default
        if not isinstance(value, dict):
            raise MalformedError(f"{self.source}: {where} is missing or not a mapping", subject=where)
        return value

    def _list_key(self, kind: str) -> str:
        if kind == "references" and self.schema == SCHEMA_V2:
            return "componentReferences"
        return kind

    def _check_elements(self, kind: str) -> None:
        key = self._list_key(kind)
        items = self._spec.get(key)
        where = f"{'spec' if self.schema == SCHEMA_V3ALPHA1 else 'component'}.{key}"
        if items is None:
            return
        if not isinstance(items, list):
            raise MalformedError(f"{self.source}: {where} must be a list", subject=where)
        if len(items) > MAX_ELEMENTS:
            raise MalformedError(f"{self.source}: {where} has more than {MAX_ELEMENTS} entries", subject=where)
        for i, item in enumerate(items):
            at = f"{where}[{i}]"
            if not isinstance(item, dict):
                raise MalformedError(f"{self.source}: {at} must be a mapping", subject=at)
            for field in _ELEMENT_STRING_FIELDS:
                if field in item:
                    item[field] = _go_string(item[field])
            if not isinstance(item.get("name"), str) or not item["name"]:
                raise MalformedError(f"{self.source}: {at}.name is missing", subject=f"{at}.name")
            if kind == "references" and not isinstance(item.get("componentName"), str):
                raise MalformedError(f"{self.source}: {at}.componentName is missing", subject=f"{at}.componentName")
            extra = item.get("extraIdentity")
            if extra is not None:
                if not isinstance(extra, dict):
                    raise MalformedError(f"{self.source}: {at}.extraIdentity must be a mapping", subject=at)
                item["extraIdentity"] = {k: _go_string(v) for k, v in extra.items()}
            digest = item.get("digest")
            if digest is not None:
                if not isinstance(digest, dict):
                    raise MalformedError(f"{self.source}: {at}.digest must be a mapping", subject=f"{at}.digest")
                for field in _DIGEST_FIELDS:
                    if field in digest:
                        digest[field] = _go_string(digest[field])
            access = item.get("access")
            if access is not None and not isinstance(access, dict):
                raise MalformedError(f"{self.source}: {at}.access must be a mapping", subject=f"{at}.access")

    # --- accessors over the raw document (edits through them are written back) ---

    @property
    def name(self) -> str:
        return str(self._meta["name"])

    @property
    def version(self) -> str:
        return str(self._meta["version"])

    @property
    def identity(self) -> str:
        return f"{self.name}:{self.version}"

    def elements(self, kind: str) -> list[dict[str, Any]]:
        """The raw ``resources``, ``sources`` or ``references`` entries (an empty list when absent)."""
        items = self._spec.get(self._list_key(kind))
        return items if isinstance(items, list) else []

    @property
    def resources(self) -> list[dict[str, Any]]:
        return self.elements("resources")

    @property
    def references(self) -> list[dict[str, Any]]:
        return self.elements("references")

    def ensure_elements(self, kind: str) -> list[dict[str, Any]]:
        key = self._list_key(kind)
        if not isinstance(self._spec.get(key), list):
            self._spec[key] = []
        items: list[dict[str, Any]] = self._spec[key]
        return items

    @property
    def signatures(self) -> list[dict[str, Any]]:
        sigs = self.raw.get("signatures")
        return sigs if isinstance(sigs, list) else []

    def signature(self, name: str) -> dict[str, Any] | None:
        return next((s for s in self.signatures if s.get("name") == name), None)

    def set_signature(self, entry: dict[str, Any]) -> None:
        """Add a named signature, replacing only a signature of the same name (in place, keeping the order)."""
        sigs = self.raw.setdefault("signatures", [])
        if not isinstance(sigs, list):
            sigs = self.raw["signatures"] = []
        for i, s in enumerate(sigs):
            if s.get("name") == entry["name"]:
                sigs[i] = entry
                return
        if len(sigs) >= MAX_ELEMENTS:
            raise UsageError(f"{self.source}: too many signatures", subject="signatures")
        sigs.append(entry)

    def to_v2(self) -> dict[str, Any]:
        """A deep copy in the v2 JSON shape: ``{"meta": ..., "component": ...}`` (plus signatures)."""
        if self.schema == SCHEMA_V2:
            doc: dict[str, Any] = clone(self.raw, self.source)
            return doc
        m = self._meta
        comp: dict[str, Any] = {"name": m["name"], "version": m["version"]}
        for key in ("labels", "provider", "creationTime"):
            if key in m:
                comp[key] = clone(m[key], self.source)
        comp["repositoryContexts"] = clone(self.raw.get("repositoryContexts"), self.source)
        comp["resources"] = clone(self._spec.get("resources"), self.source)
        comp["sources"] = clone(self._spec.get("sources"), self.source)
        comp["componentReferences"] = clone(self._spec.get("references"), self.source)
        out: dict[str, Any] = {"meta": {"schemaVersion": SCHEMA_V2}, "component": comp}
        if "signatures" in self.raw:
            out["signatures"] = clone(self.raw["signatures"], self.source)
        return out

    def copy(self) -> Descriptor:
        return Descriptor(clone(self.raw, self.source), source=self.source)

    def dump(self) -> bytes:
        """YAML, keys sorted as OCM writes them."""
        text = yaml.dump(self.raw, Dumper=_Dumper, sort_keys=True, default_flow_style=False, allow_unicode=True)
        return text.encode("utf-8")

    def iter_elements(self) -> Iterator[tuple[str, int, dict[str, Any]]]:
        for kind in ("resources", "sources", "references"):
            for i, item in enumerate(self.elements(kind)):
                yield kind, i, item


def parse_descriptor(data: bytes, *, source: str = "component descriptor") -> Descriptor:
    """Parse a descriptor from YAML or JSON bytes."""
    return Descriptor(_parse_bytes(data, source), source=source)


def load_descriptor(path: Path) -> Descriptor:
    """Read a descriptor file (YAML or JSON)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_DESCRIPTOR_BYTES + 1)
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist", subject=str(path)) from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory; give a descriptor file", subject=str(path)) from None
    return parse_descriptor(data, source=str(path))


def element_label(kind: str, item: dict[str, Any]) -> str:
    """How people name one element: ``resource text`` or ``reference app[os=linux]``."""
    singular = {"resources": "resource", "sources": "source", "references": "reference"}[kind]
    extra = item.get("extraIdentity") or {}
    suffix = "[" + ",".join(f"{k}={v}" for k, v in sorted(extra.items())) + "]" if extra else ""
    return f"{singular} {item.get('name')}{suffix}"
