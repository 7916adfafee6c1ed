import numpy as np
import pyarrow.parquet as pq

from catalog.datagen import generate


def test_schema_and_correlations(city_data):
    t = pq.read_table(city_data.tax_income)
    assert t.column_names == ["person_id", "id_number", "district", "age", "gender", "industry", "employer_id",
                              "monthly_income", "tax_paid", "social_insurance_months", "has_default"]
    inc = np.array(t["monthly_income"])
    age = np.array(t["age"])
    dflt = np.array(t["has_default"])
    fin = np.array(t["industry"]) == "finance"
    assert inc[fin].mean() > inc[~fin].mean()  # industry matters
    assert inc[(age > 40) & (age < 60)].mean() > inc[age < 25].mean()  # income grows with age
    assert np.corrcoef(inc, dflt)[0, 1] < 0  # richer people default less
    assert len(set(t["person_id"].to_pylist())) == t.num_rows
    reg = pq.read_table(city_data.enterprise_registry)
    assert set(t["employer_id"].to_pylist()) <= set(reg["employer_id"].to_pylist())


def test_seeded_and_chunked(tmp_path):
    a = generate(tmp_path / "a", rows=1000, seed=1, chunk_rows=300)
    b = generate(tmp_path / "b", rows=1000, seed=1, chunk_rows=300)
    assert pq.read_table(a.tax_income).equals(pq.read_table(b.tax_income))
    assert pq.ParquetFile(a.tax_income).metadata.num_row_groups == 4
