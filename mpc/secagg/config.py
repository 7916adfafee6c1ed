"""The public description of one round and the stages it moves through."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from functools import cached_property
from types import MappingProxyType
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mpc.secagg.graph import MaskGraph, build_graph
from mpc.secagg.messages import B64, Name, RoundId
from mpc.secagg.prg import SEED_BYTES, random_bytes, random_seed

MAX_VECTOR_LENGTH = 1 << 26


class Stage(StrEnum):
    """Server and client stages, in order; a round ends ``done`` or ``aborted``."""

    ADVERTISE_KEYS = "advertise_keys"
    SHARE_KEYS = "share_keys"
    MASKED_INPUT = "masked_input"
    UNMASK = "unmask"
    DONE = "done"
    ABORTED = "aborted"


class RoundConfig(BaseModel):
    """What every party of a round agrees on before it starts; all of it is public.

    ``participants`` fixes each client's Shamir point (position + 1) and the sign of its pairwise masks.
    ``threshold`` t must be a strict majority (n/2 < t ≤ n). ``round_seed`` seeds the public neighbour
    permutation used when the graph is not complete; ``neighbours`` overrides the default degree.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    round_id: RoundId
    participants: tuple[Name, ...] = Field(min_length=2, max_length=100_000)
    threshold: int
    vector_length: int = Field(ge=1, le=MAX_VECTOR_LENGTH)
    modulus_bits: int = Field(default=32, ge=1, le=32)
    round_seed: Annotated[B64, Field(min_length=SEED_BYTES, max_length=SEED_BYTES)]
    neighbours: int | None = None

    @model_validator(mode="after")
    def _check(self) -> RoundConfig:
        n = len(self.participants)
        if len(set(self.participants)) != n:
            raise ValueError("participants must be distinct")
        if not (n // 2 < self.threshold <= n and self.threshold >= 2):
            raise ValueError("threshold must be a strict majority of the participants (n/2 < t <= n)")
        if self.neighbours is not None and not (self.neighbours >= 2 and self.neighbours % 2 == 0):
            raise ValueError("neighbours must be an even number of at least 2")
        return self

    @cached_property
    def graph(self) -> MaskGraph:
        """The public neighbour graph every party derives alike from the participants and the round seed."""
        return build_graph(self.participants, self.threshold, self.round_seed, self.neighbours)

    @cached_property
    def point(self) -> Mapping[str, int]:
        """Each participant's Shamir x-coordinate (read-only)."""
        return MappingProxyType({name: i + 1 for i, name in enumerate(self.participants)})

    def to_json(self) -> dict[str, object]:
        """The configuration as JSON-able data (how a round's state shows it to its parties)."""
        return self.model_dump(mode="json")


def new_round(
    participants: list[str] | tuple[str, ...],
    threshold: int,
    vector_length: int,
    modulus_bits: int = 32,
    neighbours: int | None = None,
) -> RoundConfig:
    """A fresh round: random id and public graph seed from the OS CSPRNG."""
    return RoundConfig(
        round_id="sa-" + random_bytes(12).hex(),
        participants=tuple(participants),
        threshold=threshold,
        vector_length=vector_length,
        modulus_bits=modulus_bits,
        round_seed=random_seed(),
        neighbours=neighbours,
    )
