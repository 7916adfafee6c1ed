"""The service's sealer: files at rest under the home's suite, with data keys from the home's keyring.

`sealer_of(ctx)` is what registration, the query engines and the job environment use to seal and open the
registered Parquet copies (`catalog.sealed`; docs/crypto.md "Encryption at rest"). It holds no key itself: each
file's data key is unwrapped from the keyring (`catalog.keyring.Keyring`, master key kept outside the home) when
the file is opened.
"""

from __future__ import annotations

from catalog.sealed import Sealer
from gateway.context import AppContext

__all__ = ["sealer_of"]


def sealer_of(ctx: AppContext) -> Sealer:
    """The sealer of ``ctx``'s home: its suite, its keyring."""
    return Sealer(ctx.settings.suite, ctx.keyring)
