"""Records as JSON: one rule for the ``to_dict`` methods that map a record's fields one by one."""

from __future__ import annotations

import enum
from typing import Any


def fields_json(obj: object, names: str, /, **values: Any) -> dict[str, Any]:
    """The JSON mapping of ``obj``'s attributes ``names`` (separated by spaces), keys in that order.

    Each value is the attribute as it is, except that an enum gives its value, a tuple or list a list,
    a dict a copy, and a record with ``to_dict`` its mapping (inside a tuple or list too). A keyword
    in ``values`` gives that name's value outright (a formatted date, a renamed field) in its place.
    """
    unknown = set(values) - set(names.split())
    if unknown:
        raise TypeError(f"fields_json: {sorted(unknown)} not among the names")
    return {name: values[name] if name in values else _json(getattr(obj, name)) for name in names.split()}


def _json(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return dict(value)
    to_dict = getattr(value, "to_dict", None)
    return to_dict() if callable(to_dict) else value
