"""Escalated calls and their claims (live calls only, so they live in this pod's memory)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Escalation:
    call_id: str
    escalated_by: str
    reason: str | None = None
    claimed_by: str | None = None


class Escalations:
    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[str, Escalation] = {}

    def escalate(self, call_id: str, by: str, reason: str | None = None) -> Escalation:
        esc = self._items.get(call_id)
        if esc is None:
            esc = self._items[call_id] = Escalation(call_id, by, reason)
        return esc

    def get(self, call_id: str) -> Escalation | None:
        return self._items.get(call_id)

    def list(self) -> list[Escalation]:
        return list(self._items.values())

    def claim(self, call_id: str, user_id: str) -> Escalation:
        esc = self._items.get(call_id)
        if esc is None:
            raise LookupError(f"call {call_id} is not escalated")
        if esc.claimed_by not in (None, user_id):
            raise PermissionError(f"call {call_id} is claimed by another agent")
        esc.claimed_by = user_id
        return esc

    def release(self, call_id: str, user_id: str) -> Escalation:
        esc = self._items.get(call_id)
        if esc is None:
            raise LookupError(f"call {call_id} is not escalated")
        if esc.claimed_by != user_id:
            raise PermissionError(f"call {call_id} is not claimed by you")
        esc.claimed_by = None
        return esc

    def forget(self, call_id: str) -> None:
        self._items.pop(call_id, None)
