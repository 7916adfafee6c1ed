"""docker/compose.yaml and docker/Dockerfile name only what exists: every `veilbox` command and option a service
runs is one the CLI has, every VEILBOX_* variable is a setting (gateway.settings.Settings), the settings each
service gets validate (no unsafe combination), and the topology is the documented one (docs/deploy.md
"Topology"). No container runtime needed: the files are parsed, not run."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import typer.main

from gateway.settings import Settings
from veilbox.cli import app

yaml = pytest.importorskip("yaml")

DOCKER = Path(__file__).resolve().parents[3] / "docker"
SETTINGS = {f"VEILBOX_{name.upper()}" for name in Settings.model_fields}


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _veilbox_argv(service: dict[str, Any]) -> list[str] | None:
    """The `veilbox …` arguments a service runs (image entrypoint `veilbox`, or `veilbox` inside a shell line)."""
    if service.get("image", "").startswith("veilbox:"):
        cmd = service.get("command")
        if service.get("entrypoint"):  # a shell line: the `veilbox` call inside it
            line = " ".join(cmd)
            found = re.search(r"\bveilbox ([^;&|]+)", line)
            return found.group(1).split() if found else None
        return list(cmd) if cmd else ["serve", "--host", "0.0.0.0", "--port", "8000"]
    return None


def _check_argv(argv: list[str]) -> None:
    group: Any = typer.main.get_command(app)
    cmd = group.commands.get(argv[0])
    assert cmd is not None, f"no `veilbox {argv[0]}`"
    opts = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    for arg in argv[1:]:
        if arg.startswith("-"):
            assert arg in opts, f"`veilbox {argv[0]}` has no option {arg}"
    cmd.make_context(f"veilbox {argv[0]}", list(argv[1:]), resilient_parsing=False)  # parses (types, ranges)


def test_services_form_the_documented_topology() -> None:
    services = _compose()["services"]
    assert {"postgres", "init", "gateway-1", "gateway-2", "worker-1", "worker-2", "proxy", "spark-master",
            "spark-worker"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:15")
    assert all(services[s]["image"].startswith("apache/spark:") for s in ("spark-master", "spark-worker"))
    for gw in ("gateway-1", "gateway-2"):
        assert _veilbox_argv(services[gw])[:1] == ["serve"]
        assert "--no-embedded-worker" in services[gw]["command"]
    for w in ("worker-1", "worker-2"):
        assert _veilbox_argv(services[w])[:1] == ["worker"]
    conf = (DOCKER / "nginx.conf").read_text()
    assert "gateway-1:8000" in conf and "gateway-2:8000" in conf and "ssl_certificate" in conf
    # every process sees the same home parts; keys come from their own volume
    mounts = {v.split(":")[1] for v in services["gateway-1"]["volumes"]}
    assert {"/srv/veilbox/data", "/srv/veilbox/models", "/srv/veilbox/work", "/srv/veilbox/keys"} <= mounts
    for name in ("gateway-1", "gateway-2", "worker-1", "worker-2", "init"):
        assert services[name]["volumes"] == services["gateway-1"]["volumes"]
        assert services[name]["pid"] == "host"  # temporary-file sweeps judge writers by process id


def test_every_veilbox_command_exists() -> None:
    seen = []
    for name, service in _compose()["services"].items():
        argv = _veilbox_argv(service)
        if argv is not None:
            _check_argv(argv)
            seen.append(argv[0])
    assert {"init", "serve", "worker"} <= set(seen)
    # the image's default command too
    cmd = re.search(r"^CMD \[(.*)\]$", (DOCKER / "Dockerfile").read_text(), re.M)
    assert cmd is not None
    _check_argv([a.strip().strip('"') for a in cmd.group(1).split(",")])


def test_every_veilbox_setting_exists_and_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, service in _compose()["services"].items():
        env = service.get("environment") or {}
        if not isinstance(env, dict):
            env = dict(e.split("=", 1) for e in env)
        named = {k for k in env if k.startswith("VEILBOX_")}
        assert named <= SETTINGS, f"{name}: unknown settings {sorted(named - SETTINGS)}"
        if not named:
            continue
        for key in list(os.environ):
            if key.startswith("VEILBOX_"):
                monkeypatch.delenv(key)
        for k in named:
            value = re.sub(r"\$\{[^}]*\}", "secret", str(env[k]))
            monkeypatch.setenv(k, value)
        argv = _veilbox_argv(service) or []
        given = {"host": argv[argv.index("--host") + 1]} if "--host" in argv else {}
        s = Settings(**given)  # validates: types, ranges, the unsafe combinations (_refuse_unsafe: host vs TLS)
        assert str(s.home) == "/srv/veilbox"
    text = (DOCKER / "Dockerfile").read_text() + (DOCKER / "compose.yaml").read_text()
    named_anywhere = set(re.findall(r"\bVEILBOX_[A-Z_]+\b", text))
    assert named_anywhere <= SETTINGS, sorted(named_anywhere - SETTINGS)


def test_image_runs_as_non_root_with_a_ready_healthcheck() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim-bookworm" in text
    assert re.search(r"^USER veilbox", text, re.M)
    assert "bubblewrap" in text and "openjdk-17-jre-headless" in text
    assert "torch==2.13.0" in text and text.index("torch==2.13.0") < text.index("pip install '.[spark]'")
    health = re.search(r"HEALTHCHECK[^\n]*\\\n\s*CMD (\[.*\])", text)
    assert health is not None and "/ready" in health.group(1) and "urllib" in health.group(1)
    assert "EXPOSE 8000" in text
