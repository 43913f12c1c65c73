"""OCM descriptor normalisations, byte for byte as OCM's Go code produces them.

- ``jsonNormalisation/v3`` and ``/v4alpha1`` (identical output): RFC 8785 JCS over the v2-shaped descriptor with
  ``meta``, ``signatures``, ``nestedDigests`` and ``repositoryContexts`` dropped, ``access``/``srcRefs`` dropped from
  resources, ``access`` from sources, the digest of ``access: none`` resources dropped, and only ``signing: true``
  labels kept (reduced to name/version/value/signing). The reference label rule is keyed ``references`` in Go
  while the emitted key is ``componentReferences``, so reference labels stay unfiltered; we match Go.
- ``jsonNormalisation/v2``: the same plus the legacy defaulting of ``extraIdentity.version`` for resources whose
  name and extra identity collide.
- ``jsonNormalisation/v1``: the "entry list" encoding (every mapping a key-sorted list of one-key mappings) of the
  v2 schema document including ``meta``, without ``sources``, with ``"extraIdentity": null`` forced on resources
  and references, and Go's HTML escaping of ``<``, ``>`` and ``&`` in strings.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import rfc8785

from ..errors import MalformedError, UsageError
from .descriptor import SCHEMA_V2, Descriptor

V1 = "jsonNormalisation/v1"
V2 = "jsonNormalisation/v2"
V3 = "jsonNormalisation/v3"
V4ALPHA1 = "jsonNormalisation/v4alpha1"
ALGORITHMS: tuple[str, ...] = (V1, V2, V3, V4ALPHA1)
DEFAULT = V3

_NONE_ACCESS = ("none", "None")
_LABEL_FIELDS = ("name", "version", "value", "signing")


def check_algorithm(algorithm: str, *, field: str = "normalisationAlgorithm") -> str:
    if algorithm not in ALGORITHMS:
        raise MalformedError(
            f"unknown normalisation algorithm {algorithm!r} in {field}; known: {', '.join(ALGORITHMS)}",
            subject=field,
        )
    return algorithm


def normalise(descriptor: Descriptor, algorithm: str = DEFAULT, *, v1_null_extra_identity: bool = True) -> bytes:
    """The normalised bytes of ``descriptor`` under ``algorithm``.

    ``v1_null_extra_identity=False`` reproduces the v1 output of OCM releases before the ``extraIdentity: null``
    enforcement; verification tries it as a fallback so old v1 signatures still verify.
    """
    check_algorithm(algorithm, field="algorithm")
    doc = descriptor.to_v2()
    comp = doc["component"]
    if algorithm in (V1, V2):
        _default_extra_identity_version(comp.get("resources") or [])
    if algorithm == V1:
        if descriptor.schema != SCHEMA_V2:
            raise UsageError(
                f"{descriptor.source}: jsonNormalisation/v1 is implemented for schema v2 only; use /v3",
                subject="normalisationAlgorithm",
            )
        return _entry_encode(_v1_view(doc, null_extra=v1_null_extra_identity)).encode("utf-8")
    return rfc8785.dumps({"component": _jcs_component(comp)})  # type: ignore[no-any-return]


def _default_extra_identity_version(resources: list[Any]) -> None:
    """OCM's legacy defaulting: a resource whose name and extra identity equal another's gets ``version`` added."""
    for i, a in enumerate(resources):
        if not isinstance(a, dict):
            continue
        for j, b in enumerate(resources):
            if i == j or not isinstance(b, dict) or a.get("name") != b.get("name"):
                continue
            if (a.get("extraIdentity") or {}) != (b.get("extraIdentity") or {}):
                continue
            extra = dict(a.get("extraIdentity") or {})
            extra["version"] = a.get("version", "")
            a["extraIdentity"] = extra
            break


def _labels(value: Any) -> list[Any] | None:
    """Keep labels with ``signing: true`` (bool or string), reduced to the signed fields; None when none survive."""
    if not isinstance(value, list):
        return None
    kept = []
    for label in value:
        if isinstance(label, dict) and label.get("signing") in (True, "true"):
            kept.append({k: v for k, v in label.items() if k in _LABEL_FIELDS})
    return kept or None


def _provider(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        value = parsed if isinstance(parsed, dict) else {"name": value}
    if not isinstance(value, dict):
        raise MalformedError("component.provider must be a string or a mapping", subject="component.provider")
    out = {k: v for k, v in value.items() if v is not None and k != "labels"}
    labels = _labels(value.get("labels"))
    if labels:
        out["labels"] = labels
    return out


def _omit_empty(item: dict[str, Any]) -> dict[str, Any]:
    """Go's ``omitempty``: null values and empty extra identities or label lists are not emitted."""
    return {k: v for k, v in item.items() if v is not None and not (k in ("extraIdentity", "labels") and v == {})}


def _is_none_access(item: dict[str, Any]) -> bool:
    access = item.get("access")
    return isinstance(access, dict) and access.get("type") in _NONE_ACCESS


def _element(item: Any, drop: tuple[str, ...], *, filter_labels: bool = True) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise MalformedError("descriptor element is not a mapping")
    out = dict(item)
    if _is_none_access(out):
        out.pop("digest", None)
    for key in drop:
        out.pop(key, None)
    if filter_labels and "labels" in out:
        labels = _labels(out["labels"])
        if labels:
            out["labels"] = labels
        else:
            del out["labels"]
    out = _omit_empty(out)
    if out.get("extraIdentity") == {}:
        del out["extraIdentity"]
    if out.get("labels") == []:
        del out["labels"]
    return out


def _jcs_component(comp: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in comp.items():
        if key == "repositoryContexts" or value is None:
            continue
        if key == "provider":
            out[key] = _provider(value)
        elif key == "labels":
            labels = _labels(value)
            if labels:
                out[key] = labels
        elif key == "resources":
            out[key] = [_element(r, ("access", "srcRefs")) for r in value]
        elif key == "sources":
            out[key] = [_element(s, ("access",)) for s in value]
        elif key == "componentReferences":
            # Go's rule is keyed "references" and never fires here: reference labels stay unfiltered.
            out[key] = [_element(r, (), filter_labels=False) for r in value]
        else:
            out[key] = copy.deepcopy(value)
    for key in ("resources", "sources", "componentReferences"):
        out.setdefault(key, [])
    return out


class _Null:
    """An explicit JSON null that survives the omit-empty pass (OCM's ``EnforceNull``)."""


_NULL = _Null()


def _v1_view(doc: dict[str, Any], *, null_extra: bool) -> dict[str, Any]:
    comp = doc["component"]
    out: dict[str, Any] = {}
    for key, value in comp.items():
        if key in ("repositoryContexts", "sources") or value is None:
            continue
        if key == "provider":
            if isinstance(value, str):
                try:
                    parsed = json.loads(value)
                except ValueError:
                    parsed = None
                out[key] = _provider(parsed) if isinstance(parsed, dict) else value
            else:
                out[key] = _provider(value)
        elif key == "labels":
            labels = _labels(value)
            if labels:
                out[key] = labels
        elif key in ("resources", "componentReferences"):
            items = []
            for item in value:
                el = _element(item, ("access", "srcRefs") if key == "resources" else ())
                if null_extra and "extraIdentity" not in el:
                    el["extraIdentity"] = _NULL
                items.append(el)
            out[key] = items
        else:
            out[key] = copy.deepcopy(value)
    out.setdefault("resources", [])
    out.setdefault("componentReferences", [])
    top: dict[str, Any] = {"component": out}
    if doc.get("meta") is not None:
        top["meta"] = doc["meta"]
    return top


def _go_json_string(value: str) -> str:
    """A JSON string as Go's ``json.Marshal`` writes it (HTML-sensitive characters escaped)."""
    text: str = rfc8785.dumps(value).decode("utf-8")
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _entry_encode(value: Any) -> str:
    if value is _NULL or value is None:
        return "null"
    if isinstance(value, dict):
        parts = []
        for key in sorted(value):
            if value[key] is None:
                continue
            parts.append("{" + _go_json_string(key) + ":" + _entry_encode(value[key]) + "}")
        return "[" + ",".join(parts) + "]"
    if isinstance(value, list):
        return "[" + ",".join(_entry_encode(v) for v in value) + "]"
    if isinstance(value, str):
        return _go_json_string(value)
    try:
        return str(rfc8785.dumps(value).decode("ascii"))
    except (rfc8785.CanonicalizationError, ValueError) as exc:
        raise MalformedError(f"value {value!r} cannot be normalised: {exc}") from None
