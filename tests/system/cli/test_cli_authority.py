"""`veilbox agreement submit|activate` and `veilbox authority …` against a real gateway (in process, through Typer's
runner): refuse, file, suspend, order, close, disable and enable, named reviewers; a regulator's attempt fails with its
exit code."""

import datetime as dt
import json

from typer.testing import CliRunner

from gateway.services.agreements import set_filing
from veilbox.cli import app


def test_authority_commands(parties):
    svc = parties.service
    set_filing(svc.ctx.engine, True)
    runner = CliRunner()
    tokens = {"authority": svc.admin.create_principal("data-bureau", "authority")["token"],
              "owner": parties.owner._http.headers["Authorization"].split()[1],
              "regulator": parties.regulator._http.headers["Authorization"].split()[1]}

    def run(who, *args, code=0):
        r = runner.invoke(app, ["--url", svc.url, "--token", tokens[who], *args, "--json"])
        assert r.exit_code == code, r.output
        return json.loads(r.output) if code == 0 else None

    ag = parties.agreement()
    aid, h = ag["id"], ag["document_hash"]
    assert run("owner", "agreement", "submit", aid)["state"] == "under_review"
    assert run("authority", "authority", "refuse", aid, "--document-hash", h, "--reason", "no purpose")["state"] \
        == "returned"
    run("owner", "agreement", "submit", aid)
    filed = run("authority", "authority", "file", aid, "--document-hash", h)
    assert filed["state"] == "filed" and filed["filing_number"].startswith("BA-")
    assert [s["verdict"] for s in run("regulator", "authority", "reviews", aid)] == ["refuse", "approve"]
    assert run("owner", "agreement", "activate", aid)["state"] == "active"
    run("regulator", "authority", "suspend", aid, "--reason", "x", code=1)  # an API refusal: exit code 1
    assert run("authority", "authority", "suspend", aid, "--reason", "inspection")["suspended_by"] == "authority"
    deadline = (dt.datetime.now(dt.UTC) + dt.timedelta(days=10)).isoformat()
    order = run("authority", "authority", "order", aid, "--text", "publish the notice", "--deadline", deadline)
    assert [o["id"] for o in run("regulator", "authority", "orders", aid)] == [order["id"]]
    assert run("authority", "authority", "close-order", order["id"], "--note", "done")["open"] is False
    assert run("authority", "authority", "resume", aid, "--reason", "rectified")["state"] == "active"
    assert run("authority", "authority", "disable", "risk-lab")["disabled"] is True
    assert run("authority", "authority", "enable", "risk-lab")["disabled"] is False

    # named reviewers (专家委员会): created by the admin, named by the authority; filing waits for their approval of the
    # version under review, and a reviewer's refusal returns the agreement to its owner
    tokens["admin"] = svc.admin._http.headers["Authorization"].split()[1]
    experts = run("admin", "principal", "add", "expert-panel", "--role", "reviewer", "--reviewer-kind",
                  "expert_committee")
    assert experts["role"] == "reviewer"
    tokens["experts"] = experts["token"]
    ag2 = parties.agreement(title="Second use")
    aid2, h2 = ag2["id"], ag2["document_hash"]
    run("owner", "agreement", "submit", aid2)
    run("authority", "authority", "reviewers", aid2, "expert-panel")
    run("authority", "authority", "file", aid2, "--document-hash", h2, code=1)  # review.pending
    assert run("experts", "authority", "review", aid2, "--document-hash", h2, "--refuse", "--reason",
               "no measures listed")["state"] == "returned"
    run("owner", "agreement", "submit", aid2)
    run("experts", "authority", "review", aid2, "--document-hash", h2, "--approve")
    assert run("authority", "authority", "file", aid2, "--document-hash", h2)["state"] == "filed"
    run("experts", "authority", "suspend", aid2, "--reason", "x", code=1)  # a reviewer does nothing else
