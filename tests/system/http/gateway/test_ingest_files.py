"""Registration over HTTP with a source cut short: a clear 422 with a stable reason, nothing registered and no
temporary copy left in the data directory."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from veilbox.client import ApiError

OWNER = "ingest-owner"


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_a_truncated_source_is_a_422_and_registers_nothing(service, suffix):
    owner = service.principal(OWNER, "owner")
    src_dir = service.settings.owner_import_dirs(OWNER)[-1]
    src_dir.mkdir(parents=True, exist_ok=True)
    src = src_dir / f"cut.{suffix}"
    if suffix == "parquet":
        pq.write_table(pa.table({"uid": [f"u{i}" for i in range(3000)], "age": [20 + i % 50 for i in range(3000)]}),
                       src)
        data = src.read_bytes()
        src.write_bytes(data[: len(data) // 2])
    else:
        text = "uid,age\n" + "".join(f"u{i},{20 + i % 50}\n" for i in range(3000))
        src.write_text(text[: text.index(",", len(text) // 2)])  # ends inside a row
    spec = {"name": "cut", "source": str(src), "columns": {"uid": {"role": "id"},
                                                          "age": {"role": "dimension", "bounds": [16, 100]}}}
    with pytest.raises(ApiError) as ei:
        owner.register_dataset(spec)
    assert (ei.value.status, ei.value.code) == (422, "INVALID_REQUEST")
    assert {"field": "source", "reason": "source.unreadable"} in ei.value.details
    assert owner.datasets() == []
    data_dir = service.settings.data_dir
    assert not data_dir.exists() or list(data_dir.iterdir()) == []
