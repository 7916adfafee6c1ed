"""The release gate: only the output kinds a job kind may release, intact and under the size limit."""

from __future__ import annotations

import pytest

from sandbox.jobs import JobFailed, Output, digest_json, gate


def _agg(**kw: object) -> Output:
    body = {"columns": ["n"], "rows": [[3]], "suppressed_groups": 0, "cost": {"epsilon": 1.0, "delta": 0.0},
            "error_bars": {"n": 2.0}, "output_digest": "sha256:" + "a" * 64}
    body.update(kw)
    return Output(kind="aggregate", result=body, output_digest="sha256:" + "a" * 64)


def _refused(job_kind: str, out: Output, tmp_path, **kw: object) -> str:
    with pytest.raises(JobFailed) as e:
        gate.check(job_kind, out, tmp_path, **kw)  # type: ignore[arg-type]
    return e.value.reason


def test_aggregates_pass_only_for_queries(tmp_path):
    gate.check("query", _agg(), tmp_path)
    assert _refused("code", _agg(), tmp_path) == "release.kind_not_allowed"
    assert _refused("train", _agg(), tmp_path) == "release.kind_not_allowed"
    assert _refused("verify", _agg(), tmp_path) == "release.kind_not_allowed"


def test_a_query_may_not_smuggle_anything_but_the_noisy_table(tmp_path):
    assert _refused("query", _agg(raw_rows=[[1, 2]]), tmp_path) == "release.not_an_aggregate"
    assert _refused("query", _agg(output_digest="sha256:" + "b" * 64), tmp_path) == "release.not_an_aggregate"
    assert _refused("query", Output(kind="aggregate", result=[1, 2], output_digest="sha256:" + "a" * 64),
                    tmp_path) == "release.not_an_aggregate"


def test_json_outputs_must_match_their_digest_and_size(tmp_path):
    body = {"mean": 1.5}
    gate.check("code", Output(kind="json", result=body, output_digest=digest_json(body), release="owner"), tmp_path)
    forged = Output(kind="json", result={"mean": 9}, output_digest=digest_json(body), release="owner")
    assert _refused("code", forged, tmp_path) == "release.digest_mismatch"
    big = {"x": "y" * 2000}
    assert _refused("code", Output(kind="json", result=big, output_digest=digest_json(big)), tmp_path,
                    max_bytes=1000) == "release.too_large"
    assert _refused("code", Output(kind="json", result=float("nan"), output_digest="sha256:" + "0" * 64),
                    tmp_path) == "release.not_json"
    assert _refused("code", Output(kind="json", result=1, output_digest="md5:abc"), tmp_path) == "release.bad_digest"


def test_model_artifacts_must_live_in_the_models_directory(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    inside = models / "job_1" / "weights.safetensors"
    inside.parent.mkdir()
    inside.write_bytes(b"x")
    outside = tmp_path / "elsewhere.safetensors"
    outside.write_bytes(b"x")
    card = {"algorithm": "logistic_regression"}
    d = "sha256:" + "c" * 64
    gate.check("train", Output(kind="model", result=card, output_digest=d, artifact=inside), models)
    assert _refused("train", Output(kind="model", result=card, output_digest=d, artifact=outside),
                    models) == "release.artifact_outside"
    sneaky = models / ".." / "elsewhere.safetensors"
    assert _refused("train", Output(kind="model", result=card, output_digest=d, artifact=sneaky),
                    models) == "release.artifact_outside"
    (models / "link.safetensors").symlink_to(outside)
    assert _refused("train", Output(kind="model", result=card, output_digest=d, artifact=models / "link.safetensors"),
                    models) == "release.artifact_outside"
    assert _refused("train", Output(kind="model", result=card, output_digest=d), models) == "release.missing_artifact"
