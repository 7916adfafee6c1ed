"""mpc: homomorphic encryption (TenSEAL) and secure aggregation. A pure library: imports nothing of ours.

Under construction; see the verification/HE and secure-aggregation issues.
"""

__all__: list[str] = []
