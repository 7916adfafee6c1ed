"""Secure-aggregation refusals, each an `mpc.errors.InvalidInput` or `mpc.errors.InvalidCiphertext`.

- `ProtocolError` (``INVALID_REQUEST``): a malformed, replayed, out-of-stage, wrong-round or
  unknown-participant message, or a peer view that breaks the protocol's preconditions.
- `CiphertextInvalid` (``CIPHERTEXT_INVALID``): an encrypted share that does not authenticate.
- `RoundAborted` (``INVALID_REQUEST``): too few participants survived a stage; the round ends and nothing
  more is revealed.
"""

from __future__ import annotations

from mpc.errors import InvalidCiphertext, InvalidInput


class ProtocolError(InvalidInput):
    """A message or peer view that violates the protocol."""


class CiphertextInvalid(InvalidCiphertext):
    """An encrypted share failed authentication (tampered, misdirected or replayed from another context)."""

    def __init__(self, message: str = "encrypted share does not authenticate") -> None:
        super().__init__(message)


class RoundAborted(InvalidInput):
    """The round ended without a result because fewer than the threshold survived."""
