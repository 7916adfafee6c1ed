"""Synthetic public data: a small city's tax/social-insurance family and its enterprise registry.

Nothing here is real. Rows are drawn from a seeded generator with plausible correlations (income rises with
age until the mid-fifties and depends on industry; tax follows a progressive schedule; default risk falls
with income and insurance months), written with pyarrow in chunks so 10M rows stay within memory.

This module uses NumPy's seeded generator for *synthetic data*, never for noise, masks or keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DISTRICTS = ("Liangxi", "Xinwu", "Binhu", "Huishan", "Xishan", "Jiangyin", "Yixing")
INDUSTRIES = (
    "manufacturing",
    "finance",
    "retail",
    "it",
    "construction",
    "logistics",
    "education",
    "healthcare",
    "hospitality",
    "agriculture",
)
GENDERS = ("F", "M")
_INDUSTRY_INCOME = np.array([9000, 16000, 6500, 18000, 8500, 7500, 9500, 11000, 6000, 5000], dtype=np.float64)
_DISTRICT_FACTOR = np.array([1.15, 1.2, 1.1, 0.95, 1.0, 0.9, 0.85])
_DISTRICT_P = np.array([0.14, 0.16, 0.17, 0.14, 0.13, 0.14, 0.12])
_INDUSTRY_P = np.array([0.24, 0.06, 0.14, 0.07, 0.1, 0.09, 0.08, 0.07, 0.09, 0.06])
INCOME_MAX = 200_000
_DISTRICT_CODES = (320202, 320214, 320211, 320206, 320205, 320281, 320282)


def tax_income_spec(source: str) -> dict[str, Any]:
    """The owner's declaration for ``tax_income`` (schema of tests/data/attacks/README.md)."""
    return {
        "name": "tax_income",
        "source": source,
        "description": "Individual income tax and social insurance, one row per person (synthetic).",
        # general (一般): the synthetic city's agreements use automatic approval and budgets above the important
        # grade's ceiling (policies.grades); the grade controls are shown on datasets declared important
        "grade": "general",
        "personal": True,
        "sensitive": False,
        "columns": {
            "person_id": {"role": "id"},
            "id_number": {"role": "never_output"},
            "district": {"role": "dimension", "domain": list(DISTRICTS)},
            "age": {"role": "dimension", "bounds": [16, 100]},
            "gender": {"role": "dimension", "domain": list(GENDERS)},
            "industry": {"role": "dimension", "domain": list(INDUSTRIES)},
            "employer_id": {"role": "join_key"},
            "monthly_income": {"role": "measure", "bounds": [0, INCOME_MAX]},
            "tax_paid": {"role": "measure", "bounds": [0, 60_000]},
            "social_insurance_months": {"role": "measure", "bounds": [0, 480]},
            "has_default": {"role": "dimension", "domain": [0, 1]},
        },
        "max_rows_per_unit": 1,
    }


def enterprise_registry_spec(source: str) -> dict[str, Any]:
    """The owner's declaration for ``enterprise_registry`` (one row per enterprise)."""
    return {
        "name": "enterprise_registry",
        "source": source,
        "description": "Enterprise registry keyed by employer_id (synthetic).",
        "grade": "general",
        "personal": False,
        "sensitive": False,
        "columns": {
            "employer_id": {"role": "id"},
            "credit_code": {"role": "never_output"},
            "district": {"role": "dimension", "domain": list(DISTRICTS)},
            "industry": {"role": "dimension", "domain": list(INDUSTRIES)},
            "founded_year": {"role": "dimension", "bounds": [1950, 2026]},
            "employees": {"role": "measure", "bounds": [0, 50_000]},
            "registered_capital": {"role": "measure", "bounds": [0, 1_000_000_000]},
            "annual_revenue": {"role": "measure", "bounds": [0, 10_000_000_000]},
            "tax_arrears": {"role": "dimension", "domain": [0, 1]},
        },
        "max_rows_per_unit": 1,
    }


def _progressive_tax(monthly_income: np.ndarray) -> np.ndarray:
    """China's monthly IIT brackets over income above the 5000 yuan threshold (simplified)."""
    taxable = np.maximum(monthly_income - 5000.0, 0.0)
    brackets = [(3000, 0.03, 0), (12000, 0.10, 210), (25000, 0.20, 1410), (35000, 0.25, 2660),
                (55000, 0.30, 4410), (80000, 0.35, 7160), (np.inf, 0.45, 15160)]
    tax = np.zeros_like(taxable)
    assigned = np.zeros(taxable.shape, dtype=bool)
    for upper, rate, deduction in brackets:
        sel = (~assigned) & (taxable <= upper)
        tax[sel] = taxable[sel] * rate - deduction
        assigned |= sel
    return np.round(np.maximum(tax, 0.0), 2)


def _tax_income_chunk(rng: np.random.Generator, start: int, n: int, n_employers: int) -> pa.RecordBatch:
    district = rng.choice(len(DISTRICTS), size=n, p=_DISTRICT_P)
    industry = rng.choice(len(INDUSTRIES), size=n, p=_INDUSTRY_P)
    gender = rng.integers(0, 2, size=n)
    age = np.clip(np.round(rng.normal(41, 12, size=n)), 18, 75).astype(np.int64)
    age_curve = 0.55 + 0.45 * np.exp(-(((age - 52) / 18.0) ** 2))
    income = (
        _INDUSTRY_INCOME[industry] * _DISTRICT_FACTOR[district] * age_curve
        * (1.0 + 0.06 * gender) * rng.lognormal(0.0, 0.45, size=n)
    )
    income = np.round(np.clip(income, 0, INCOME_MAX), 2)
    work_years = np.clip(age - 18 - rng.integers(0, 6, size=n), 0, None)
    si_months = np.clip(np.round(work_years * 12 * rng.beta(5, 2, size=n)), 0, 480).astype(np.int64)
    logit = -1.2 - 0.00018 * (income - 8000) - 0.012 * (si_months - 120) + 0.4 * (age < 25)
    has_default = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    ids = np.arange(start + 1, start + n + 1)
    birth_year = 2026 - age
    month = rng.integers(1, 13, size=n)
    day = rng.integers(1, 29, size=n)
    seqno = rng.integers(0, 1000, size=n)
    region = np.array(_DISTRICT_CODES)[district]
    id_number = [
        f"{r}{y:04d}{m:02d}{d:02d}{s:03d}{c}"
        for r, y, m, d, s, c in zip(region, birth_year, month, day, seqno, rng.integers(0, 10, size=n),
                                    strict=True)
    ]
    employer = rng.integers(1, n_employers + 1, size=n)
    return pa.RecordBatch.from_pydict(
        {
            "person_id": [f"P{i:07d}" for i in ids],
            "id_number": id_number,
            "district": pa.DictionaryArray.from_arrays(district.astype(np.int32), list(DISTRICTS)).cast(
                pa.string()),
            "age": age,
            "gender": pa.array(np.array(GENDERS)[gender]),
            "industry": pa.array(np.array(INDUSTRIES)[industry]),
            "employer_id": [f"E{e:06d}" for e in employer],
            "monthly_income": income,
            "tax_paid": _progressive_tax(income),
            "social_insurance_months": si_months,
            "has_default": has_default,
        }
    )


def _registry_chunk(rng: np.random.Generator, start: int, n: int) -> pa.RecordBatch:
    district = rng.choice(len(DISTRICTS), size=n, p=_DISTRICT_P)
    industry = rng.choice(len(INDUSTRIES), size=n, p=_INDUSTRY_P)
    employees = np.clip(np.round(rng.lognormal(2.5, 1.4, size=n)), 1, 50_000).astype(np.int64)
    revenue = np.round(np.clip(employees * rng.lognormal(12.3, 0.7, size=n), 0, 1e10), 2)
    capital = np.round(np.clip(revenue * rng.uniform(0.05, 0.8, size=n), 0, 1e9), 2)
    founded = np.clip(2026 - np.round(rng.exponential(11, size=n)), 1950, 2026).astype(np.int64)
    arrears = (rng.random(n) < 0.04 + 0.1 * (employees < 5)).astype(np.int64)
    ids = np.arange(start + 1, start + n + 1)
    return pa.RecordBatch.from_pydict(
        {
            "employer_id": [f"E{i:06d}" for i in ids],
            "credit_code": [f"91320200{int(x):010d}" for x in rng.integers(0, 10**10, size=n)],
            "district": pa.array(np.array(DISTRICTS)[district]),
            "industry": pa.array(np.array(INDUSTRIES)[industry]),
            "founded_year": founded,
            "employees": employees,
            "registered_capital": capital,
            "annual_revenue": revenue,
            "tax_arrears": arrears,
        }
    )


@dataclass(frozen=True)
class Generated:
    tax_income: Path
    enterprise_registry: Path
    tax_income_spec: Path
    enterprise_registry_spec: Path
    rows: int
    enterprises: int


def _write(path: Path, total: int, chunk: int, make: Callable[[int, int], pa.RecordBatch],
           progress: Callable[[int], None] | None) -> None:
    tmp = path.with_suffix(".parquet.tmp")
    writer: pq.ParquetWriter | None = None
    try:
        done = 0
        while done < total:
            n = min(chunk, total - done)
            batch = make(done, n)
            if writer is None:
                writer = pq.ParquetWriter(tmp, batch.schema, compression="zstd")
            writer.write_batch(batch, row_group_size=min(chunk, 1_000_000))
            done += n
            if progress:
                progress(n)
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(path)


def generate(out: Path, rows: int = 100_000, seed: int = 20261122, chunk_rows: int = 500_000,
             progress: Callable[[int], None] | None = None) -> Generated:
    """Write ``tax_income.parquet`` and ``enterprise_registry.parquet`` (+ their ``.spec.json``) to ``out``."""
    if rows < 1:
        raise ValueError("rows must be positive")
    out.mkdir(parents=True, exist_ok=True)
    n_employers = max(10, rows // 20)
    rng = np.random.default_rng(seed)
    tax_path = out / "tax_income.parquet"
    reg_path = out / "enterprise_registry.parquet"
    _write(tax_path, rows, chunk_rows, lambda s, n: _tax_income_chunk(rng, s, n, n_employers), progress)
    _write(reg_path, n_employers, chunk_rows, lambda s, n: _registry_chunk(rng, s, n), progress)
    tax_spec = out / "tax_income.spec.json"
    reg_spec = out / "enterprise_registry.spec.json"
    tax_spec.write_text(json.dumps(tax_income_spec(str(tax_path.resolve())), indent=2))
    reg_spec.write_text(json.dumps(enterprise_registry_spec(str(reg_path.resolve())), indent=2))
    return Generated(tax_path, reg_path, tax_spec, reg_spec, rows, n_employers)
