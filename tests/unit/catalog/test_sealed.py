"""Files at rest: the sealed format (both suites), tampering, crypto-shredding, a sealed registration."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog import _tables, registry
from catalog.columns import DatasetSpec
from catalog.fingerprint import digest
from catalog.sealed import CHUNK, MAGIC, SealedError, Sealer, is_sealed, key_id_of, readable_path
from catalog.store import make_engine

SUITES = ["intl", "sm"]


class DictKeys:
    """An in-memory key service (the gateway's is `catalog.keyring.Keyring`)."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}

    def data_key(self, object_id: str) -> bytes:
        return self.keys[object_id]

    def new_data_key(self, object_id: str) -> bytes:
        assert object_id not in self.keys
        self.keys[object_id] = os.urandom(32)
        return self.keys[object_id]

    def destroy(self, object_id: str) -> None:
        self.keys.pop(object_id, None)


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("size", [0, 5, CHUNK, 2 * CHUNK + 7])
def test_round_trip(suite: str, size: int) -> None:
    s = Sealer(suite, DictKeys())
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    sealed = s.seal_bytes("dataset:d", data, new_key=True)
    assert sealed.startswith(MAGIC)
    assert s.open_bytes(sealed) == data
    if size >= 16:
        assert data[:16] not in sealed


def _chunks(sealed: bytes) -> tuple[bytes, list[bytes]]:
    (n,) = struct.unpack(">H", sealed[len(MAGIC):len(MAGIC) + 2])
    head = len(MAGIC) + 2 + n
    size = CHUNK + 28
    body = sealed[head:]
    return sealed[:head], [body[i:i + size] for i in range(0, len(body), size)]


@pytest.mark.parametrize("suite", SUITES)
def test_tampering_fails_authentication(suite: str) -> None:
    keys = DictKeys()
    s = Sealer(suite, keys)
    data = os.urandom(2 * CHUNK + 100)
    sealed = s.seal_bytes("dataset:d", data, new_key=True)
    header, chunks = _chunks(sealed)
    assert len(chunks) == 3
    flipped = bytearray(sealed)
    flipped[len(header) + 40] ^= 1
    bad = {
        "bit flip": bytes(flipped),
        "cut at a chunk boundary": header + chunks[0] + chunks[1],
        "cut inside a chunk": sealed[:-1],
        "chunks swapped": header + chunks[1] + chunks[0] + chunks[2],
        "chunk repeated": header + chunks[0] + chunks[0] + chunks[1] + chunks[2],
        "header edited": sealed.replace(b'"chunk":1048576', b'"chunk":1048575', 1),
    }
    for what, blob in bad.items():
        with pytest.raises(SealedError):
            s.open_bytes(blob)
        assert what
    other = Sealer("sm" if suite == "intl" else "intl", keys)
    with pytest.raises(SealedError):  # the header names its suite: the other one refuses it
        other.open_bytes(sealed)
    keys.destroy("dataset:d")
    with pytest.raises(SealedError):  # crypto-shredded
        s.open_bytes(sealed)


# --- a sealed registration -------------------------------------------------------------------------------------

SPEC = {"uid": {"role": "id"}, "district": {"role": "dimension", "domain": ["Aa", "Bb"]},
        "income": {"role": "measure", "bounds": [0, 500]}, "y": {"role": "dimension", "domain": [0, 1]}}


def register_sealed(tmp_path: Path, suite: str) -> tuple[Sealer, registry.Dataset, DictKeys]:
    """A 200-row dataset registered sealed under ``suite`` (an in-memory key service)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    _tables.metadata.create_all(engine)
    roots = tmp_path / "import"
    roots.mkdir()
    n = 200
    pq.write_table(pa.table({"uid": [f"person-{i:05d}" for i in range(n)], "district": ["Aa", "Bb"] * (n // 2),
                             "income": [float(i % 450) + 0.25 for i in range(n)], "y": [i % 2 for i in range(n)]}),
                   roots / "d.parquet")
    keys = DictKeys()
    sealer = Sealer(suite, keys)
    spec = DatasetSpec.model_validate({"name": "d", "source": str(roots / "d.parquet"), "columns": SPEC})
    reg = registry.register(engine, spec, "o", tmp_path / "data", [roots], 10**9, sealer=sealer)
    return sealer, reg.dataset, keys


@pytest.fixture(params=SUITES)
def sealed_dataset(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Sealer, registry.Dataset, DictKeys]:
    return register_sealed(tmp_path, request.param)


def test_registered_copy_is_sealed_and_fingerprinted_over_its_plaintext(sealed_dataset) -> None:
    sealer, ds, keys = sealed_dataset
    raw = ds.path.read_bytes()
    assert is_sealed(ds.path) and list(keys.keys) == [key_id_of(ds.path)]
    assert b"person-00042" not in raw and b"Bb" not in raw and b"PAR1" not in raw
    with pytest.raises(pa.ArrowException):
        pq.read_table(ds.path)
    with pytest.raises(duckdb.Error):
        duckdb.execute(f"SELECT count(*) FROM read_parquet('{ds.path}')").fetchall()
    plain = sealer.read_file(ds.path)
    assert digest(plain, ds.fingerprint.split(":")[0]) == ds.fingerprint  # verification at read
    assert pq.read_table(pa.BufferReader(plain)).num_rows == 200
    with readable_path(ds.path, sealer) as p:
        assert pq.read_table(p).num_rows == 200
    assert os.listdir(ds.path.parent) == [ds.path.name]  # no plaintext beside it


def test_failed_registration_destroys_its_data_key(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    _tables.metadata.create_all(engine)
    roots = tmp_path / "import"
    roots.mkdir()
    pq.write_table(pa.table({"uid": ["a"], "district": ["Aa"], "income": [1.0], "y": [0]}), roots / "d.parquet")
    keys = DictKeys()
    spec = DatasetSpec.model_validate({"name": "d", "source": str(roots / "d.parquet"), "columns": SPEC})

    def boom(conn: object) -> None:
        raise RuntimeError("audit failed")

    with pytest.raises(RuntimeError):
        registry.register(engine, spec, "o", tmp_path / "data", [roots], 10**9, journal=boom,
                          sealer=Sealer("intl", keys))
    assert keys.keys == {} and os.listdir(tmp_path / "data") == []
