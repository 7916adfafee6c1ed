"""The in-memory state of one service context: typed caches and registries owned by `AppContext.caches`.

Everything a gateway process keeps between requests lives here, created with its context by
`gateway.context.open_context` (the factory every app, CLI command and test goes through) and forgotten with
it; nothing is a module global, so two contexts in one process (tests, a CLI command beside a server) never
share a validated HE context or a model's weights. The caches among them (HE contexts, model weights, review
locks) are rebuilt from the store or the request when missing: losing them costs time, never state.

- `sign_contexts`: validated public BFV contexts of verification checks (`gateway.services.verification`);
- `scoring_contexts`: validated public CKKS contexts of encrypted scoring (`gateway.services.scoring`);
- `model_weights`: a released linear model's plaintext (w, b), read once and checked against its card;
- `review_locks`: one lock per review key while the owner's review of a spec is computed
  (`gateway.services.jobs.review_job`; the stored review is the ``job_reviews`` row);
- `psi_setups`: the PSI and anonymous-check setups per dataset version (`sandbox.psi.SetupStore`, whose disk
  copies live under ``work/psi``);
- `secagg_rounds`: the context's handle on the secure-aggregation rounds (`gateway.services.rounds`): its clock
  and limits only — the rounds themselves are store rows (``secagg_rounds``), so any process serves any call of a
  round and a restart loses none;
- `inflight`: each principal's heavy calls in flight (`InFlight`, taken by `gateway.deps.heavy_call`).

Durable state is never here: jobs, their outputs awaiting release (``job_outputs``), reviews, sessions,
secure-aggregation rounds and the audit log are store rows. Pure memoisation of deterministic functions
(`functools.lru_cache` on a noise measurement, a noise-multiplier calibration, a membership proof, the sandbox
runtime discovery) stays with those functions: its value depends only on the arguments, never on a context.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from catalog.keyring import Keyring
from catalog.sealed import Sealer
from gateway.services.rounds import RoundRegistry
from gateway.settings import Settings
from sandbox.psi import SetupStore

if TYPE_CHECKING:
    from mpc.he import LinearModel

__all__ = ["Caches", "ContextCache", "InFlight", "KeyedLocks", "ValueCache"]

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ContextCache:
    """Validated public HE contexts per (principal, use, context digest), least recently used first out.

    Validating a bank's context is the costliest step of an HE request (80–160 ms for 0.6–12 MB); a validated
    context is safe to reuse for the same bank, never across banks (docs/mechanisms/he.md), so the principal is
    part of the key. Each entry comes with its own lock: one evaluation at a time uses a TenSEAL object.
    """

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, ...], tuple[Any, threading.Lock]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...], load: Callable[[], T]) -> tuple[T, threading.Lock]:
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return hit
        value = load()  # raises on an invalid context: nothing is cached
        entry = (value, threading.Lock())
        with self._lock:
            self._entries[key] = entry
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return entry


class ValueCache(Generic[K, V]):
    """Values computed once per key (``load`` raises: nothing is cached); thread-safe."""

    def __init__(self) -> None:
        self._values: dict[K, V] = {}
        self._lock = threading.Lock()

    def get(self, key: K, load: Callable[[], V]) -> V:
        with self._lock:
            hit = self._values.get(key)
        if hit is not None:
            return hit
        value = load()
        with self._lock:
            return self._values.setdefault(key, value)


class KeyedLocks:
    """One lock per key while someone holds it: callers with the same key run one at a time."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            yield
        with self._guard:
            self._locks.pop(key, None)


class InFlight:
    """At most ``limit`` calls in flight per key (a principal's id): `acquire` says whether one more may start.

    The count depends only on the key's own calls, never on data or on other keys."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> bool:
        with self._lock:
            n = self._counts.get(key, 0)
            if n >= self.limit:
                return False
            self._counts[key] = n + 1
            return True

    def release(self, key: str) -> None:
        with self._lock:
            n = self._counts.get(key, 0) - 1
            if n > 0:
                self._counts[key] = n
            else:
                self._counts.pop(key, None)

    def count(self, key: str) -> int:
        with self._lock:
            return self._counts.get(key, 0)


@dataclass
class Caches:
    """The in-memory state of one service context (see the module docstring)."""

    sign_contexts: ContextCache
    scoring_contexts: ContextCache
    model_weights: ValueCache[tuple[str, str], LinearModel]  # (model id, output digest) -> (w, b)
    review_locks: KeyedLocks
    psi_setups: SetupStore
    secagg_rounds: RoundRegistry
    inflight: InFlight

    @classmethod
    def create(cls, settings: Settings, keyring: Keyring | None = None) -> Caches:
        sealer = None if keyring is None else Sealer(settings.suite, keyring)  # PSI setups sealed at rest
        return cls(sign_contexts=ContextCache(), scoring_contexts=ContextCache(), model_weights=ValueCache(),
                   review_locks=KeyedLocks(), psi_setups=SetupStore(settings.work_dir, settings.keys_dir, keyring,
                                                                    sealer),
                   secagg_rounds=RoundRegistry(), inflight=InFlight(settings.max_inflight_per_principal))
