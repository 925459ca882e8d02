"""deploy/haproxy.cfg read as sections of directives, and rewritten for a local run."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.paths import REPO_ROOT

HAPROXY_CFG = REPO_ROOT / "deploy" / "haproxy.cfg"
SECTION_KINDS = ("global", "defaults", "frontend", "backend", "resolvers", "listen")


@dataclass
class Section:
    kind: str
    name: str
    lines: list[str] = field(default_factory=list)

    def directives(self, keyword: str) -> list[list[str]]:
        """The lines starting with ``keyword`` (a word or words), split into words."""
        words = keyword.split()
        return [line.split() for line in self.lines if line.split()[: len(words)] == words]


def haproxy_executable() -> str | None:
    """Debian puts haproxy in /usr/sbin, which a non-root PATH may lack."""
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")


def sections(path: Path = HAPROXY_CFG) -> list[Section]:
    found: list[Section] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not raw[0].isspace():
            kind, _, name = line.partition(" ")
            assert kind in SECTION_KINDS, f"unknown section {kind!r} in {path}"
            found.append(Section(kind, name.strip()))
        else:
            assert found, f"a directive before any section in {path}"
            found[-1].lines.append(line.strip())
    return found


def section(kind: str, name: str = "") -> Section:
    matches = [s for s in sections() if s.kind == kind and s.name == name]
    assert len(matches) == 1, f"deploy/haproxy.cfg has no single {kind} {name!r}"
    return matches[0]


def local_config(
    listen: dict[str, int], brokers: list[dict[str, int]], host: str = "127.0.0.1"
) -> str:
    """deploy/haproxy.cfg as it would run on one machine: the frontends bind ``listen``
    (``dicom``/``hl7``/``http`` -> port), each backend's servers are ``brokers`` (the same keys:
    their ports) on ``host``, health checks go to each broker's own HTTP port, and Docker's
    resolver is left out. Everything else (modes, checks, balancing) is the file's own."""
    text = HAPROXY_CFG.read_text(encoding="utf-8")
    text = re.sub(r"^resolvers docker\n(?:[ \t]+.*\n|\n)*?(?=\S)", "", text, flags=re.M)
    text = text.replace(" resolvers docker", "").replace(" check port 8000", " check")
    for service, port in listen.items():
        text = re.sub(
            rf"^(frontend {service}\n\s+bind ):\d+", rf"\g<1>{host}:{port}", text, flags=re.M
        )
    out: list[str] = []
    backend = ""
    for line in text.splitlines():
        head = line.split()
        if head[:1] == ["backend"]:
            backend = head[1].removeprefix("brokers_")
        if head[:1] == ["server"]:
            index = int(head[1].rsplit("-", 1)[1]) - 1
            ports = brokers[index]
            line = f"    server {head[1]} {host}:{ports[backend]} check port {ports['http']}"
        out.append(line)
    return "\n".join(out) + "\n"
