"""The Veilbox datasite on the syft spool: identity table, published mocks, syft-rds jobs as Veilbox ``code`` jobs.

:class:`VeilboxDatasite` runs syft-rds's own owner client (``login_do`` over the spool) on behalf of one Veilbox
data owner and, on every :meth:`~VeilboxDatasite.pump`:

1. **Identities.** A syft peer request is approved only when its email is in the administrator's
   :class:`IdentityTable`, which maps each email to one Veilbox principal (and that principal's API token, which
   the bridge checks at start: ``GET /v1/me`` must name the mapped principal). Any other email is rejected as a
   peer and recorded in the bridge's refusal log (``refusals.jsonl`` in the state folder) and, when the bridge
   runs in the gateway's process, in the gateway's audit chain (``audit=gateway_audit(ctx)``,
   :func:`veilbox.syft_bridge.audit.gateway_audit`); it never reaches the gateway's API.
2. **Datasets.** For every active agreement of a mapped principal that allows ``code`` jobs, each dataset it
   covers is published to that email alone as a syft-rds dataset whose mock part is Veilbox's declared mock
   (``GET /v1/datasets/{name}/mock``: rows drawn from the declaration, never from raw data) restricted to the
   columns the agreement grants and code may read (``never_output`` dropped). The private part is a note: the
   raw data never leaves Veilbox.
3. **Jobs.** A syft-rds job from a mapped email becomes ``POST /v1/jobs`` kind ``code`` under that principal's
   agreement, with the principal's own token: the same review bound to the spec hash, the same bubblewrap run,
   the same owner release. Its entry file defines ``main(inputs)`` (Veilbox's ``code`` contract) and names its
   dataset with a top-level ``DATASET = "<name>"`` (optional when one dataset is published to that email).
   Before submitting, the bridge refuses (``POLICY_DENIED``, reason ``column.never_output``) a source that names
   a ``never_output`` column of the dataset as a string: Veilbox never hands such columns to code anyway, the
   early refusal saves the data scientist a charged run that could only fail.
4. **States.** :func:`syft_status` maps Veilbox's job states onto syft-rds's; released output becomes the syft
   job's result (``outputs/result.json``, shared with the submitter); a refusal at any step (``ApiError`` from the
   gateway, or the bridge's own) rejects the syft job with ``"<CODE>: <message>"`` as the review reason.

The owner's decisions stay in Veilbox (console, CLI or API): the bridge never approves or releases.
"""

from __future__ import annotations

import ast
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veilbox.client import ApiError, Client
from veilbox.syft_bridge.login import login_do

#: Veilbox job state → syft-rds job status. syft's ``approved``/``running``/``failed`` are not used: the syft
#: job stays ``pending`` while Veilbox decides and runs it, and every negative end is a rejection with its code.
SYFT_STATUS: dict[str, str] = {
    "pending_approval": "pending",
    "approved": "pending",
    "running": "pending",
    "succeeded": "pending",  # run done, output waiting for the owner's release
    "released": "done",
    "rejected": "rejected",
    "failed": "rejected",
    "cancelled": "rejected",
}


def syft_status(veilbox_state: str) -> str:
    """The syft-rds status a data scientist sees for a Veilbox job state."""
    return SYFT_STATUS[veilbox_state]


def veilbox_states(status: str) -> tuple[str, ...]:
    """The Veilbox job states a syft-rds status can stand for (the inverse of :func:`syft_status`)."""
    return tuple(state for state, syft in SYFT_STATUS.items() if syft == status)


class BridgeRefusal(Exception):
    """A refusal the bridge decides itself, in Veilbox's error vocabulary (``catalog.errors``)."""

    def __init__(self, code: str, message: str, reason: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.reason = code, message, reason


@dataclass(frozen=True)
class Identity:
    email: str
    principal: str
    token: str


class IdentityTable:
    """The administrator's explicit map from syft identities (emails) to Veilbox principals.

    File form (JSON)::

        {"identities": [{"email": "ana@risk-lab.example", "principal": "risk-lab",
                         "token_file": "/etc/veilbox/syft/risk-lab.token"}]}

    ``token_file`` (or ``token_env``, the name of an environment variable) holds the principal's API token. Emails
    compare case-insensitively; one email maps to exactly one principal.
    """

    def __init__(self, identities: Iterable[Identity]) -> None:
        self._by_email: dict[str, Identity] = {}
        for ident in identities:
            key = ident.email.strip().lower()
            if key in self._by_email:
                raise ValueError(f"{ident.email} is mapped twice")
            self._by_email[key] = ident

    @classmethod
    def load(cls, path: str | Path) -> IdentityTable:
        doc = json.loads(Path(path).read_text())
        out = []
        for row in doc.get("identities", []):
            if "token_file" in row:
                token = Path(row["token_file"]).read_text().strip()
            elif "token_env" in row:
                token = os.environ[row["token_env"]]
            else:
                raise ValueError(f"{row.get('email')}: token_file or token_env is required")
            out.append(Identity(row["email"], row["principal"], token))
        return cls(out)

    def get(self, email: str) -> Identity | None:
        return self._by_email.get(email.strip().lower())

    def __iter__(self) -> Any:
        return iter(self._by_email.values())


def never_output_names(source: str, columns: Iterable[str]) -> list[str]:
    """``never_output`` column names the source spells as a string constant (``t["id_number"]`` and the like)."""
    wanted = set(columns)
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return sorted(wanted & found)


def declared_dataset(source: str) -> str | None:
    """The value of a top-level ``DATASET = "<name>"`` in the job's entry file, if any."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "DATASET"
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    return None


class VeilboxDatasite:
    """One Veilbox data owner as a syft-rds datasite on the spool (see the module docstring)."""

    def __init__(
        self,
        *,
        url: str,
        owner_token: str,
        email: str,
        spool: str | Path,
        identities: IdentityTable,
        state_dir: str | Path,
        mock_rows: int = 100,
        client_factory: Callable[[str, str], Client] = Client,
        audit: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.url, self.email, self.identities = url, email, identities
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._client_factory = client_factory
        self.owner = client_factory(url, owner_token)
        self.mock_rows = mock_rows
        self._audit = audit
        self._grantees: dict[str, Client] = {}
        for ident in identities:
            client = client_factory(url, ident.token)
            me = client.me()
            if me["name"] != ident.principal:
                raise ValueError(f"the token mapped to {ident.email} belongs to {me['name']}, not {ident.principal}")
            self._grantees[ident.email.lower()] = client
        self.rds = login_do(email, spool, self.state_dir / "syftbox")
        self._lock = threading.Lock()
        self._jobs_file = self.state_dir / "jobs.json"
        self._jobs: dict[str, dict[str, Any]] = (
            json.loads(self._jobs_file.read_text()) if self._jobs_file.exists() else {}
        )
        # what was published, kept across restarts: email → datasets, (dataset, columns) → syft dataset name
        self._published_file = self.state_dir / "published.json"
        saved = json.loads(self._published_file.read_text()) if self._published_file.exists() else {}
        self._published: dict[str, set[str]] = {e: set(d) for e, d in saved.get("published", {}).items()}
        self._names: dict[tuple[str, tuple[str, ...]], str] = {
            (row["dataset"], tuple(row["columns"])): row["name"] for row in saved.get("names", [])
        }

    # ----------------------------------------------------------------- records
    def _save_jobs(self) -> None:
        tmp = self._jobs_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._jobs, indent=1, sort_keys=True))
        os.replace(tmp, self._jobs_file)

    def _refuse(self, kind: str, email: str, **detail: Any) -> None:
        entry = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "kind": kind, "email": email, **detail}
        with (self.state_dir / "refusals.jsonl").open("a") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
        if self._audit is not None:
            self._audit(entry)

    def close(self) -> None:
        """Close the HTTP clients (the owner's and each mapped principal's)."""
        self.owner.close()
        for client in self._grantees.values():
            client.close()

    def __enter__(self) -> VeilboxDatasite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def veilbox_job_id(self, email: str, job_name: str) -> str | None:
        """The Veilbox job a syft-rds job became (``None`` if refused or not seen yet)."""
        return self._jobs.get(f"{email}/{job_name}", {}).get("veilbox_job")

    def refusals(self) -> list[dict[str, Any]]:
        path = self.state_dir / "refusals.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    # ------------------------------------------------------------------- pump
    def pump(self) -> None:
        """One round: peers, datasets, new jobs, job states (then one sync so the data scientists see it)."""
        with self._lock:
            self.rds.sync()
            self._peers()
            self._publish()
            self._submit_new_jobs()
            self._follow_jobs()
            self.rds.sync()

    def serve(self, interval: float = 5.0, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        while not stop.is_set():
            self.pump()
            stop.wait(interval)

    def _peers(self) -> None:
        for email in [p.email for p in self.rds.peer_manager.requested_by_peer_peers]:
            if self.identities.get(email) is None:
                self.rds.reject_peer_request(email)
                self._refuse("peer.unmapped", email, code="NOT_FOUND_OR_FORBIDDEN", reason="identity.unmapped")
            else:
                self.rds.approve_peer_request(email, verbose=False)

    # --------------------------------------------------------------- datasets
    def _code_agreements(self, ident: Identity) -> list[dict[str, Any]]:
        grantee = self._grantees[ident.email.lower()]
        return [ag for ag in grantee.agreements(state="active") if "code" in ag.get("job_kinds", [])]

    def _readable_columns(self, dataset: str, granted: Iterable[str]) -> list[str]:
        info = self.owner.dataset(dataset)
        roles = {c["name"]: c.get("role") for c in _columns(info)}
        return [c for c in roles if c in set(granted) and roles[c] not in ("never_output", "join_key")]

    def _publish(self) -> None:
        approved = {p.email.lower() for p in self.rds.peer_manager.approved_peers}
        for ident in self.identities:
            if ident.email.lower() not in approved:
                continue
            done = self._published.setdefault(ident.email.lower(), set())
            for ag in self._code_agreements(ident):
                for dataset in ag.get("datasets", []):
                    if dataset in done:
                        continue
                    self._publish_one(ident, dataset, self._readable_columns(dataset, ag["columns"].get(dataset, [])))
                    done.add(dataset)
                    self._save_published()

    def _save_published(self) -> None:
        doc = {
            "published": {e: sorted(d) for e, d in self._published.items()},
            "names": [{"dataset": d, "columns": list(c), "name": n} for (d, c), n in sorted(self._names.items())],
        }
        tmp = self._published_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
        os.replace(tmp, self._published_file)

    def _publish_one(self, ident: Identity, dataset: str, columns: list[str]) -> None:
        mock = self.owner.mock(dataset, rows=self.mock_rows)
        keep = [i for i, c in enumerate(mock["columns"]) if c in columns]
        with tempfile.TemporaryDirectory() as tmp:
            mock_dir, private_dir = Path(tmp) / "mock", Path(tmp) / "private"
            mock_dir.mkdir()
            private_dir.mkdir()
            lines = [",".join(_csv(mock["columns"][i]) for i in keep)]
            lines += [",".join(_csv(row[i]) for i in keep) for row in mock["rows"]]
            (mock_dir / f"{dataset}.csv").write_text("\n".join(lines) + "\n")
            (private_dir / "README.txt").write_text(
                "The private part of this dataset stays inside Veilbox; jobs run there under your agreement.\n"
            )
            # One syft dataset per (dataset, readable columns): grantees with the same columns share it.
            name = self._names.get((dataset, tuple(columns)))
            if name is not None:
                self.rds.share_dataset(name, users=[ident.email], sync=False)
                return
            taken = set(self._names.values())
            name = dataset if dataset not in taken else f"{dataset}-{ident.principal}"
            self._names[(dataset, tuple(columns))] = name
            self.rds.create_dataset(
                name=name,
                mock_path=mock_dir,
                private_path=private_dir,
                summary=f"Veilbox dataset {dataset}: declared mock rows, never raw data",
                users=[ident.email],
                sync=False,
            )

    # ------------------------------------------------------------------- jobs
    def _submit_new_jobs(self) -> None:
        for job in self.rds.job_client.jobs:
            key = f"{job.submitted_by}/{job.name}"
            if key in self._jobs or job.status != "pending":
                continue
            ident = self.identities.get(job.submitted_by)
            if ident is None:  # a peer approved earlier and removed from the table since
                self._refuse("job.unmapped", job.submitted_by, job=job.name, code="NOT_FOUND_OR_FORBIDDEN")
                job.reject("NOT_FOUND_OR_FORBIDDEN: this identity is not mapped to a Veilbox principal")
                self._jobs[key] = {"state": "refused", "code": "NOT_FOUND_OR_FORBIDDEN"}
                continue
            try:
                veilbox_job = self._submit(ident, job.code)
            except (ApiError, BridgeRefusal) as e:
                code, message = e.code, e.message
                self._refuse(
                    "job.refused",
                    ident.email,
                    job=job.name,
                    code=code,
                    reason=getattr(e, "reason", None) or _first_reason(e),
                )
                job.reject(f"{code}: {message}")
                self._jobs[key] = {"state": "refused", "code": code}
                continue
            self._jobs[key] = {"veilbox_job": veilbox_job["id"], "state": veilbox_job["state"], "email": ident.email}
        self._save_jobs()

    def _submit(self, ident: Identity, source: str) -> dict[str, Any]:
        grantee = self._grantees[ident.email.lower()]
        published = sorted(self._published.get(ident.email.lower(), set()))
        dataset = declared_dataset(source) or (published[0] if len(published) == 1 else None)
        if dataset is None:
            raise BridgeRefusal(
                "INVALID_REQUEST", 'name the dataset with DATASET = "<name>" in the job file', "job.dataset_missing"
            )
        agreements = [ag for ag in self._code_agreements(ident) if dataset in ag.get("datasets", [])]
        if not agreements:
            raise BridgeRefusal(
                "POLICY_DENIED", f"no active agreement of yours allows code jobs on {dataset}", "agreement.not_covering"
            )
        info = self.owner.dataset(dataset)
        hidden = never_output_names(source, [c["name"] for c in _columns(info) if c.get("role") == "never_output"])
        if hidden:
            raise BridgeRefusal(
                "POLICY_DENIED", f"the job reads never_output columns: {', '.join(hidden)}", "column.never_output"
            )
        spec = {
            "dataset": dataset,
            "source": source,
            "entrypoint": "main",
            "outputs": {"kind": "json", "max_bytes": 65536},
        }
        return grantee.submit_job(agreements[0]["id"], "code", spec)

    def _follow_jobs(self) -> None:
        by_key = {f"{j.submitted_by}/{j.name}": j for j in self.rds.job_client.jobs}
        for key, rec in self._jobs.items():
            job = by_key.get(key)
            if job is None or "veilbox_job" not in rec or job.status != "pending":
                continue
            grantee = self._grantees.get(rec["email"].lower())
            if grantee is None:
                continue
            vj = grantee.job(rec["veilbox_job"])
            rec["state"] = vj["state"]
            status = syft_status(vj["state"])
            if status == "done":
                result = grantee.job_result(rec["veilbox_job"])
                with tempfile.TemporaryDirectory() as tmp:
                    out = Path(tmp) / "result.json"
                    out.write_text(json.dumps(result, indent=1, sort_keys=True, default=str))
                    job.accept_by_depositing_result(str(out))
                job.share_outputs([job.submitted_by])
            elif status == "rejected":
                # The gateway's own answer for this job's result names the code (e.g. ``INVALID_REQUEST``
                # with the job's reason); the syft job carries it.
                try:
                    grantee.job_result(rec["veilbox_job"])
                    code, message = "INVALID_REQUEST", f"job {vj['state']}"
                except ApiError as e:
                    code, message = e.code, e.message
                reason = vj.get("failure_reason") or vj.get("reason") or vj["state"]
                job.reject(f"{code}: {message} (Veilbox job {vj['state']}: {reason})")
        self._save_jobs()


def _columns(info: Mapping[str, Any]) -> list[dict[str, Any]]:
    cols = info.get("columns", [])
    if isinstance(cols, Mapping):
        return [{"name": k, **(v if isinstance(v, Mapping) else {})} for k, v in cols.items()]
    return [dict(c) for c in cols if isinstance(c, Mapping)]


def _first_reason(e: Exception) -> str | None:
    for d in getattr(e, "details", None) or []:
        if isinstance(d, Mapping) and "reason" in d:
            return str(d["reason"])
    return None


def _csv(value: Any) -> str:
    text = "" if value is None else str(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text
