"""The negative list (负面清单): what no agreement can ever cover, managed by admins.

Entries name a whole dataset (``"tax_income"``), a column (``"tax_income.id_number"``) or a purpose
(``"marketing"``). They are checked when an agreement is created *and* at every later decision, so adding an
entry blocks existing agreements from then on (reads, suspension, revocation and rejection stay possible).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, delete, select
from sqlalchemy.exc import IntegrityError

from catalog.columns import NAME_RE
from catalog.errors import ALREADY_EXISTS, POLICY_DENIED, DomainError, invalid, not_found
from policies import _tables as t
from policies._clock import aware
from policies.actor import Actor, Role

PURPOSE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class EntryKind(StrEnum):
    """What an entry names: a whole dataset, one column (``dataset.column``) or a purpose."""

    DATASET = "dataset"
    COLUMN = "column"
    PURPOSE = "purpose"


@dataclass(frozen=True)
class NegativeEntry:
    """One entry of the list, with who added it, when and why."""

    id: str
    kind: EntryKind
    value: str
    note: str
    created_by: str
    created_at: dt.datetime

    def public(self) -> dict[str, str]:
        """The entry as the API shows it (JSON strings)."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "value": self.value,
            "note": self.note,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class NegativeList:
    """A snapshot of the list, as the pure decision function consumes it."""

    datasets: frozenset[str] = field(default_factory=frozenset)
    columns: frozenset[str] = field(default_factory=frozenset)  # "dataset.column"
    purposes: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, entries: Iterable[NegativeEntry]) -> NegativeList:
        """The snapshot of ``entries``, split by kind for constant-time checks."""
        entries = list(entries)
        return cls(
            frozenset(e.value for e in entries if e.kind is EntryKind.DATASET),
            frozenset(e.value for e in entries if e.kind is EntryKind.COLUMN),
            frozenset(e.value for e in entries if e.kind is EntryKind.PURPOSE),
        )

    def blocks_dataset(self, dataset: str) -> bool:
        """Whether the whole dataset is listed."""
        return dataset in self.datasets

    def blocks_column(self, dataset: str, column: str) -> bool:
        """Whether ``dataset.column`` is listed (a listed dataset is checked separately)."""
        return f"{dataset}.{column}" in self.columns

    def blocks_purpose(self, purpose: str) -> bool:
        """Whether the purpose is listed."""
        return purpose in self.purposes


def validate_value(kind: EntryKind, value: str) -> str:
    """``value`` if it is well formed for ``kind``; ``INVALID_REQUEST`` saying the expected form otherwise."""
    if kind is EntryKind.DATASET:
        ok = bool(NAME_RE.match(value))
    elif kind is EntryKind.COLUMN:
        parts = value.split(".")
        ok = len(parts) == 2 and all(NAME_RE.match(p) for p in parts)
    else:
        ok = bool(PURPOSE_RE.match(value))
    if not ok:
        hint = {
            EntryKind.DATASET: "a dataset name",
            EntryKind.COLUMN: "'dataset.column'",
            EntryKind.PURPOSE: "a purpose token matching ^[a-z][a-z0-9_]{0,63}$",
        }[kind]
        raise invalid(f"a {kind.value} entry must be {hint}")
    return value


def _require_admin(actor: Actor) -> None:
    if actor.role is not Role.ADMIN:
        raise DomainError(
            POLICY_DENIED,
            "only an admin manages the negative list",
            [{"reason": "role.not_allowed", "message": "only an admin manages the negative list"}],
        )


def _row(r: Any) -> NegativeEntry:
    return NegativeEntry(r.id, EntryKind(r.kind), r.value, r.note, r.created_by, r.created_at)


def add_entry(
    engine: Engine, actor: Actor, kind: str, value: str, note: str = "", *, now: dt.datetime | None = None
) -> NegativeEntry:
    """Add an entry (admin only). ``ALREADY_EXISTS`` if the same (kind, value) is listed."""
    _require_admin(actor)
    try:
        k = EntryKind(kind)
    except ValueError:
        raise invalid("kind must be one of dataset, column, purpose") from None
    validate_value(k, value)
    if len(note) > 1000:
        raise invalid("note is longer than 1000 characters")
    entry = NegativeEntry("neg_" + secrets.token_hex(8), k, value, note, actor.name, aware(now))
    try:
        with engine.begin() as conn:
            conn.execute(t.negative_list.insert().values(
                id=entry.id, kind=k.value, value=value, note=note, created_by=actor.name,
                created_at=entry.created_at))
    except IntegrityError:
        raise DomainError(ALREADY_EXISTS, "this negative-list entry already exists") from None
    return entry


def remove_entry(engine: Engine, actor: Actor, entry_id: str) -> None:
    """Remove an entry (admin only)."""
    _require_admin(actor)
    with engine.begin() as conn:
        res = conn.execute(delete(t.negative_list).where(t.negative_list.c.id == entry_id))
    if res.rowcount != 1:
        raise not_found("negative-list entry")


def list_entries(engine: Engine) -> list[NegativeEntry]:
    """Every entry, by kind then value."""
    with engine.connect() as conn:
        return _entries_in(conn)


_ALL = select(t.negative_list).order_by(t.negative_list.c.kind, t.negative_list.c.value)  # built once


def _entries_in(conn: Connection) -> list[NegativeEntry]:
    return [_row(r) for r in conn.execute(_ALL)]


def load(engine: Engine) -> NegativeList:
    """The current list as a snapshot for `policies.decision.decide`."""
    return NegativeList.of(list_entries(engine))


def load_in(conn: Connection) -> NegativeList:
    """`load` within ``conn``'s transaction."""
    return NegativeList.of(_entries_in(conn))
