"""Job digests follow the home's cryptographic suite: an ``sm`` home's spec hashes, JSON and model output digests
are ``sm3:`` and the release gate holds an output to the home's hash; an ``intl`` home's stay ``sha256:``."""

from __future__ import annotations

import hashlib
import json

import pytest

import policies
from cryptosuite import suite_of
from sandbox.jobs import JobFailed, Output, digest_file, digest_json, gate

BODY = {"mean": 1.5, "name": "é"}


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_intl_digests_are_unchanged_sha256(tmp_path):
    assert digest_json(BODY) == "sha256:" + hashlib.sha256(_canonical(BODY)).hexdigest()
    assert policies.spec_hash(BODY) == "sha256:" + hashlib.sha256(_canonical(BODY)).hexdigest()
    f = tmp_path / "w.bin"
    f.write_bytes(b"weights")
    assert digest_file(f) == "sha256:" + hashlib.sha256(b"weights").hexdigest()


def test_an_sm_home_digests_carry_sm3_and_verify(tmp_path):
    sm = suite_of("sm")
    d = digest_json(BODY, "sm3")
    assert d.startswith("sm3:") and d == sm.digest(_canonical(BODY)) and len(d) == 68
    assert policies.spec_hash(BODY, "sm3") == d != policies.spec_hash(BODY)
    f = tmp_path / "w.bin"
    f.write_bytes(b"weights")
    assert digest_file(f, "sm3") == sm.digest(b"weights")
    out = Output(kind="json", result=BODY, output_digest=d, release="owner")
    gate.check("code", out, tmp_path)  # the JSON output's digest is recomputed with SM3
    gate.suite_digest(out, "sm3")
    forged = Output(kind="json", result={"mean": 9}, output_digest=d, release="owner")
    with pytest.raises(JobFailed) as e:
        gate.check("code", forged, tmp_path)
    assert e.value.reason == "release.digest_mismatch"


@pytest.mark.parametrize(
    ("home", "digest"), [("sm3", "sha256:" + "a" * 64), ("sha256", "sm3:" + "a" * 64), ("sm3", "sm3:" + "a" * 63)]
)
def test_the_gate_refuses_a_digest_of_another_suite(home, digest):
    with pytest.raises(JobFailed) as e:
        gate.suite_digest(Output(kind="json", result=1, output_digest=digest), home)
    assert e.value.reason == "release.bad_digest"
