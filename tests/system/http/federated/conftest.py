"""Federated training fixtures: the city split across five holders, a held-out city, the public encoding, and the
operator's stage closer (`stage_closer`) that ends a stage through the API once only silent holders are pending."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog.datagen import Generated, generate
from sandbox.train import FeatureEncoding
from veilbox import federated
from veilbox.client import Client
from veilbox.federated import encoding_from_declaration

HOLDERS = ("bank-north", "bank-south", "bank-east", "bank-west", "bank-centre")
FEATURES = ["age", "industry", "district", "monthly_income", "social_insurance_months"]


@pytest.fixture(scope="session")
def declaration(city_data: Generated) -> dict[str, Any]:
    return json.loads(city_data.tax_income_spec.read_text())


@pytest.fixture(scope="session")
def encoding(declaration: dict[str, Any]) -> FeatureEncoding:
    return encoding_from_declaration(declaration, FEATURES, "has_default")


@pytest.fixture(scope="session")
def holder_tables(city_data: Generated) -> dict[str, pa.Table]:
    """The 5000-row city split into five contiguous parts, one per holder."""
    table = pq.read_table(city_data.tax_income)
    size = table.num_rows // len(HOLDERS)
    return {name: table.slice(i * size, size) for i, name in enumerate(HOLDERS)}


@pytest.fixture(scope="session")
def holdout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another synthetic city (different seed): rows no model was trained on."""
    return generate(tmp_path_factory.mktemp("holdout"), rows=3000, seed=99).tax_income


StageCloser = Callable[..., AbstractContextManager[None]]


@pytest.fixture
def stage_closer(service: Any, monkeypatch: pytest.MonkeyPatch) -> StageCloser:
    """``with stage_closer(operator, silent=..., agreement_id=...):`` — while the block runs, a thread acting as the
    operator (its own connection, same token) closes a round's current stage through the API (``POST …/close``,
    what an operator does instead of waiting out the deadline) as soon as every participant the stage still waits
    for is silent: a holder whose `veilbox.federated.Holder` has left that round (its ``join_round`` returned or
    failed: a dropout has stopped, and has read everything it was going to read), or one named by ``silent``
    (e.g. a holder that refuses every plan and so never sends). Rounds are opened with generous deadlines;
    nothing here waits for one to pass, so a slow machine changes no outcome. An error in the thread is raised
    when the block exits."""
    left: set[tuple[str, str]] = set()  # (holder, round id): that holder sends nothing more in that round
    lock = threading.Lock()
    real_join = federated.join_round

    def join_round(client: Client, round_id: str, *args: Any, name: str | None = None, **kwargs: Any) -> Any:
        try:
            return real_join(client, round_id, *args, name=name, **kwargs)
        finally:
            with lock:
                left.add((name or client.me()["name"], round_id))

    monkeypatch.setattr(federated, "join_round", join_round)

    @contextmanager
    def closing(operator: Client, *, silent: frozenset[str] = frozenset(), agreement_id: str | None = None,
                poll_s: float = 0.1) -> Iterator[None]:
        token = operator._http.headers["Authorization"].split()[1]
        watcher = service.client(token)
        done = threading.Event()
        errors: list[BaseException] = []

        def watch() -> None:
            try:
                while not done.is_set():
                    for st in watcher.secagg_rounds():
                        if st["stage"] in ("done", "aborted") or (agreement_id and st["agreement_id"] != agreement_id):
                            continue
                        with lock:  # read before the status: whatever these holders sent has arrived
                            quiet = set(silent) | {name for name, rid in left if rid == st["id"]}
                        pending = set(watcher.secagg_round(st["id"]).get("pending", ()))
                        if pending and pending <= quiet:  # everyone else has sent: the stage can only wait
                            watcher.secagg_close(st["id"])
                    done.wait(poll_s)
            except BaseException as exc:  # reported when the block exits
                errors.append(exc)

        thread = threading.Thread(target=watch, name="stage-closer", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(timeout=120)
        if errors:
            raise errors[0]

    return closing
