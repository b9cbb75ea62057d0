"""An audit event as the log writes it: ``AuditEvent.model_dump(mode="json")`` without the model.

The pipeline writes one event per call. Building the pydantic model and dumping it again
costs more than everything else an allowed call spends on audit, so the pipeline hands the
log a record built directly from the event's fields. ``AuditEvent`` stays the schema: a
record holds exactly what dumping the model would (tests hold the two equal for every field
and value kind), and readers get the model back from the record (``WrittenEvent.event``).

Objects a server shares across many calls (the principal, the resource and a kept decision)
are dumped once each, keyed by identity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from cedargate.audit.event import AuditEvent

CHAIN_FIELDS: Final = ("prev_hash", "hash")
"""Set by the log when it writes the record, never by the writer."""
_SHARED_FIELDS: Final = ("principal", "resource", "decision")
"""Fields whose models are shared across calls: their dumps are kept (``_shared_dump``)."""
_DEFAULTS: Final[dict[str, Any]] = {
    name: to_jsonable_python(field.default)
    for name, field in AuditEvent.model_fields.items()
    if not field.is_required() and name not in CHAIN_FIELDS
}
_FLOAT_FIELDS: Final = frozenset(name for name, field in AuditEvent.model_fields.items() if field.annotation is float)
"""Fields typed ``float`` (``duration_ms``): an integer becomes a float, a non-finite value stays."""
_WRITABLE: Final = frozenset(AuditEvent.model_fields) - frozenset(CHAIN_FIELDS)
_MAX_SHARED: Final = 4096
"""Dumps kept by identity; the cache starts over when full (each entry keeps its model alive)."""
_shared: dict[int, tuple[BaseModel, dict[str, Any]]] = {}


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One event's fields as JSON values, chain fields excluded; equal to the model's JSON dump."""

    fields: dict[str, Any]

    @classmethod
    def of(cls, event: AuditEvent) -> EventRecord:
        """The record of a built event (writers other than the pipeline, where speed does not matter)."""
        return cls(event.model_dump(mode="json", exclude=set(CHAIN_FIELDS)))

    @classmethod
    def build(cls, fields: Mapping[str, Any]) -> EventRecord:
        """The record of the event ``AuditEvent(**fields)`` would be, without building it.

        ``fields`` hold what the model takes (models, enums, plain values); unset optional
        fields take the model's defaults. Raises ``TypeError`` for a field the model lacks.
        """
        record = dict(_DEFAULTS)
        for name, value in fields.items():
            if name not in _WRITABLE:
                raise TypeError(f"audit events have no field `{name}` a writer may set")
            # Most fields are strings or unset: written as they are, without a further call.
            record[name] = value if value is None or type(value) is str else _json_value(name, value)
        return cls(record)


def _json_value(name: str, value: Any) -> Any:
    if name in _FLOAT_FIELDS and (type(value) is int or type(value) is float):
        return float(value)  # a typed float keeps NaN and the infinities, as the model does
    if type(value) is int or type(value) is bool:
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, BaseModel):
        shared = name in _SHARED_FIELDS and value.model_config.get("frozen", False)
        return _shared_dump(value) if shared else value.model_dump(mode="json")
    if _plain_json(value):
        return value
    return to_jsonable_python(value, inf_nan_mode="null")  # the model's default (``ser_json_inf_nan``)


def _shared_dump(model: BaseModel) -> dict[str, Any]:
    """A frozen model's JSON dump, made once per object; records share it and never change it."""
    kept = _shared.get(id(model))
    if kept is not None and kept[0] is model:
        return kept[1]
    if len(_shared) >= _MAX_SHARED:
        _shared.clear()
    dumped = model.model_dump(mode="json")
    _shared[id(model)] = (model, dumped)
    return dumped


def _plain_json(value: Any) -> bool:
    """True when ``value`` is already what the model's dump would make of it: JSON's own types.

    Dicts with string keys, lists, scalars, finite floats (the model writes NaN and the
    infinities as ``null``, and tuples as lists). Not ``canonical._plain``: that one asks
    whether two encoders write a value alike, which tuples pass and some finite floats fail.
    """
    kind = type(value)
    if kind is float:
        return math.isfinite(value)
    if kind is dict:
        return all(type(key) is str and _plain_json(item) for key, item in value.items())
    if kind is list:
        return all(_plain_json(item) for item in value)
    return value is None or kind is str or kind is int or kind is bool
