"""The principal acting on a request, as the gateway authenticated it (name + role, plain values).

`Role` and `ANALYSTS` are `vocab.roles`' (re-exported here for the policies' callers).
"""

from __future__ import annotations

from dataclasses import dataclass

from vocab.roles import ANALYSTS, Role

__all__ = ["ANALYSTS", "Actor", "Role"]


@dataclass(frozen=True)
class Actor:
    """Who is asking. ``name`` is the unique principal name; ``role`` one of `Role`."""

    name: str
    role: Role | str  # a `Role` after construction (plain strings are accepted and validated)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("actor name must be a non-empty string")
        object.__setattr__(self, "role", Role(self.role))
