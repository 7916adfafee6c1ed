"""`veilbox demo`, the PySyft chapter (only with the ``veilbox[syft]`` extra): a data scientist at the risk lab
works with syft-rds's own client — sees the mock, submits a job — and gets the owner-released result back
through syft, while Veilbox enforces the agreement, the review bound to the code hash, the sandbox and the audit.

Without the extra the chapter says so and returns; the core install never imports syft.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

console = Console()

__all__ = ["chapter_syft", "syft_available"]

ANA = "ana@risk-lab.example"
DATASITE = "datasite@city-tax-bureau.example"
JOB = """
import pyarrow.compute as pc

DATASET = "tax_income"

def main(inputs):
    t = inputs["tax_income"]
    return {"mean_monthly_income": round(pc.mean(t["monthly_income"]).as_py(), -3)}
"""


def syft_available() -> bool:
    """Whether the extra is installed (looked up, not imported)."""
    try:
        return importlib.util.find_spec("syft_rds") is not None
    except (ImportError, ValueError):  # ValueError: the name is blocked in sys.modules
        return False


def _token(client: Any) -> str:
    return str(client._http.headers["Authorization"].split()[1])


def chapter_syft(story: Any) -> None:
    if not syft_available():
        console.print("[dim]PySyft chapter skipped: install the extra with `pip install 'veilbox\\[syft]'`[/dim]")
        return
    from veilbox.syft_bridge.datasite import Identity, IdentityTable, VeilboxDatasite

    owner, operator = story.clients["owner"], story.clients["operator"]
    with (
        tempfile.TemporaryDirectory(prefix="veilbox-syft-") as tmp,
        VeilboxDatasite(
            url=owner.url,
            owner_token=_token(owner),
            email=DATASITE,
            spool=Path(tmp) / "spool",
            identities=IdentityTable([Identity(ANA, "risk-lab", _token(operator))]),
            state_dir=Path(tmp) / "bridge",
        ) as site,
    ):
        _loop(story, site, Path(tmp))


def _loop(story: Any, site: Any, tmp: Path) -> None:
    """Ana's side with syft-rds's own client; the owner's decisions in Veilbox; the bridge pumping between."""
    from veilbox.syft_bridge.login import login_ds

    owner, operator = story.clients["owner"], story.clients["operator"]
    ds = login_ds(ANA, tmp / "spool", tmp / "ana")
    ds.add_peer(DATASITE)
    site.pump()
    site.pump()
    names = [d.name for d in ds.datasets.get_all()]
    job_file = tmp / "mean_income.py"
    job_file.write_text(JOB)
    ds.submit_python_job(DATASITE, str(job_file), job_name="mean-income", force_submission=True)
    site.pump()
    job_id = site.veilbox_job_id(ANA, "mean-income")
    if job_id is None:
        story.facts.append("PySyft: the job did not reach Veilbox")
        return
    vj = operator.job(job_id)
    if vj["state"] == "pending_approval":
        owner.approve_job(vj["id"], vj["spec_hash"])
    done = operator.wait_job(vj["id"], timeout=300)
    if done["state"] == "succeeded":
        owner.release_job(vj["id"])
    site.pump()
    job = next(j for j in ds.jobs if j.name == "mean-income")
    outputs = [p.read_text() for p in job.output_paths if p.name == "result.json"] if job.status == "done" else []
    console.print(f"[dim]syft-rds sees datasets {names}; job {job.name!r} is {job.status}[/dim]")
    story.facts.append(
        f"PySyft: a syft-rds client saw the mock of {', '.join(names)}, submitted a job that "
        f"became Veilbox code job {vj['id'][:8]}… under the operator's agreement, and got the "
        f"owner-released result back through syft ({'done' if outputs else job.status})"
    )
