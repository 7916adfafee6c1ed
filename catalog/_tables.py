"""Metadata tables owned by the catalog. Migrations live with the gateway, which composes all packages."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Integer, MetaData, String, Table, Text

metadata = MetaData()

datasets = Table(
    "datasets",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("owner", String(64), nullable=False, index=True),
    Column("description", Text, nullable=False, default=""),
    Column("grade", String(16), nullable=False),
    Column("personal", Boolean, nullable=False),
    Column("sensitive", Boolean, nullable=False),
    Column("columns_json", Text, nullable=False),
    Column("max_rows_per_unit", Integer, nullable=False),
    Column("fingerprint", String(80), nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("path", Text, nullable=False),
    Column("ingest_report_json", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
