"""Secure-aggregation benchmark: per-client and server time of a whole round vs plain NumPy summation.

Rounds of n = 10, 50, 100 clients over L = 100 000 uint32 words with 0 %, 10 % and 30 % of the clients
dropping after they shared keys (the costliest place: the server must rebuild their mask keys and strip
their pairwise masks from every survivor), threshold t = n//2 + 1. Each round runs twice: over the wire
form (every message through its JSON dict, base64 bytes — the headline figures) and in memory (compute
only). The floor is the plain sum of the same n vectors in NumPy. If `flwr` imports, the same inputs also
go through Flower's SecAgg+ primitives (key agreement, pycryptodome Shamir, Fernet, MT19937 masks).

A last figure runs whole rounds through a real gateway on loopback (`/v1/secagg/rounds`, every holder a
principal with its own HTTP client, in threads of this process): the wall time from opening the round to the
operator holding the sum, next to the same round in memory (`simulate_round`, wire form) — the price of HTTP,
authentication, audit entries and long polling — and the process's CPU time for both (less swayed by a shared
machine's load than the wall time). Full mode: n = 10 with 0 % and 10 % dropout and n = 100, L = 100 000.

Prints exactly one JSON line on stdout; progress goes to stderr. `--quick`: n = 10, 50 and L = 10 000.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mpc.secagg import Stage, simulate_round  # noqa: E402

GOAL_CLIENT_MS_N100 = 40.0
GOAL_SERVER_MS_N100_10PCT = 600.0


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def make_inputs(n: int, length: int) -> dict[str, np.ndarray]:
    """Benchmark inputs: 24-bit words from os.urandom (never a seeded NumPy generator)."""
    raw = np.frombuffer(os.urandom(4 * n * length), dtype=np.uint32).reshape(n, length) >> np.uint32(8)
    return {f"bank-{i:03d}": raw[i] for i in range(n)}


def plain_sum(vectors: list[np.ndarray], repeats: int = 5) -> tuple[float, np.ndarray]:
    """Best-of time (s) to add the vectors mod 2^32, the floor any secure aggregation is measured against."""
    best = float("inf")
    total = np.zeros_like(vectors[0])
    for _ in range(repeats):
        start = time.perf_counter()
        total = np.zeros_like(vectors[0])
        for vector in vectors:
            np.add(total, vector, out=total)
        best = min(best, time.perf_counter() - start)
    return best, total


def ours(inputs: dict[str, np.ndarray], t: int, dropped: list[str], wire: bool) -> dict[str, Any]:
    outcome = simulate_round(inputs, t, {Stage.MASKED_INPUT: dropped}, wire=wire)
    survivors = [inputs[name] for name in outcome.survivors]
    _, expected = plain_sum(survivors, repeats=1)
    client = np.array(list(outcome.client_seconds.values())) * 1e3
    return {
        "client_ms_mean": round(float(client.mean()), 2),
        "client_ms_max": round(float(client.max()), 2),
        "server_ms": round(outcome.server_seconds * 1e3, 2),
        "correct": outcome.total is not None and bool(np.array_equal(outcome.total, expected)),
        "survivors": len(outcome.survivors),
    }


def flower(inputs: dict[str, np.ndarray], t: int, dropped: list[str]) -> dict[str, Any]:
    """The same round through Flower's SecAgg+ primitives (complete graph, num_shares = n)."""
    from flwr.common.secure_aggregation.crypto.shamir import combine_shares, create_shares
    from flwr.common.secure_aggregation.crypto.symmetric_encryption import decrypt, encrypt, generate_shared_key
    from flwr.common.secure_aggregation.secaggplus_utils import (
        pseudo_rand_gen,
        share_keys_plaintext_concat,
        share_keys_plaintext_separate,
    )
    from flwr.supercore.primitives.asymmetric import bytes_to_private_key, generate_key_pairs, private_key_to_bytes

    names = list(inputs)
    n, length, modulus = len(names), len(next(iter(inputs.values()))), 1 << 32
    seconds = dict.fromkeys(names, 0.0)

    def timed(name: str, action: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = action()
        seconds[name] += time.perf_counter() - start
        return result

    keys = {name: timed(name, lambda: (generate_key_pairs(), generate_key_pairs())) for name in names}
    seeds: dict[str, bytes] = {}
    envelopes: dict[tuple[str, str], bytes] = {}

    def share_keys(u: str) -> None:
        (c_sk, _), (s_sk, _) = keys[u]
        seeds[u] = os.urandom(32)
        b_shares = create_shares(seeds[u], t, n)
        s_shares = create_shares(private_key_to_bytes(s_sk), t, n)
        for i, v in enumerate(names):
            if v != u:
                key = generate_shared_key(c_sk, keys[v][0][1])
                plaintext = share_keys_plaintext_concat(i, i, b_shares[i], s_shares[i])
                envelopes[(u, v)] = encrypt(key, plaintext)

    for u in names:
        timed(u, lambda u=u: share_keys(u))
    alive = [u for u in names if u not in dropped]
    held: dict[str, dict[str, tuple[bytes, bytes]]] = {}
    masked: dict[str, np.ndarray] = {}

    def mask(u: str) -> None:
        (c_sk, _), (s_sk, _) = keys[u]
        held[u] = {}
        for v in names:
            if v != u:
                plaintext = decrypt(generate_shared_key(c_sk, keys[v][0][1]), envelopes[(v, u)])
                _, _, b_share, s_share = share_keys_plaintext_separate(plaintext)
                held[u][v] = (b_share, s_share)
        y = inputs[u].astype(np.int64) + pseudo_rand_gen(seeds[u], modulus, [(length,)])[0]
        for v in names:
            if v != u:
                pair = pseudo_rand_gen(generate_shared_key(s_sk, keys[v][1][1]), modulus, [(length,)])[0]
                y = y + pair if u < v else y - pair
        masked[u] = np.mod(y, modulus)

    for u in alive:
        timed(u, lambda u=u: mask(u))
    survivors = alive
    start = time.perf_counter()
    total = np.zeros(length, dtype=np.int64)
    for u in survivors:
        total += masked[u]
    for u in survivors:  # self-masks, from t shares held by other survivors
        b_u = combine_shares([held[h][u][0] for h in survivors if h != u][:t])
        total -= pseudo_rand_gen(b_u, modulus, [(length,)])[0]
    for v in dropped:  # dropped clients' mask keys, then their pairwise masks with every survivor
        s_sk = bytes_to_private_key(combine_shares([held[h][v][1] for h in survivors[:t]]))
        for u in survivors:
            pair = pseudo_rand_gen(generate_shared_key(s_sk, keys[u][1][1]), modulus, [(length,)])[0]
            total = total - pair if u < v else total + pair
    total = np.mod(total, modulus).astype(np.uint32)
    server = time.perf_counter() - start
    _, expected = plain_sum([inputs[u] for u in survivors], repeats=1)
    client = np.array([seconds[u] for u in names]) * 1e3
    return {
        "client_ms_mean": round(float(client.mean()), 2),
        "client_ms_max": round(float(client.max()), 2),
        "server_ms": round(server * 1e3, 2),
        "correct": bool(np.array_equal(total, expected)),
    }


def flower_available() -> str | None:
    try:
        import flwr
    except ImportError:
        return None
    return str(getattr(flwr, "__version__", "unknown"))


def gateway_rounds(quick: bool) -> dict[str, Any]:
    """Whole rounds through a real gateway: n holders (threads), 0 % and 10 % dropping before their masked input."""
    import tempfile
    import threading

    from catalog.datagen import generate
    from gateway.context import init_home, open_context
    from gateway.server import BackgroundServer
    from gateway.settings import Settings
    from veilbox.client import Client
    from veilbox.secagg_client import decode_sum, join_round

    length = 10_000 if quick else 100_000
    plan = [(10, 0.0), (10, 0.1)] + ([] if quick else [(100, 0.0)])  # the goals: n = 10 ≤ 3× memory, n = 100 ≤ 5 s
    n = max(size for size, _ in plan)
    root = Path(tempfile.mkdtemp(prefix="veilbox-bench-secagg-"))
    data = generate(root / "incoming" / "tax", rows=1000, seed=5)
    settings = Settings(home=root / "home", import_roots=[root / "incoming"], latency_bucket_ms=0, env="test")
    token = init_home(settings)
    ctx = open_context(settings)
    cases = []
    with BackgroundServer(ctx) as srv:
        admin = Client(srv.url, token, timeout=600)
        owner = admin.with_token(admin.create_principal("tax", "owner")["token"])
        operator = admin.with_token(admin.create_principal("lab", "operator")["token"])
        owner.register_dataset(json.loads(data.tax_income_spec.read_text()))
        everyone = make_inputs(n, length)
        ag = owner.propose_agreement({  # the holders must be parties to the agreement
            "title": "bench", "grantee": "lab", "holders": list(everyone), "datasets": ["tax_income"],
            "columns": {"tax_income": ["age"]},
            "purposes": ["credit_risk"], "job_kinds": ["train"], "valid_from": "2026-01-01T00:00:00Z",
            "valid_until": "2036-01-01T00:00:00Z", "budget": {"epsilon": 1}, "approval": "owner_each_job",
            "quotas": {"calls_per_day": 10**8}})
        agreement = operator.accept_agreement(ag["id"])["id"]
        holders = {name: admin.with_token(admin.create_principal(name, "bank")["token"]) for name in everyone}
        for size, rate in plan:
            inputs = dict(list(everyone.items())[:size])
            dropped = set(list(inputs)[1 : 1 + round(rate * size)])
            log(f"gateway secagg n={size} L={length} dropout={rate:.0%} ...")
            cpu = time.process_time()
            memory = ours(inputs, size // 2 + 1, sorted(dropped), wire=True)
            memory_cpu = time.process_time() - cpu
            start, cpu = time.perf_counter(), time.process_time()
            rnd = operator.secagg_open(agreement, list(inputs), size // 2 + 1, length, stage_timeout_s=300)
            threads = [threading.Thread(target=join_round, args=(holders[name], rnd["id"], vec), daemon=True,
                                        kwargs={"stop_before": Stage.MASKED_INPUT if name in dropped else None})
                       for name, vec in inputs.items()]
            for th in threads:
                th.start()
            while True:  # the operator closes the masked stage once only the silent holders are missing
                st = operator.secagg_round(rnd["id"])
                if st["stage"] in ("done", "aborted"):
                    break
                if st["stage"] == "masked_input" and st["pending"] and set(st["pending"]) <= dropped:
                    operator.secagg_close(rnd["id"])
                time.sleep(0.05)
            result = operator.secagg_result(rnd["id"], wait=30)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            for th in threads:
                th.join(timeout=60)
            survivors = [inputs[name] for name in result["survivors"]]
            _, expected = plain_sum(survivors, repeats=1)
            in_memory_s = (memory["server_ms"] + sum([memory["client_ms_mean"]] * size)) / 1e3
            cases.append({
                "n": size, "dropout": rate, "round_wall_s": round(wall, 3),
                "in_memory_total_s": round(in_memory_s, 3),
                "http_x_in_memory": round(wall / in_memory_s, 2),
                "round_cpu_s": round(cpu, 3), "in_memory_cpu_s": round(memory_cpu, 3),
                "cpu_x_in_memory": round(cpu / memory_cpu, 2),
                "correct": bool(np.array_equal(decode_sum(result), expected)),
            })
    ctx.close()
    return {"what": "open → result through the gateway on loopback, holders as threads sharing 2 cores; "
                    "in-memory total = server + n × mean client time (wire form); CPU = this process's CPU time "
                    "(gateway, holders and operator are all in it)",
            "vector_length": length, "cases": cases}


def run(quick: bool, gateway_figure: bool = True) -> dict[str, Any]:
    sizes = (10, 50) if quick else (10, 50, 100)
    length = 10_000 if quick else 100_000
    rates = (0.0, 0.1, 0.3)
    cases = []
    flwr_version = flower_available()
    flwr_cases = []
    for n in sizes:
        inputs = make_inputs(n, length)
        floor_s, _ = plain_sum(list(inputs.values()))
        floor_ms = floor_s * 1e3
        t = n // 2 + 1
        for rate in rates:
            dropped = list(inputs)[1 : 1 + round(rate * n)]
            log(f"secagg n={n} L={length} dropout={rate:.0%} ...")
            wire = ours(inputs, t, dropped, wire=True)
            compute = ours(inputs, t, dropped, wire=False)
            case = {
                "n": n,
                "threshold": t,
                "dropout": rate,
                "dropped": len(dropped),
                **wire,
                "client_ms_mean_compute_only": compute["client_ms_mean"],
                "server_ms_compute_only": compute["server_ms"],
                "plain_sum_ms": round(floor_ms, 3),
                "server_x_plain_sum": round(wire["server_ms"] / floor_ms, 1),
                "client_x_plain_sum": round(wire["client_ms_mean"] / floor_ms, 1),
                "correct": wire["correct"] and compute["correct"],
            }
            cases.append(case)
            if flwr_version and rate == 0.1:
                log(f"flwr   n={n} L={length} dropout={rate:.0%} ...")
                theirs = flower(inputs, t, dropped)
                flwr_cases.append(
                    {
                        "n": n,
                        "dropout": rate,
                        **theirs,
                        "ours_client_ms_mean_compute_only": compute["client_ms_mean"],
                        "ours_server_ms_compute_only": compute["server_ms"],
                        "client_speedup_vs_flwr": round(theirs["client_ms_mean"] / compute["client_ms_mean"], 1),
                        "server_speedup_vs_flwr": round(theirs["server_ms"] / compute["server_ms"], 1),
                    }
                )
    gateway: Any = gateway_rounds(quick) if gateway_figure else "skipped (--no-gateway)"
    cases_ok = not gateway_figure or all(c["correct"] for c in gateway["cases"])
    at_100 = [c for c in cases if c["n"] == 100]
    goals: dict[str, Any] = {
        "client_ms_at_n100": GOAL_CLIENT_MS_N100,
        "server_ms_at_n100_10pct_dropout": GOAL_SERVER_MS_N100_10PCT,
    }
    if at_100:
        goals["client_met"] = all(c["client_ms_mean"] <= GOAL_CLIENT_MS_N100 for c in at_100)
        goals["server_met"] = all(c["server_ms"] <= GOAL_SERVER_MS_N100_10PCT for c in at_100 if c["dropout"] == 0.1)
    flwr_report: Any
    if flwr_version is None:
        flwr_report = "flwr not installed"
    else:
        flwr_report = {
            "version": flwr_version,
            "what": "Flower SecAgg+ primitives on the same inputs: SECP384R1 ECDH+HKDF, pycryptodome Shamir, "
            "Fernet envelopes, MT19937 masks seeded with 32 bits; no messaging",
            "cases": flwr_cases,
        }
    return {
        "bench": "secagg",
        "mode": "quick" if quick else "full",
        "vector_length": length,
        "modulus_bits": 32,
        "dropout_stage": "after share_keys (before masked_input)",
        "timing": "per party wall clock summed over all stages; headline includes JSON/base64 (de)serialisation",
        "cpu_count": os.cpu_count(),
        "cases": cases,
        "goals": goals,
        "all_correct": all(c["correct"] for c in cases) and cases_ok,
        "flwr": flwr_report,
        "gateway": gateway,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="n = 10, 50 and L = 10 000")
    parser.add_argument("--no-gateway", action="store_true",
                        help="skip the HTTP figure (for an environment with only mpc's and flwr's dependencies)")
    args = parser.parse_args()
    with contextlib.redirect_stdout(sys.stderr):
        report = run(args.quick, gateway_figure=not args.no_gateway)
    print(json.dumps(report, separators=(",", ":")))
    return 0 if report["all_correct"] else 1


if __name__ == "__main__":
    sys.exit(main())
