"""`veilbox secagg open|join|status|result` from the shell against the real gateway: three holders join from their
own processes, a fourth never shows up, the operator reads the fixed-point sum of the three."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _env(url: str, client: Any) -> dict[str, str]:
    token = client._http.headers["Authorization"].split()[1]
    return {**os.environ, "VEILBOX_URL": url, "VEILBOX_TOKEN": token, "COLUMNS": "200"}


def _cli(url: str, client: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "veilbox.cli", *args], capture_output=True, text=True, timeout=300,
                          env=_env(url, client))


def test_holders_join_from_the_shell_and_the_operator_reads_the_sum(world, tmp_path: Path) -> None:
    url = world.parties.service.url
    joining = list(world.names[:3])
    args = ["secagg", "open", "--agreement", world.agreement_id, "--threshold", "3", "--length", "4",
            "--stage-timeout", "120"]
    for name in world.names[:4]:
        args += ["--participant", name]
    opened = _cli(url, world.operator, *args)
    assert opened.returncode == 0, opened.stderr
    round_id = json.loads(opened.stdout)["id"]

    values = {name: np.array([1.5, -2.25, 0.0, 10.0]) * (i + 1) for i, name in enumerate(joining)}
    procs = []
    for name in joining:
        np.save(tmp_path / f"{name}.npy", values[name])
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "veilbox.cli", "secagg", "join", "--round", round_id,
             "--vector-file", str(tmp_path / f"{name}.npy"), "--clip", "100", "--timeout", "120"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(url, world.holders[name])))
    closed = False
    deadline = time.monotonic() + 300
    while any(proc.poll() is None for proc in procs) and time.monotonic() < deadline:
        st = world.operator.secagg_round(round_id)  # holder-d never comes: the operator ends the stage without it
        if not closed and st["stage"] == "advertise_keys" and st["pending"] == [world.names[3]]:
            assert _cli(url, world.operator, "secagg", "close", "--round", round_id).returncode == 0
            closed = True
        time.sleep(0.05)
    outcomes = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        outcomes.append(json.loads(stdout))
    assert all(o["survived"] and len(o["sent"]) == 4 for o in outcomes)

    status = json.loads(_cli(url, world.operator, "secagg", "status", "--round", round_id).stdout)
    assert status["stage"] == "done" and status["history"][0] == {
        "stage": "advertise_keys", "by": "operator", "received": 3, "next": "share_keys"}

    out = tmp_path / "sum.npy"
    res = _cli(url, world.operator, "secagg", "result", "--round", round_id, "--clip", "100", "--out", str(out))
    assert res.returncode == 0, res.stderr
    shown = json.loads(res.stdout)
    assert shown["survivors"] == joining and "sum" not in shown
    expected = sum(values.values())
    assert np.allclose(np.load(out), expected, atol=1e-3)

    # A holder cannot read the sum, and someone outside the round cannot even see it.
    denied = _cli(url, world.holders[joining[0]], "secagg", "result", "--round", round_id)
    assert denied.returncode != 0 and "POLICY_DENIED" in denied.stdout + denied.stderr
    hidden = _cli(url, world.stranger, "secagg", "status", "--round", round_id)
    assert hidden.returncode != 0 and "NOT_FOUND_OR_FORBIDDEN" in hidden.stdout + hidden.stderr


def test_join_refuses_bad_input_before_sending_anything(world, tmp_path: Path) -> None:
    url = world.parties.service.url
    rnd = world.open(threshold=3, length=4)
    listed = json.loads(_cli(url, world.holders[world.names[0]], "secagg", "list", "--waiting").stdout)
    assert [r["id"] for r in listed] == [rnd["id"]]  # how a holder learns that a round waits for it
    assert json.loads(_cli(url, world.stranger, "secagg", "list").stdout) == []
    np.save(tmp_path / "long.npy", np.arange(5, dtype=np.uint32))
    np.save(tmp_path / "floats.npy", np.ones(4))
    for vector, extra in (("long.npy", []), ("floats.npy", [])):
        r = _cli(url, world.holders[world.names[0]], "secagg", "join", "--round", rnd["id"],
                 "--vector-file", str(tmp_path / vector), *extra)
        assert r.returncode != 0
    st = world.operator.secagg_round(rnd["id"])
    assert world.names[0] in st["pending"] and st["stage"] == "advertise_keys"
