"""compose.yaml, deploy/haproxy.cfg and the Dockerfile: PostgreSQL, a one-shot migration, two
brokers and HAProxy in TCP mode in front of them."""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from typing import Any

import pytest
import yaml

from app.config import Settings
from tests.support.ci import IN_CI
from tests.support.haproxy import HAPROXY_CFG, haproxy_executable, section, sections
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


BROKERS = ("broker-1", "broker-2")
LISTENERS = ("dicom", "hl7", "http")
BALANCER_PORTS = {"dicom": 11112, "hl7": 2575, "http": 8080}


def defaults() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


def broker_ports() -> dict[str, int]:
    settings = defaults()
    return {"dicom": settings.dicom.port, "hl7": settings.hl7.port, "http": settings.http.port}


def test_services() -> None:
    assert set(compose()["services"]) == {"postgres", "migrate", *BROKERS, "haproxy"}


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


@pytest.mark.parametrize("name", BROKERS)
def test_each_broker_serves_after_a_successful_migration(name: str) -> None:
    broker = service(name)
    assert "build" in broker
    assert command(name) == ["mwl-broker", "serve"]
    assert broker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert broker["restart"] == "unless-stopped"


@pytest.mark.parametrize("name", BROKERS)
def test_migrate_and_every_broker_use_the_same_postgres_database(name: str) -> None:
    migrate_url = environment("migrate")["BROKER_DATABASE_URL"]
    broker_url = environment(name)["BROKER_DATABASE_URL"]
    assert migrate_url == broker_url
    assert broker_url.startswith(POSTGRES_URL_PREFIX)
    assert "@postgres:5432/" in broker_url
    assert broker_url.rsplit("/", 1)[-1] == environment("postgres")["POSTGRES_DB"]


@pytest.mark.parametrize("name", BROKERS)
def test_brokers_are_reached_only_through_the_balancer(name: str) -> None:
    assert not service(name).get("ports"), "a broker port published beside the balancer"
    exposed = {int(str(port)) for port in service(name)["expose"]}
    assert set(broker_ports().values()) <= exposed


def test_the_balancer_publishes_dicom_hl7_and_http() -> None:
    assert published_container_ports("haproxy") == set(BALANCER_PORTS.values())
    assert set(service("haproxy")["depends_on"]) == set(BROKERS)


@pytest.mark.parametrize("name", BROKERS)
def test_broker_healthcheck_asks_the_health_endpoint(name: str) -> None:
    test = " ".join(service(name)["healthcheck"]["test"])
    assert "urllib" in test
    assert f"http://localhost:{broker_ports()['http']}/api/health" in test


def test_brokers_share_one_storage_volume() -> None:
    mounts = {name: [str(v) for v in service(name)["volumes"]] for name in BROKERS}
    storage = {m for ms in mounts.values() for m in ms if m.endswith(":/app/data/storage")}
    assert len(storage) == 1, mounts
    assert next(iter(storage)).split(":")[0] in compose()["volumes"]


# ---------------------------------------------------------------------------------------------
# deploy/haproxy.cfg: TCP mode, one frontend per listener, every broker checked on /api/health


def test_the_balancer_runs_the_config_in_the_repository() -> None:
    mounts = [str(v) for v in service("haproxy")["volumes"]]
    assert "./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in mounts
    assert HAPROXY_CFG.is_file()


def test_every_port_is_balanced_in_tcp_mode() -> None:
    assert section("defaults").directives("mode") == [["mode", "tcp"]]
    for part in sections():
        assert part.directives("mode") in ([], [["mode", "tcp"]]), part.name


@pytest.mark.parametrize("listener", LISTENERS)
def test_each_frontend_binds_its_published_port(listener: str) -> None:
    frontend = section("frontend", listener)
    assert frontend.directives("bind") == [["bind", f":{BALANCER_PORTS[listener]}"]]
    assert frontend.directives("default_backend") == [["default_backend", f"brokers_{listener}"]]


@pytest.mark.parametrize("listener", LISTENERS)
def test_each_backend_has_every_broker_on_its_port(listener: str) -> None:
    servers = section("backend", f"brokers_{listener}").directives("server")
    port = broker_ports()[listener]
    assert [words[1:3] for words in servers] == [[name, f"{name}:{port}"] for name in BROKERS]


@pytest.mark.parametrize("listener", LISTENERS)
def test_each_backend_checks_the_brokers_health_endpoint(listener: str) -> None:
    backend = section("backend", f"brokers_{listener}")
    assert backend.directives("option httpchk") == [["option", "httpchk"]]
    [send] = backend.directives("http-check send")
    assert send[send.index("uri") + 1] == "/api/health"
    assert backend.directives("http-check expect") == [["http-check", "expect", "status", "200"]]
    [default_server] = section("defaults").directives("default-server")
    # checked on the HTTP port whatever port the backend balances
    assert default_server[default_server.index("port") + 1] == str(broker_ports()["http"])
    assert "check" in default_server


def test_connections_are_not_sticky() -> None:
    for part in sections():
        assert not part.directives("stick-table") and not part.directives("stick"), part.name
        assert not part.directives("balance source"), part.name


def test_haproxy_accepts_the_config() -> None:
    haproxy = haproxy_executable()
    if haproxy is None:
        message = "haproxy is not installed"
        if IN_CI:
            pytest.fail(message + "; .ci/install-test-deps installs Debian's haproxy")
        pytest.skip(message)
    result = subprocess.run(
        [haproxy, "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "[WARNING]" in line]
    # The broker names resolve only inside the compose network.
    assert all("could not resolve address 'broker-" in line for line in warnings), warnings


def test_dockerfile_runs_the_broker_as_a_non_root_user() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()]
    assert [line for line in lines if line.startswith("FROM ")] == ["FROM python:3.11-slim"]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}
    assert 'CMD ["mwl-broker", "serve"]' in lines
    assert "WORKDIR /app" in lines
    exposed = {int(p) for line in lines if line.startswith("EXPOSE ") for p in line.split()[1:]}
    assert set(broker_ports().values()) <= exposed


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
