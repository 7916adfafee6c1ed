"""The error root of the crypto library.

Every refusal carries a stable public ``code`` from the catalog in docs/api.md, "Errors" (for example
``INVALID_REQUEST`` or ``CIPHERTEXT_INVALID``); the gateway maps code → HTTP status and public message
once, at the boundary. ``message`` is written for the caller and never contains key material, shares or
plaintext values.
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
