"""`/docs` and `/redoc` work without internet: a gateway started in a closed network namespace (loopback only) serves
both pages, the pages reference only local assets, and those assets are served (gateway/routes/docs.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

CHILD = textwrap.dedent(
    """
    import json, re, socket, sys, tempfile
    from pathlib import Path

    import httpx

    from gateway.context import init_home, open_context
    from gateway.server import BackgroundServer
    from gateway.settings import Settings

    try:  # the namespace is closed: nothing outside loopback is reachable
        socket.create_connection(("1.1.1.1", 443), timeout=2).close()
        outside = True
    except OSError:
        outside = False
    home = Path(tempfile.mkdtemp()) / "home"
    settings = Settings(home=home, latency_bucket_ms=0, env="test", worker=False)
    init_home(settings)
    ctx = open_context(settings)
    report = {"outside": outside, "pages": {}, "assets": {}}
    with BackgroundServer(ctx) as srv, httpx.Client(base_url=srv.url, timeout=30) as http:
        for page in ("/docs", "/redoc"):
            r = http.get(page)
            refs = re.findall(r'(?:src|href)\\s*=\\s*["\\']([^"\\']+)["\\']', r.text)
            refs += re.findall(r'url\\s*:\\s*["\\']([^"\\']+)["\\']', r.text)
            report["pages"][page] = {"status": r.status_code, "refs": refs}
            for ref in refs:
                if ref.startswith("/") and not ref.startswith("//") and ref != "/openapi.json":
                    a = http.get(ref)
                    report["assets"][ref] = {"status": a.status_code, "bytes": len(a.content)}
        report["openapi"] = http.get("/openapi.json").status_code
    ctx.close()
    print(json.dumps(report))
    """
)


def test_docs_and_redoc_are_served_from_bundled_assets_without_network() -> None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("unshare/ip missing: cannot close the network namespace")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    cmd = ["unshare", "-n"] if probe.returncode == 0 else ["unshare", "-rn"]
    if subprocess.run([*cmd, "true"], capture_output=True).returncode != 0:
        pytest.skip("network namespaces are not available here")
    r = subprocess.run(
        [*cmd, "sh", "-c", 'ip link set lo up && exec "$0" -c "$1"', sys.executable, CHILD],
        capture_output=True,
        text=True,
        timeout=900,  # a guard against a hang only: the child imports the whole service, slow on a loaded host
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["outside"] is False
    assert report["openapi"] == 200
    for page in ("/docs", "/redoc"):
        info = report["pages"][page]
        assert info["status"] == 200
        assert info["refs"], f"{page} references no assets"
        for ref in info["refs"]:
            assert ref.startswith("/") and not ref.startswith("//"), f"{page} references {ref}"
    js = [ref for ref in report["assets"] if ref.endswith(".js")]
    assert {"/docs/static/swagger-ui-bundle.js", "/docs/static/redoc.standalone.js"} <= set(js)
    for ref, a in report["assets"].items():
        assert a["status"] == 200 and a["bytes"] > 1000, (ref, a)
