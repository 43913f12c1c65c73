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

Recursion here (copies, JCS, the v1 encoder) follows the document's nesting, which is bounded: a
:class:`~signery.ocm.descriptor.Descriptor` holds at most ``MAX_DEPTH`` levels (checked when built and by every
copy, :meth:`~signery.ocm.descriptor.Descriptor.to_v2` included), and a provider given as a JSON string is parsed
with the same bound.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import rfc8785

from ..errors import MalformedError, UsageError
from .descriptor import MAX_DEPTH, SCHEMA_V2, Descriptor, check_tree, clone

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
    if algorithm == V1 and descriptor.schema != SCHEMA_V2:
        raise UsageError(
            f"{descriptor.source}: jsonNormalisation/v1 is implemented for schema v2 only; use /v3",
            subject="normalisationAlgorithm",
        )
    doc = descriptor.to_v2()  # a depth-checked copy: everything below recurses at most MAX_DEPTH levels
    comp = doc["component"]
    try:
        if algorithm in (V1, V2):
            _default_extra_identity_version(comp.get("resources") or [])
        if algorithm == V1:
            return _entry_encode(_v1_view(doc, null_extra=v1_null_extra_identity)).encode("utf-8")
        return rfc8785.dumps({"component": _jcs_component(comp)})  # type: ignore[no-any-return]
    except RecursionError:  # pragma: no cover - bounded above; kept so a bug cannot become a traceback
        raise MalformedError(
            f"{descriptor.source}: nested too deeply to normalise", subject=descriptor.source
        ) from None


def _frozen(value: Any) -> Any:
    """A hashable stand-in equal exactly when the JSON values are equal (depth already bounded)."""
    if isinstance(value, dict):
        return frozenset((k, _frozen(v)) for k, v in value.items())
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def _default_extra_identity_version(resources: list[Any]) -> None:
    """OCM's legacy defaulting: a resource whose name and extra identity equal another's gets ``version`` added.

    In order, as Go does it (an earlier resource's defaulted identity is what later ones are compared with), but
    in linear time: a count of the resources holding each identity replaces the pairwise scan.
    """

    def identity(item: dict[str, Any]) -> tuple[Any, Any]:
        return _frozen(item.get("name")), _frozen(item.get("extraIdentity") or {})

    counts = Counter(identity(r) for r in resources if isinstance(r, dict))
    for a in resources:
        if not isinstance(a, dict):
            continue
        before = identity(a)
        if counts[before] < 2:  # no other resource holds this identity
            continue
        extra = dict(a.get("extraIdentity") or {})
        extra["version"] = a.get("version", "")
        a["extraIdentity"] = extra
        counts[before] -= 1
        counts[identity(a)] += 1


def _labels(value: Any) -> list[Any] | None:
    """Keep labels with ``signing: true`` (bool or string), reduced to the signed fields; None when none survive."""
    if not isinstance(value, list):
        return None
    kept = []
    for label in value:
        if isinstance(label, dict) and label.get("signing") in (True, "true"):
            kept.append({k: v for k, v in label.items() if k in _LABEL_FIELDS})
    return kept or None


def _provider_json(value: str) -> Any:
    """A provider string parsed as JSON (OCM accepts a JSON object there), or None when it is not JSON.

    It sits one level below ``component``, so what it holds may nest ``MAX_DEPTH - 2`` levels, like the rest of
    the descriptor; deeper is ``malformed`` (never a RecursionError from the decoder or the encoders after it).
    """
    try:
        parsed = json.loads(value)
    except RecursionError:
        raise _provider_too_deep() from None
    except ValueError:
        return None
    if isinstance(parsed, dict | list):
        try:
            check_tree(parsed, "component.provider", max_depth=MAX_DEPTH - 2)
        except MalformedError:
            raise _provider_too_deep() from None
    return parsed


def _provider_too_deep() -> MalformedError:
    return MalformedError(
        f"component.provider: JSON nested more than {MAX_DEPTH - 2} levels deep", subject="component.provider"
    )


def _provider(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        parsed = _provider_json(value)
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
            out[key] = clone(value, "component." + key)
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
                parsed = _provider_json(value)
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
            out[key] = clone(value, "component." + key)
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
