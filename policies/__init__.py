"""Policies: agreements (授权运营协议), negative list, decisions, the privacy-budget ledger, jobs and quotas.

Under construction; see the agreements issue. Imports catalog only.
"""

__all__: list[str] = []
