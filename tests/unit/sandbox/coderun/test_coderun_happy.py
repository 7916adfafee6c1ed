"""The happy path: a computation over a Parquet input returns the right, canonical, digested output."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from safetensors.numpy import load as load_safetensors

from catalog.columns import ColumnInfo
from catalog.mock import mock_table
from sandbox.coderun import (
    CodeFailure,
    CodeOutcome,
    CodeResult,
    Limits,
    SandboxConfig,
    code_hash,
    dry_run_on_mock,
    run_code,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the code sandbox must start as root")


def ok(outcome: CodeOutcome) -> CodeResult:
    assert isinstance(outcome, CodeResult), outcome
    return outcome


def failed(outcome: CodeOutcome) -> CodeFailure:
    assert isinstance(outcome, CodeFailure), outcome
    return outcome

MEAN = """
import pyarrow.compute as pc

def main(inputs):
    t = inputs["tax_income"]
    return {"mean_income": pc.mean(t["monthly_income"]).as_py(), "rows": t.num_rows}
"""


def test_mean_of_a_column(tax_income: Path, config: SandboxConfig, limits: Limits):
    r = ok(run_code(MEAN, "main", {"tax_income": tax_income}, "json", 1024, limits, config=config))
    assert r.value() == {"mean_income": 7500.0, "rows": 8}
    assert r.output_bytes == b'{"mean_income":7500.0,"rows":8}'  # canonical: sorted keys, no spaces
    assert r.digest == "sha256:" + hashlib.sha256(r.output_bytes).hexdigest()
    assert r.output_kind == "json" and r.ok and not r.on_mock and r.duration_s > 0


def test_inputs_are_tables_and_readable_paths(tax_income: Path, config: SandboxConfig, limits: Limits):
    src = """
import numpy as np
import pyarrow.parquet as pq

def main(inputs):
    by_path = pq.read_table(inputs.path("tax_income"))
    return {"names": sorted(inputs), "path": inputs.path("tax_income"), "same": by_path.equals(inputs["tax_income"]),
            "numpy_mean": np.mean(by_path["monthly_income"].to_numpy()), "cols": by_path.column_names}
"""
    r = ok(run_code(src, "main", {"tax_income": tax_income}, "json", 4096, limits, config=config))
    assert r.value() == {"names": ["tax_income"], "path": "/inputs/tax_income.parquet", "same": True,
                         "numpy_mean": 7500.0, "cols": ["person_id", "district", "monthly_income"]}


def test_group_by_and_stdout_capture(tax_income: Path, config: SandboxConfig, limits: Limits):
    src = """
def main(inputs):
    print("grouping", inputs["tax_income"].num_rows, "rows")
    g = inputs["tax_income"].group_by("district").aggregate([("monthly_income", "sum")])
    return {d: s for d, s in zip(g["district"].to_pylist(), g["monthly_income_sum"].to_pylist())}
"""
    r = ok(run_code(src, "main", {"tax_income": tax_income}, "json", 4096, limits, config=config))
    assert r.value() == {"Liangxi": 20000.0, "Xinwu": 21000.0, "Binhu": 19000.0}
    assert r.stdout_tail == "grouping 8 rows\n"


def test_model_output_is_safetensors(tax_income: Path, config: SandboxConfig, limits: Limits):
    src = """
import numpy as np
from safetensors.numpy import save

def main(inputs):
    x = inputs["tax_income"]["monthly_income"].to_numpy()
    return save({"mean": np.array([x.mean()], dtype=np.float64), "w": np.ones((2, 3), dtype=np.float32)})
"""
    r = ok(run_code(src, "main", {"tax_income": tax_income}, "model", 4096, limits, config=config))
    tensors = load_safetensors(r.output_bytes)
    assert tensors["mean"].tolist() == [7500.0]
    assert np.array_equal(tensors["w"], np.ones((2, 3), dtype=np.float32))
    with pytest.raises(TypeError):
        r.value()


def test_no_inputs_and_numpy_values(config: SandboxConfig, limits: Limits):
    src = "import numpy as np\ndef main(inputs):\n    return {'n': len(inputs), 'v': np.arange(3), 's': np.int64(7)}\n"
    assert ok(run_code(src, "main", {}, "json", 128, limits, config=config)).value() == {"n": 0, "v": [0, 1, 2], "s": 7}


def test_dry_run_on_mock_uses_the_same_sandbox(config: SandboxConfig, limits: Limits):
    columns = {"person_id": ColumnInfo.model_validate({"role": "id", "kind": "string"}),
               "monthly_income": ColumnInfo.model_validate({"role": "measure", "kind": "float",
                                                           "bounds": [0, 200000]})}
    mock = mock_table("tax_income", columns, rows=50)
    r = ok(dry_run_on_mock(MEAN, "main", {"tax_income": mock}, "json", 1024, limits, config=config))
    assert r.on_mock and r.value()["rows"] == 50
    assert 0 <= r.value()["mean_income"] <= 200000
    leak = "def main(inputs):\n    import os\n    return os.listdir('/inputs')\n"
    assert ok(dry_run_on_mock(leak, "main", {"tax_income": mock}, "json", 1024, limits, config=config)).value() \
        == ["tax_income.parquet"]


def test_dry_run_failure_is_marked_mock(config: SandboxConfig, limits: Limits):
    f = failed(dry_run_on_mock("def main(inputs):\n    raise KeyError('x')\n", "main",
                               {"t": pa.table({"a": [1]})}, "json", 64, limits, config=config))
    assert f.on_mock and f.reason == "exception: KeyError"


def test_approved_hash_is_enforced(tax_income: Path, config: SandboxConfig, limits: Limits):
    h = code_hash(MEAN, "main", {"kind": "json", "max_bytes": 1024})
    r = ok(run_code(MEAN, "main", {"tax_income": tax_income}, "json", 1024, limits, config=config,
                    expected_code_hash=h))
    assert json.loads(r.output_bytes)["rows"] == 8
