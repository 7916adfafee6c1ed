"""Private set intersection and anonymous lookup (匿踪查询) over ECDH on P-256.

`group`: x-only P-256 scalar multiplication (OpenSSL ECDH via `cryptography`), hash to curve, key derivation.
`protocol`: the service and bank sides of psi_size (DP-released cardinality computed by the service over
doubly-blinded elements), psi_members (the bank learns which of its ids are present) and the anonymous
bucketed lookup with AES-GCM labels. docs/mechanisms/psi.md states what each party learns.
A pure library: imports nothing of ours outside `mpc`.
"""

from mpc.psi.group import InvalidElement, join, split
from mpc.psi.protocol import (
    ANON,
    LABEL_BYTES,
    MEMBERS,
    SIZE,
    AnonAnswer,
    AnonClient,
    MembersClient,
    SizeClient,
    anon_answer,
    bucket_hashes,
    bucket_of,
    choose_bits,
    evaluate,
    evaluate_ids,
    members_filter,
    padded_size,
    server_set,
    size_count,
    size_table,
)

__all__ = ["ANON", "LABEL_BYTES", "MEMBERS", "SIZE", "AnonAnswer", "AnonClient", "InvalidElement", "MembersClient",
           "SizeClient", "anon_answer", "bucket_hashes", "bucket_of", "choose_bits", "evaluate", "evaluate_ids",
           "join", "members_filter", "padded_size", "server_set", "size_count", "size_table", "split"]
