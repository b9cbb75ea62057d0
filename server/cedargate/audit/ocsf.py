"""Exporting audit events as OCSF API Activity (class 6003, category Application Activity).

One cedargate event becomes one OCSF event. The tool call is the API operation, the agent
and the human it acts for are the actor, and Cedar's determining policies are the actor's
``authorizations`` (one Authorization Result per policy, with the decision). What OCSF has
no attribute for (outcome, risk, task, hashes, shadow verdict) goes under ``unmapped``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from cedargate import __version__

OCSF_VERSION: Final = "1.3.0"
CATEGORY_UID: Final = 6
CLASS_UID: Final = 6003
REQUIRED: Final = (
    "activity_id",
    "category_uid",
    "class_uid",
    "type_uid",
    "severity_id",
    "time",
    "metadata",
    "actor",
    "api",
    "src_endpoint",
)
"""The attributes the API Activity class (with the base event) requires."""

_ACTIVITY_BY_RISK: Final = {"read": (2, "Read"), "write": (3, "Update"), "destructive": (4, "Delete")}
_OTHER: Final = (99, "Other")


def to_ocsf(event: dict[str, Any]) -> dict[str, Any]:
    """The OCSF API Activity record for one audit event."""
    activity_id, activity_name = _ACTIVITY_BY_RISK.get(str(event.get("risk")), _OTHER)
    principal = event.get("principal") or {}
    decision = event.get("decision") or {}
    succeeded = event.get("outcome") == "succeeded"
    record: dict[str, Any] = {
        "activity_id": activity_id,
        "activity_name": activity_name,
        "category_uid": CATEGORY_UID,
        "category_name": "Application Activity",
        "class_uid": CLASS_UID,
        "class_name": "API Activity",
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": f"API Activity: {activity_name}",
        "severity_id": 1 if succeeded else 3,
        "severity": "Informational" if succeeded else "Medium",
        "time": int(datetime.fromisoformat(str(event["time"])).timestamp() * 1000),
        "status_id": 1 if succeeded else 2,
        "status": "Success" if succeeded else "Failure",
        "message": _message(event),
        "metadata": {
            "version": OCSF_VERSION,
            "uid": event.get("event_id"),
            "original_time": event.get("time"),
            "correlation_uid": event.get("session_id"),
            "product": {"name": "cedargate", "vendor_name": "cedargate", "version": __version__},
        },
        "actor": {
            "user": {"name": principal.get("on_behalf_of"), "uid": principal.get("on_behalf_of")},
            "app_name": principal.get("agent"),
            "session": {"uid": event.get("session_id")},
            "authorizations": _authorizations(decision),
        },
        "api": {
            "operation": event.get("tool"),
            "service": {"name": "cedargate"},
            "request": {"uid": event.get("event_id")},
            **(
                {"response": {"error": event["outcome"], "error_message": event["error"]}} if event.get("error") else {}
            ),
        },
        "src_endpoint": {"name": principal.get("agent"), "svc_name": "mcp"},
        "unmapped": {
            "outcome": event.get("outcome"),
            "risk": event.get("risk"),
            "team": principal.get("team"),
            "mode": principal.get("mode"),
            "task": event.get("task"),
            "manifest_hash": event.get("manifest_hash"),
            "result_sha256": event.get("result_sha256"),
            "context_sources": event.get("context_sources"),
            "changes": event.get("changes"),
            "shadow": event.get("shadow"),
            "hash": event.get("hash"),
            "prev_hash": event.get("prev_hash"),
        },
    }
    resource = event.get("resource")
    if resource:
        uid, kind = resource.get("id"), resource.get("type")
        record["resources"] = [{"uid": uid, "type": kind, "labels": [f"environment:{event.get('environment')}"]}]
        if kind == "AwsAccount":
            record["cloud"] = {"provider": "AWS", "account": {"uid": uid}}
    return record


def missing_required(record: dict[str, Any]) -> list[str]:
    """Required attributes absent or null in ``record`` (empty when it conforms)."""
    missing = [name for name in REQUIRED if record.get(name) is None]
    if not (record.get("metadata") or {}).get("product") or not (record.get("metadata") or {}).get("version"):
        missing.append("metadata.product/version")
    if not (record.get("api") or {}).get("operation"):
        missing.append("api.operation")
    return missing


def _authorizations(decision: dict[str, Any]) -> list[dict[str, Any]]:
    effect = decision.get("effect")
    if effect is None:
        return []
    policies = decision.get("policies") or []
    if not policies:
        reason = "; ".join(decision.get("errors") or []) or "no policy permits this call (default deny)"
        return [{"decision": effect, "policy": {"name": "default", "desc": reason}}]
    return [
        {
            "decision": effect,
            "policy": {
                "uid": p["id"],
                "name": p["id"],
                "desc": p.get("reason"),
                **({"group": {"name": p["approval_group"]}} if p.get("approval_group") else {}),
            },
        }
        for p in policies
    ]


def _message(event: dict[str, Any]) -> str:
    text = f"{event.get('tool')} {event.get('outcome')}"
    return f"{text}: {event['error']}" if event.get("error") else text
