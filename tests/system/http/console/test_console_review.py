"""The owner's review of a pending query in plain words: columns read, ε now → after, the accuracy of an average
stated for the groups the query will have (not only for the smallest releasable group), the mock answer as a
table, the JSON behind disclosures."""

import re

from .conftest import sign_in, token_of

AVG_BY_DISTRICT = "SELECT district, AVG(monthly_income) AS m FROM tax_income GROUP BY district"


def test_owner_review_states_a_usable_accuracy(parties):
    ag = parties.agreement(approval="owner_each_job")
    job = parties.operator.query(ag["id"], AVG_BY_DISTRICT, 0.5)
    assert job["state"] == "pending_approval"
    web = sign_in(parties.service.url, token_of(parties.owner))
    try:
        page = web.get(f"/console/jobs/{job['job_id']}").text
    finally:
        web.close()
    assert 'id="plain-review"' in page and "monthly_income" in page
    assert re.search(r"5 left now → 4\.5 left after this job", page)
    accuracy = re.search(r'<ul id="accuracy">(.*?)</ul>', page, re.S).group(1)
    typical, worst = (float(x.replace(",", "")) for x in re.findall(r"± ([\d,.]+)", accuracy)[:2])
    means = [float(x.replace(",", "")) for x in re.findall(r"<td>([\d,]+\.\d\d)</td>", page)]
    assert means and min(means) > 50_000  # the mock's averages, in the table
    assert typical < 0.2 * min(means) < worst  # usable for real groups; the smallest group is the worst case
    assert "smallest group that can be released (5)" in accuracy
    assert re.search(r"<details><summary>[^<]*plan as JSON", page) and 'id="mock-table"' in page
