"""Veilbox user surface: the typed HTTP client (`veilbox.client`), the CLI (`veilbox.cli`) and the demo.

This package sits above the gateway: it talks to a running service over HTTP and never reaches into the
metadata store, except for the local bootstrap commands (`init`, `serve`, `audit verify --home`).
"""

from veilbox.client import ApiError, Client

__all__ = ["ApiError", "Client"]
