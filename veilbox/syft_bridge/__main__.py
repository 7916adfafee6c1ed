"""Run the Veilbox datasite on a syft spool: ``python -m veilbox.syft_bridge --url … --owner-token-file … --email …
--spool … --identities … --state-dir …`` (see docs/pysyft.md). Runs in its own process, so refusals go to
``<state-dir>/refusals.jsonl`` (the gateway's audit chain takes them only from a bridge inside its process)."""

from __future__ import annotations

import argparse
from pathlib import Path

from veilbox.syft_bridge.datasite import IdentityTable, VeilboxDatasite


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m veilbox.syft_bridge", description=__doc__)
    p.add_argument("--url", required=True, help="the gateway, e.g. http://127.0.0.1:8000")
    p.add_argument("--owner-token-file", required=True, type=Path, help="the data owner's API token")
    p.add_argument("--email", required=True, help="the datasite's syft identity")
    p.add_argument("--spool", required=True, type=Path, help="the spool folder shared with the data scientists")
    p.add_argument("--identities", required=True, type=Path, help="the administrator's identity table (JSON)")
    p.add_argument("--state-dir", required=True, type=Path, help="the bridge's own state (syftbox, job map, log)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between rounds")
    p.add_argument("--once", action="store_true", help="one round, then exit")
    a = p.parse_args(argv)
    site = VeilboxDatasite(
        url=a.url,
        owner_token=a.owner_token_file.read_text().strip(),
        email=a.email,
        spool=a.spool,
        identities=IdentityTable.load(a.identities),
        state_dir=a.state_dir,
    )
    with site:
        if a.once:
            site.pump()
        else:
            site.serve(a.interval)


if __name__ == "__main__":
    main()
