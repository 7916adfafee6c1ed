"""Full secure-aggregation rounds through the real gateway: five holders, dropouts at every stage, aborts."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from mpc.secagg import FRAME_MEDIA_TYPE, RoundAborted, SecAggClient, Stage
from veilbox.client import ApiError
from veilbox.secagg_client import decode_sum, round_config, send

HOLDERS = ("holder-a", "holder-b", "holder-c", "holder-d", "holder-e")


def test_full_round_releases_the_sum_to_the_opener_only(world) -> None:
    rnd = world.open(threshold=3)
    assert rnd["stage"] == "advertise_keys" and rnd["config"]["participants"] == list(HOLDERS)
    vectors = world.inputs()
    run = world.run(rnd["id"], vectors, closer=False)
    assert run.errors == {}
    assert all(o.survived for o in run.outcomes.values())
    result = world.operator.secagg_result(rnd["id"], wait=10)
    assert result["ready"] and result["survivors"] == list(HOLDERS)
    total = decode_sum(result)
    assert np.array_equal(total, world.expected(vectors, HOLDERS))
    digest = "sha256:" + hashlib.sha256(total.astype("<u4").tobytes()).hexdigest()
    assert result["output_digest"] == digest
    for holder in world.holders.values():  # participants never see the sum
        with pytest.raises(ApiError) as e:
            holder.secagg_result(rnd["id"])
        assert e.value.code == "POLICY_DENIED"
    st = world.operator.secagg_round(rnd["id"])
    assert [h["by"] for h in st["history"]] == ["all_arrived"] * 4


@pytest.mark.parametrize("stage", [Stage.ADVERTISE_KEYS, Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.UNMASK])
def test_dropouts_at_each_stage(world, stage: Stage) -> None:
    rnd = world.open(threshold=3)
    vectors = world.inputs(seed=1)
    dropped = ("holder-b", "holder-e")
    run = world.run(rnd["id"], vectors, stop_before={n: stage for n in dropped})
    assert run.errors == {}
    result = world.operator.secagg_result(rnd["id"], wait=10)
    # A holder that stops before unmasking has sent its masked input: it is a survivor, its input is in the sum.
    survivors = list(HOLDERS) if stage is Stage.UNMASK else [n for n in HOLDERS if n not in dropped]
    assert result["survivors"] == survivors
    assert np.array_equal(decode_sum(result), world.expected(vectors, survivors))


def test_fewer_than_threshold_survivors_abort_and_release_nothing(world) -> None:
    rnd = world.open(threshold=4)
    vectors = world.inputs(seed=2)
    run = world.run(rnd["id"], vectors,
                      stop_before={"holder-a": Stage.MASKED_INPUT, "holder-c": Stage.MASKED_INPUT})
    assert set(run.errors) == {"holder-b", "holder-d", "holder-e"}
    assert all(isinstance(e, RoundAborted) for e in run.errors.values())
    st = world.operator.secagg_round(rnd["id"])
    assert st["stage"] == "aborted" and st["survivors"] == []
    with pytest.raises(ApiError) as e:
        world.operator.secagg_result(rnd["id"])
    assert e.value.code == "INVALID_REQUEST" and "nothing is released" in e.value.message
    entries = world.parties.regulator.audit(limit=1000)["entries"]
    assert not any(x["output_digest"] for x in entries if x["action"].startswith("secagg."))


def test_messages_come_as_json_or_binary_frames_and_a_bad_frame_is_refused(world) -> None:
    """The SDK posts binary frames (the rounds above); JSON stays accepted; a frame that does not parse is
    ``INVALID_REQUEST``, never a 500, and takes nothing from the sender's stage."""
    rnd = world.open(threshold=3)
    config = round_config(rnd)
    a, b = (world.holders[h] for h in HOLDERS[:2])
    with pytest.raises(ApiError) as e:
        a.request("POST", f"/v1/secagg/rounds/{rnd['id']}/keys", content=b"VBSA\x01\x00\x00\x00\x09{}",
                  headers={"Content-Type": FRAME_MEDIA_TYPE})
    assert e.value.status == 422 and e.value.code == "INVALID_REQUEST"
    assert a.secagg_send(rnd["id"], "keys", SecAggClient(config, HOLDERS[0]).advertise_keys().to_json())["accepted"]
    assert send(b, rnd["id"], "keys", SecAggClient(config, HOLDERS[1]).advertise_keys())["accepted"]
    assert world.operator.secagg_round(rnd["id"])["waiting_for"] == len(HOLDERS) - 2
    assert world.operator.secagg_close(rnd["id"])["stage"] == "aborted"  # two of five: below the threshold
