"""The principal acting on a request, as the gateway authenticated it (name + role, plain values)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    OWNER = "owner"
    OPERATOR = "operator"
    BANK = "bank"
    REGULATOR = "regulator"


ANALYSTS = frozenset({Role.OPERATOR, Role.BANK})


@dataclass(frozen=True)
class Actor:
    """Who is asking. ``name`` is the unique principal name; ``role`` one of `Role`."""

    name: str
    role: Role | str  # a `Role` after construction (plain strings are accepted and validated)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("actor name must be a non-empty string")
        object.__setattr__(self, "role", Role(self.role))
