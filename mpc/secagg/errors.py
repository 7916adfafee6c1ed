"""Secure-aggregation refusals, each an `MpcError` with a stable public code.

- `ProtocolError` (``INVALID_REQUEST``): a malformed, replayed, out-of-stage, wrong-round or
  unknown-participant message, or a peer view that breaks the protocol's preconditions.
- `CiphertextInvalid` (``CIPHERTEXT_INVALID``): an encrypted share that does not authenticate.
- `RoundAborted` (``INVALID_REQUEST``): too few participants survived a stage; the round ends and nothing
  more is revealed.
"""

from __future__ import annotations

from mpc.errors import MpcError

INVALID_REQUEST = "INVALID_REQUEST"
CIPHERTEXT_INVALID = "CIPHERTEXT_INVALID"


class ProtocolError(MpcError):
    """A message or peer view that violates the protocol."""

    def __init__(self, message: str) -> None:
        super().__init__(INVALID_REQUEST, message)


class CiphertextInvalid(MpcError):
    """An encrypted share failed authentication (tampered, misdirected or replayed from another context)."""

    def __init__(self, message: str = "encrypted share does not authenticate") -> None:
        super().__init__(CIPHERTEXT_INVALID, message)


class RoundAborted(MpcError):
    """The round ended without a result because fewer than the threshold survived."""

    def __init__(self, message: str) -> None:
        super().__init__(INVALID_REQUEST, message)
