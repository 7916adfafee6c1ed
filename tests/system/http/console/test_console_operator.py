"""The grantee's query workspace and job forms over plain HTTP: a preview costs nothing and states the cost, the
budget left after it, the accuracy in words and the mock answer; form validation and CSRF; a submission form
posted twice creates one job and charges once; the released result as a table and as CSV (the released result
only); the job forms submit the body of ``POST /v1/jobs`` and the job's page refreshes itself while it waits."""

from __future__ import annotations

import csv
import io
import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.system.http.console.conftest import COUNT_BY_DISTRICT

TOKEN = re.compile(r'name="form_token" value="([^"]+)"')


def _form(html: str) -> dict[str, str]:
    m = TOKEN.search(html)
    assert m, "no one-time form token on the page"
    return {"form_token": m.group(1)}


def _jobs(parties: Any, ag_id: str) -> list[str]:
    return [j["id"] for j in parties.operator.jobs() if j["agreement_id"] == ag_id]


def _preview(console: Any, web: Any, ag_id: str, sql: str = COUNT_BY_DISTRICT, eps: str = "0.5") -> Any:
    return console.post(web, "/console/query/preview", "/console/query",
                        {"agreement_id": ag_id, "sql": sql, "epsilon": eps})


def test_preview_costs_nothing_and_submit_charges_once(console: Any) -> None:
    parties = console.parties
    ag = parties.agreement(title="Auto statistics")  # auto_within_budget: charged at submission
    web = console.web("operator")
    page = web.get("/console/query")
    assert page.status_code == 200 and ag["id"] in page.text and 'id="sql"' in page.text

    r = _preview(console, web, ag["id"])
    assert r.status_code == 200, r.text
    assert re.search(r'id="cost">ε 0.5<', r.text)
    assert re.search(r'id="budget-now">ε 5<', r.text) and re.search(r'id="budget-after">ε 4.5<', r.text)
    api = parties.operator.preview_query(ag["id"], COUNT_BY_DISTRICT, 0.5)
    hw = api["expected_error"]["n"]
    assert f"± {float(f'{hw:.2g}'):g} people for a group of 1,000" in r.text
    assert 'id="mock-table"' in r.text and "Binhu" in r.text
    assert parties.operator.budget(ag["id"])["exact"]["epsilon_spent"] == "0" and _jobs(parties, ag["id"]) == []

    data = {"agreement_id": ag["id"], "sql": COUNT_BY_DISTRICT, "epsilon": "0.5", "csrf": console.csrf_in(r.text),
            **_form(r.text)}
    first = web.post("/console/query/submit", data=data)
    again = web.post("/console/query/submit", data=data)  # the same form posted twice (a reload, a double click)
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]
    job_id = first.headers["location"].rsplit("/", 1)[1]
    assert _jobs(parties, ag["id"]) == [job_id]
    assert parties.operator.budget(ag["id"])["exact"]["epsilon_spent"] == "0.5"
    entries = parties.regulator.audit(action="console.query.submit")["entries"]
    assert len(entries) == 2 and [json.loads(e["details"]).get("resubmitted") for e in entries] == [None, True]

    r = _preview(console, web, ag["id"])  # a fresh form, posted three times at once
    data = {**data, "csrf": console.csrf_in(r.text), **_form(r.text)}
    with ThreadPoolExecutor(3) as pool:
        raced = list(pool.map(lambda _: web.post("/console/query/submit", data=data), range(3)))
    assert {x.status_code for x in raced} == {303} and len({x.headers["location"] for x in raced}) == 1
    assert len(_jobs(parties, ag["id"])) == 2
    assert parties.operator.budget(ag["id"])["exact"]["epsilon_spent"] == "1"

    done = parties.operator.wait_job(job_id)
    assert done["state"] == "released"
    page = web.get(f"/console/jobs/{job_id}")
    assert 'id="result-table"' in page.text and "± " in page.text and 'http-equiv="refresh"' not in page.text
    out = parties.operator.job_result(job_id)["result"]
    got = web.get(f"/console/jobs/{job_id}/result.csv")
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    assert f'filename="{job_id}.csv"' in got.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(got.text)))
    assert rows[0] == ["district", "n", "n ±95%"]
    bar = out["error_bars"]["n"]
    assert [[r[0], int(r[1]), float(r[2])] for r in rows[1:]] == [[d, n, bar] for d, n in out["rows"]]
    other = console.web("bank")
    assert other.get(f"/console/jobs/{job_id}/result.csv").status_code == 404  # the grantee's result only


def test_workspace_refuses_bad_forms(console: Any) -> None:
    parties = console.parties
    ag = parties.agreement(title="Auto statistics")
    web = console.web("operator")
    page = web.get("/console/query")
    no_csrf = web.post("/console/query/preview", data={"agreement_id": ag["id"], "sql": COUNT_BY_DISTRICT,
                                                      "epsilon": "0.5"})
    assert no_csrf.status_code == 403 and "security token" in no_csrf.text
    empty = _preview(console, web, ag["id"], sql="  ")
    assert empty.status_code == 422 and "Write a SQL query first." in empty.text and 'id="problem"' in empty.text
    rejected = _preview(console, web, ag["id"], sql="SELECT * FROM tax_income")
    assert rejected.status_code == 422 and 'id="problem"' in rejected.text and "QUERY_REJECTED" in rejected.text
    assert "SELECT * FROM tax_income" in rejected.text  # the SQL stays in the editor
    bad_eps = _preview(console, web, ag["id"], eps="lots")
    assert bad_eps.status_code == 422 and 'id="problem"' in bad_eps.text
    tokenless = web.post("/console/query/submit", data={"agreement_id": ag["id"], "sql": COUNT_BY_DISTRICT,
                                                       "epsilon": "0.5", "csrf": console.csrf_in(page.text)})
    assert tokenless.status_code == 422 and "one-time token" in tokenless.text
    owner = console.web("owner")
    assert console.post(owner, "/console/query/preview", "/console/", {"agreement_id": ag["id"], "sql": "x",
                                                                       "epsilon": "1"}).status_code == 403
    assert _jobs(parties, ag["id"]) == [] and parties.operator.budget(ag["id"])["exact"]["epsilon_spent"] == "0"


def test_train_and_code_forms_submit_the_api_body(console: Any) -> None:
    parties = console.parties
    ag = console.agreement  # owner_each_job: the owner still reviews
    web = console.web("operator")
    form = web.get(f"/console/jobs/new/train?agreement={ag['id']}")
    assert form.status_code == 200 and 'id="spec"' in form.text
    base = {"agreement_id": ag["id"], "csrf": console.csrf_in(form.text), **_form(form.text)}
    assert web.post("/console/jobs/new/train", data={**base, "spec": "{not json"}).status_code == 422
    assert web.post("/console/jobs/new/train", data={**base, "spec": "[1]"}).status_code == 422
    # (a valid training spec takes the same path as the code job below; its DP-SGD calibration costs seconds)

    form = web.get("/console/jobs/new/code")
    code = {"dataset": "tax_income", "entrypoint": "main", "outputs": {"kind": "json", "max_bytes": 1024}}
    r = web.post("/console/jobs/new/code", data={"agreement_id": ag["id"], "csrf": console.csrf_in(form.text),
                                                  **_form(form.text), "spec": json.dumps(code),
                                                  "source": "def main(inputs):\r\n    return 1\r\n"})
    assert r.status_code == 303, r.text
    job = parties.operator.job(r.headers["location"].rsplit("/", 1)[1])
    assert job["kind"] == "code" and job["spec"] == {**code, "source": "def main(inputs):\n    return 1\n"}
    assert job["state"] == "pending_approval"
    page = web.get(r.headers["location"])
    assert 'id="job-status"' in page.text and 'http-equiv="refresh" content="15"' in page.text
    assert web.get("/console/jobs/new/secagg").status_code == 404
