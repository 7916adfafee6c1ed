"""The error root of the crypto library.

Every refusal is one of two types: `InvalidInput` (the request around the crypto material is wrong) or
`InvalidCiphertext` (the crypto material itself is not valid). The gateway maps these *types* to its public
codes and HTTP statuses once, at the boundary (`gateway.errors.MPC_ERRORS`); this library imports nothing of
ours. ``code`` repeats the public code for the library's own callers and tests. ``message`` is written for
the caller and never contains key material, shares or plaintext values.
"""

from __future__ import annotations


class MpcError(Exception):
    """A refusal or failure of a crypto protocol, with a stable public code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.message!r})"


class InvalidInput(MpcError):
    """The request around the crypto material is wrong: layout, counts, dimensions, bounds, repeats, or a
    protocol message that is malformed, replayed or out of place (``INVALID_REQUEST``)."""

    def __init__(self, message: str) -> None:
        super().__init__("INVALID_REQUEST", message)


class InvalidCiphertext(MpcError):
    """A ciphertext, public context, encrypted share or group element that is undecodable, malformed, insecure,
    does not match or does not authenticate (``CIPHERTEXT_INVALID``)."""

    def __init__(self, message: str) -> None:
        super().__init__("CIPHERTEXT_INVALID", message)
