"""A memo that starts over when full: bounded memory, no bookkeeping on the per-call path.

The authorizer keeps entity graphs, policy slices and decisions for reuse; what it keeps is
cheap to rebuild, so dropping everything at the bound costs one rebuild each, and a lookup
stays a plain dictionary read (no recency to maintain under concurrent calls).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    def __init__(self, max_entries: int) -> None:
        self._entries: dict[K, V] = {}
        self._max = max_entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        return self._entries.get(key)

    def clear(self) -> None:
        self._entries.clear()

    def put(self, key: K, value: V) -> V:
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[key] = value
        return value
