"""compose.yaml and the Dockerfile: PostgreSQL, a one-shot migration, then the broker."""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from typing import Any

import pytest
import yaml

from app.config import Settings
from tests.support.ci import IN_CI
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
POSTGRES_URL_PREFIX = "postgresql+psycopg://"


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"compose.yaml has no service {name!r}"
    result = services[name]
    assert isinstance(result, dict)
    return result


def environment(name: str) -> dict[str, str]:
    env = service(name).get("environment", {})
    if isinstance(env, list):  # the KEY=value list form
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def command(name: str) -> list[str]:
    cmd = service(name)["command"]
    return cmd.split() if isinstance(cmd, str) else [str(part) for part in cmd]


def published_container_ports(name: str) -> set[int]:
    ports = set()
    for entry in service(name).get("ports", []):
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            ports.add(int(str(entry).rsplit(":", 1)[-1].split("/")[0]))
    return ports


def test_services() -> None:
    assert set(compose()["services"]) == {"postgres", "migrate", "broker"}


def test_postgres_is_checked_with_pg_isready_and_keeps_a_named_volume() -> None:
    postgres = service("postgres")
    assert str(postgres["image"]).startswith("postgres:16")
    assert {"POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB"} <= set(environment("postgres"))
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume = str(postgres["volumes"][0]).split(":")[0]
    assert volume in compose()["volumes"]


def test_migrate_runs_db_upgrade_once_postgres_is_healthy() -> None:
    migrate = service("migrate")
    assert "build" in migrate
    assert command("migrate") == ["mwl-broker", "db", "upgrade"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate.get("restart", "no") == "no"


def test_broker_serves_after_a_successful_migration() -> None:
    broker = service("broker")
    assert "build" in broker
    assert command("broker") == ["mwl-broker", "serve"]
    assert broker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert broker["restart"] == "unless-stopped"


def test_migrate_and_broker_use_the_same_postgres_database() -> None:
    migrate_url = environment("migrate")["BROKER_DATABASE_URL"]
    broker_url = environment("broker")["BROKER_DATABASE_URL"]
    assert migrate_url == broker_url
    assert broker_url.startswith(POSTGRES_URL_PREFIX)
    assert "@postgres:5432/" in broker_url
    assert broker_url.rsplit("/", 1)[-1] == environment("postgres")["POSTGRES_DB"]


def test_broker_publishes_the_default_dicom_and_http_ports() -> None:
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert {
        defaults.dicom_port,
        defaults.hl7_port,
        defaults.http_port,
    } <= published_container_ports("broker")


def test_broker_healthcheck_asks_the_health_endpoint() -> None:
    test = " ".join(service("broker")["healthcheck"]["test"])
    assert "urllib" in test
    assert "http://localhost:8000/api/health" in test


def test_broker_storage_is_a_named_volume() -> None:
    mounts = [str(v) for v in service("broker")["volumes"]]
    assert any(m.endswith(":/app/data/storage") for m in mounts)
    assert any(m.split(":")[0] in compose()["volumes"] for m in mounts)


def test_dockerfile_runs_the_broker_as_a_non_root_user() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()]
    assert [line for line in lines if line.startswith("FROM ")] == ["FROM python:3.11-slim"]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}
    assert 'CMD ["mwl-broker", "serve"]' in lines
    assert "WORKDIR /app" in lines
    exposed = {int(p) for line in lines if line.startswith("EXPOSE ") for p in line.split()[1:]}
    assert published_container_ports("broker") <= exposed


# ---------------------------------------------------------------------------------------------
# The compose file as Docker Compose itself reads it (needs the compose plugin, not an engine)


def compose_cli() -> list[str] | None:
    candidates: list[list[str]] = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for cli in candidates:
        probe = subprocess.run([*cli, "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return cli
    return None


def test_docker_compose_accepts_the_file() -> None:
    cli = compose_cli()
    if cli is None:
        message = "Docker Compose is not installed (neither `docker compose` nor docker-compose)"
        if IN_CI:
            pytest.fail(message + "; .ci/install-test-deps installs Debian's docker-compose")
        pytest.skip(message)
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
