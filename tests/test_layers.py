"""The package's layers (docs/architecture.md): every import of ``tuning`` goes down, never up or sideways.

Read from the source with ``ast``, so an import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "tuning"
# Bottom first. A room may import its own modules and any room of a lower layer; rooms of one layer are
# independent of each other.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors"}),
    frozenset({"files"}),
    frozenset({"config"}),
    frozenset({"data", "graph"}),
    frozenset({"measure"}),
    frozenset({"inc", "external"}),
    frozenset({"search"}),
    frozenset({"report", "gate"}),
    frozenset({"pipeline"}),
    frozenset({"cli"}),
    frozenset({"__main__"}),
)
LAYER_OF = {room: depth for depth, rooms in enumerate(LAYERS) for room in rooms}


def room_of_module(dotted: str) -> str:
    """``tuning.measure.benchmark`` -> ``measure``; ``tuning.pipeline`` -> ``pipeline``."""
    return dotted.split(".")[1]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("tuning."):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.module == "tuning":
            found.extend((node.lineno, f"tuning.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names if alias.name.startswith("tuning."))
    return found


def source_files() -> list[Path]:
    return sorted(p for p in PACKAGE_ROOT.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE_ROOT)


def room_of_file(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT).parts
    return parts[0] if len(parts) > 1 else path.stem


def test_every_room_has_a_layer() -> None:
    rooms = {room_of_file(path) for path in source_files()}
    assert rooms <= set(LAYER_OF), f"rooms without a layer: {sorted(rooms - set(LAYER_OF))}"


def test_every_import_goes_down_the_layers() -> None:
    upward = []
    for path in source_files():
        room = room_of_file(path)
        for line, module in imported_modules(path):
            target = room_of_module(module)
            if target != room and LAYER_OF[target] >= LAYER_OF[room]:
                upward.append(f"{path.relative_to(PACKAGE_ROOT.parent)}:{line} {room} imports {module}")
    assert upward == []


def test_the_reader_sees_imports_inside_functions_and_from_the_package(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom tuning import pipeline\ndef f():\n    from tuning.search.latency import x\n")
    assert sorted(imported_modules(module)) == [(2, "tuning.pipeline"), (4, "tuning.search.latency")]


def test_no_module_is_too_long_to_read() -> None:
    long = {str(p.relative_to(PACKAGE_ROOT)): n for p in source_files() if (n := len(p.read_text().splitlines())) > 420}
    assert long == {}
