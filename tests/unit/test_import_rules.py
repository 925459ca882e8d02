"""Architecture rule 1 as a test: who may import whom (read with ``ast``, nothing is imported).

- An adapter (``dicom_scp``, ``hl7_ingest``, ``web``) never imports another adapter.
- ``app/`` never imports an adapter, except the composition root (``app.runtime``).
- No adapter talks to the database directly (``sqlalchemy``/``sqlmodel``), except the modules of
  an allow-list that may only shrink.
- A test module imports shared helpers from ``tests.support`` only, never another test module or
  a conftest.py (conftest.py files hand out fixtures through pytest, not through imports).

Every ``import``/``from`` statement counts, wherever it stands (functions, ``TYPE_CHECKING``
blocks), and so does ``importlib.import_module("...")`` with a literal name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT, TESTS_DIR

ADAPTERS = frozenset({"dicom_scp", "hl7_ingest", "web"})
CORE = "app"
COMPOSITION_ROOT = frozenset({"app.runtime"})
DATABASE_LIBRARIES = frozenset({"sqlalchemy", "sqlmodel"})
# Adapter modules that still use SQLAlchemy themselves. The list may only shrink: a module
# listed here that no longer imports it fails the test until it is removed. (Empty since HL7
# acceptance moved to app.services.hl7_accept.)
DATABASE_ALLOWED: frozenset[str] = frozenset()
TEST_HELPERS = "tests.support"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted and absolute
    line: int

    def __str__(self) -> str:
        return f"{self.module} (line {self.line}) imports {self.target}"


def top(name: str) -> str:
    return name.split(".", 1)[0]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute target of ``from <level dots><name> import ...`` inside ``module``."""
    if level == 0:
        return name or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([name] if name else [])])


def imports_in(source: str, module: str, *, is_package: bool = False) -> Iterator[Import]:
    """Every module ``source`` imports; ``from x import y`` gives ``x`` and ``x.y``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            yield Import(module, base, node.lineno)
            for alias in node.names:
                if alias.name != "*":
                    target = f"{base}.{alias.name}" if base else alias.name
                    yield Import(module, target, node.lineno)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in {"import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield Import(module, node.args[0].value, node.lineno)


def sources(*folders: str) -> dict[str, tuple[str, bool]]:
    """Module name → (source, is a package) for every ``*.py`` under the given folders."""
    found = {}
    for folder in folders:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            found[module_name(path, REPO_ROOT)] = (
                path.read_text(encoding="utf-8"),
                path.name == "__init__.py",
            )
    return found


def all_imports(modules: Mapping[str, tuple[str, bool]]) -> list[Import]:
    return [
        found
        for name, (source, is_package) in modules.items()
        for found in imports_in(source, name, is_package=is_package)
    ]


def layer_violations(imports: list[Import]) -> list[str]:
    """Adapter → other adapter, and core → adapter outside the composition root."""
    bad = []
    seen = set()
    for found in imports:
        source, target = top(found.module), top(found.target)
        if target not in ADAPTERS or target == source or (found.module, found.line) in seen:
            continue
        seen.add((found.module, found.line))
        if source in ADAPTERS:
            bad.append(f"{found}: adapters never import each other")
        elif source == CORE and found.module not in COMPOSITION_ROOT:
            bad.append(f"{found}: only the composition root {sorted(COMPOSITION_ROOT)} may")
    return bad


def database_users(imports: list[Import]) -> set[str]:
    """Adapter modules that import SQLAlchemy or SQLModel themselves."""
    return {
        found.module
        for found in imports
        if top(found.module) in ADAPTERS and top(found.target) in DATABASE_LIBRARIES
    }


def helper_import_violations(imports: list[Import]) -> list[Import]:
    """Imports of ``tests.*`` that do not target ``tests.support``."""
    return [
        found
        for found in imports
        if top(found.target) == "tests"
        and found.target != "tests"  # ``from tests import x``: judged by its ``tests.x``
        and found.target != TEST_HELPERS
        and not found.target.startswith(TEST_HELPERS + ".")
    ]


@pytest.fixture(scope="module")
def product_imports() -> list[Import]:
    return all_imports(sources(CORE, *sorted(ADAPTERS)))


@pytest.fixture(scope="module")
def tests_imports() -> list[Import]:
    modules = {
        "tests." + module_name(path, TESTS_DIR): (path.read_text(encoding="utf-8"), False)
        for path in sorted(TESTS_DIR.rglob("*.py"))
        if "node_modules" not in path.parts
    }
    return all_imports(modules)


def test_the_walker_sees_the_whole_product(product_imports: list[Import]) -> None:
    modules = {found.module for found in product_imports}
    assert {"app.runtime", "app.cli", "dicom_scp.server", "hl7_ingest.server"} <= modules
    assert any(found.target.startswith("dicom_scp.") for found in product_imports)


def test_adapters_and_core_respect_the_layers(product_imports: list[Import]) -> None:
    bad = layer_violations(product_imports)
    assert not bad, "\n".join(bad)


def test_no_new_adapter_talks_to_the_database(product_imports: list[Import]) -> None:
    new = database_users(product_imports) - DATABASE_ALLOWED
    assert not new, f"{sorted(new)}: adapters call app/services, not {sorted(DATABASE_LIBRARIES)}"


def test_the_database_allow_list_only_shrinks(product_imports: list[Import]) -> None:
    stale = DATABASE_ALLOWED - database_users(product_imports)
    assert not stale, f"{sorted(stale)} no longer import SQLAlchemy: remove them from the list"


def test_test_modules_import_helpers_from_tests_support_only(
    tests_imports: list[Import],
) -> None:
    assert any(found.target.startswith(TEST_HELPERS + ".") for found in tests_imports)
    bad = helper_import_violations(tests_imports)
    assert not bad, f"import shared helpers from {TEST_HELPERS}: " + "; ".join(map(str, bad))


# --- the checker itself: each rule catches a synthetic violation ---------------------------


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("dicom_scp.fake", "def f():\n    from hl7_ingest import mllp\n"),
        ("web.fake", "import dicom_scp.server as server\n"),
        ("hl7_ingest.fake", "if TYPE_CHECKING:\n    from web.pages import Page\n"),
        ("app.services.fake", "from dicom_scp.status import DimseStatus\n"),
        ("app.cli", "import importlib\nimportlib.import_module('dicom_scp.wlimport')\n"),
        ("app.services", "import hl7_ingest\n"),
    ],
)
def test_layer_check_catches_a_violation(module: str, source: str) -> None:
    found = list(imports_in(source, module))
    assert layer_violations(found), found


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("app.runtime", "from dicom_scp.server import DicomServer\n"),
        ("dicom_scp.server", "from . import handlers\nfrom .status import DimseStatus\n"),
        ("hl7_ingest.server", "from app.services import orders\n"),
    ],
)
def test_layer_check_allows_the_composition_root_and_the_core(module: str, source: str) -> None:
    assert layer_violations(list(imports_in(source, module))) == []


def test_relative_imports_resolve_to_absolute_modules() -> None:
    found = {i.target for i in imports_in("from ..status import X\n", "dicom_scp.sub.mod")}
    assert found == {"dicom_scp.status", "dicom_scp.status.X"}
    found = {i.target for i in imports_in("from . import y\n", "web", is_package=True)}
    assert found == {"web", "web.y"}


def test_database_check_catches_an_adapter_using_sqlalchemy() -> None:
    source = "def f():\n    from sqlmodel import select\nimport sqlalchemy.exc\n"
    assert database_users(list(imports_in(source, "dicom_scp.fake"))) == {"dicom_scp.fake"}
    assert database_users(list(imports_in(source, "app.services.fake"))) == set()


def test_tests_check_catches_a_test_module_importing_another() -> None:
    conftest, test_module = "tests.conftest", "tests.adapter.test_find_scp"
    source = (
        f"from {conftest} import IN_CI\n"
        f"from {test_module} import Scp\n"
        "import tests.interop.conftest\n"
        "from tests.support.items import mwl_item\n"
    )
    found = list(imports_in(source, "tests.unit.test_fake"))
    assert {bad.line for bad in helper_import_violations(found)} == {1, 2, 3}
