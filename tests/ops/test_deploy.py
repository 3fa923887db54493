"""The deployment files: the compose file validates, the Dockerfile builds where docker runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from btkit.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_runs_live_and_serve_with_the_dump_volume_and_env_file() -> None:
    services = compose()["services"]
    assert {"live", "serve", "redis"} <= set(services)
    for name in ("live", "serve"):
        svc = services[name]
        assert "./dump:/bot/dump" in svc["volumes"], name
        assert svc["env_file"] == "bot.env", name
        assert "profiles" not in svc  # always on
        args = build_parser().parse_args(svc["command"])  # the commands are real btkit command lines
        assert args.dump_dir == "/bot/dump"
    assert build_parser().parse_args(services["live"]["command"]).verb in ("paper", "live")
    serve = build_parser().parse_args(services["serve"]["command"])
    assert serve.verb == "serve" and serve.host == "0.0.0.0" and not serve.allow_control
    assert all(p.startswith("127.0.0.1:") for p in services["serve"]["ports"])  # loopback on the host
    assert services["redis"]["profiles"] == ["redis"]  # optional: docker compose --profile redis up
    assert "healthcheck" in services["live"]
    example = (ROOT / "bot.env.example").read_text()
    assert "BTKIT_SERVE_TOKEN=" in example and "BTKIT_TELEGRAM_TOKEN=" in example
    assert "bot.env" in (ROOT / ".gitignore").read_text().split()


def test_dockerfile_is_slim_non_root_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines()]
    assert all("-slim" in line for line in lines if line.startswith("FROM "))
    user = [line for line in lines if line.startswith("USER ")]
    assert user and user[-1] not in ("USER root", "USER 0")
    assert any(line.startswith("HEALTHCHECK ") for line in lines)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"**/.venv", "**/dump", ".git", ".env"} <= set(ignored)


def _docker_reason() -> str | None:
    if shutil.which("docker") is None:
        return "docker is not installed"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return "the docker daemon is not reachable (" + (probe.stderr.strip().splitlines() or ["?"])[-1] + ")"
    return None


def test_docker_build() -> None:
    reason = _docker_reason()
    if reason is not None:
        print(f"skipping docker build: {reason}")
        pytest.skip(reason)
    proc = subprocess.run(
        ["docker", "build", "-t", "btkit:test", str(ROOT)], capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = subprocess.run(["docker", "run", "--rm", "btkit:test", "--version"], capture_output=True, text=True)
    assert "btkit-telegram" in out.stdout
    user = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "id", "btkit:test", "-u"], capture_output=True, text=True
    )
    assert user.stdout.strip() != "0"
