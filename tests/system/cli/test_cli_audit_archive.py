"""`veilbox audit anchor|archive|verify-archive` and `audit verify --anchors` on a local home: the head anchored
to a file proves a rewritten history; the archive verifies across segments and names a tampered one."""

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from veilbox.cli import app


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = tmp_path_factory.mktemp("audit-home") / "home"
    r = CliRunner().invoke(app, ["init", "--home", str(h), "--json"])
    assert r.exit_code == 0, r.output
    return h


def run(*args, ok=True):
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert (r.exit_code == 0) == ok, r.output
    return json.loads(r.stdout)


def test_anchor_archive_and_verify_from_the_shell(home, tmp_path):
    anchors = tmp_path / "anchors.jsonl"
    sent = run("audit", "anchor", "--home", home, "--sink", f"file:{anchors}")
    assert sent["outcome"] == "sent" and sent["sink"] == f"file:{anchors}"
    assert json.loads(anchors.read_text().splitlines()[0])["seq"] == sent["seq"]
    verified = run("audit", "verify", "--home", home, "--anchors", anchors)
    assert verified["ok"] and verified["anchors"] == 1 and verified["chain"]["ok"]

    made = run("audit", "archive", "--home", home, "--upto", sent["seq"] + 1, "--segment-size", 1)
    assert [s["first_seq"] for s in made["segments"]] == list(range(1, sent["seq"] + 2))
    assert run("audit", "verify-archive", "--home", home)["ok"]
    seg = home / "archive" / "audit" / made["segments"][1]["file"]
    row = json.loads(seg.read_text())
    row["actor"] = "someone_else"
    seg.write_text(json.dumps(row) + "\n")
    bad = run("audit", "verify-archive", "--home", home, ok=False)
    assert (bad["first_bad_segment"], bad["first_bad_seq"]) == (seg.name.removesuffix(".jsonl"), 2)

    edited = anchors.read_text().replace(sent["hash"], "0" * len(sent["hash"]))
    (tmp_path / "edited.jsonl").write_text(edited)
    bad = run("audit", "verify", "--home", home, "--anchors", tmp_path / "edited.jsonl", ok=False)
    assert bad["bad_anchor_line"] == 1 and "signature" in bad["reason"]

    con = sqlite3.connect(home / "meta.db")
    con.execute("UPDATE audit_entries SET actor='x' WHERE seq=1")
    con.commit()
    con.close()
    bad = run("audit", "verify", "--home", home, "--anchors", anchors, ok=False)
    assert bad["first_bad_seq"] == 1 and not bad["chain"]["ok"]


def test_a_regulator_checks_anchors_against_the_gateways_export(service, tmp_path):
    from gateway.anchoring import Anchorer, FileSink
    from gateway.keys import Keys

    token = service.admin.create_principal("anchor-regulator", "regulator")["token"]
    anchors = tmp_path / "anchors.jsonl"
    assert Anchorer(service.ctx.audit, FileSink(anchors)).anchor().outcome == "sent"
    remote = ("--url", service.url, "--token", token, "audit", "verify", "--anchors", anchors)
    good = run(*remote)
    assert good["ok"] and good["anchors"] == 1 and good["chain"]["ok"]
    other = tmp_path / "other.pem"
    other.write_text(Keys.generate().public.pem)
    bad = run(*remote, "--public-key", other, ok=False)  # pinned to another key: the anchors are not its
    assert bad["bad_anchor_line"] == 1 and "signature" in bad["reason"]
