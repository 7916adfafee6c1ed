"""Sandbox: vetted DP SQL on a locked DuckDB, DP-SGD training, the isolated custom-code runner, the release gate.

Under construction; see the private-SQL and model-jobs issues. Imports catalog and policies only.
"""

__all__: list[str] = []
