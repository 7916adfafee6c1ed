"""The CLI speaks VEILBOX_LANG: zh-CN messages and one-line errors in Chinese, English by default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _veilbox(*args: str, lang: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEILBOX_")}
    return subprocess.run([sys.executable, "-m", "veilbox.cli", *args], capture_output=True, text=True, timeout=300,
                          env={**env, "VEILBOX_LANG": lang, **extra})


def test_init_and_errors_follow_veilbox_lang(tmp_path: Path) -> None:
    zh = _veilbox("init", "--home", str(tmp_path / "zh"), lang="zh_CN.UTF-8")
    assert zh.returncode == 0, zh.stderr
    assert "管理员令牌（只显示这一次）" in zh.stdout and "主密钥" in zh.stdout
    en = _veilbox("init", "--home", str(tmp_path / "en"), lang="en")
    assert en.returncode == 0 and "admin token (shown once)" in en.stdout
    missing = _veilbox("agreement", "propose", str(tmp_path / "nope.json"), lang="zh-CN",
                       VEILBOX_URL="http://127.0.0.1:9", VEILBOX_TOKEN="vbx_x")
    assert missing.returncode != 0 and "不存在" in missing.stderr, missing.stderr


def test_help_follows_veilbox_lang() -> None:
    """Command and option help is translated too: typer reads it at import, after VEILBOX_LANG is known."""
    top = _veilbox("--help", lang="zh-CN", COLUMNS="200")
    assert top.returncode == 0, top.stderr
    assert "面向所有角色的命令行" in top.stdout and "创建服务主目录" in top.stdout  # app help, a command's help
    assert "失败时显示回溯" in top.stdout  # an option's help
    run = _veilbox("query", "run", "--help", lang="zh-CN", COLUMNS="200")
    assert run.returncode == 0, run.stderr
    assert "运行差分隐私查询" in run.stdout and "要消耗的 ε" in run.stdout and "协议标识" in run.stdout
    en = _veilbox("query", "run", "--help", lang="en", COLUMNS="200")
    assert "Run a DP query" in en.stdout and "ε to spend" in en.stdout and "运行差分隐私查询" not in en.stdout
