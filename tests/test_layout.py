"""The package's shape (ris_lite/README.md): no import cycle, no import against the layering of
its folders, small modules and a small training loop."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ris_lite"

#: what each folder (or top-level module) may import from the rest of ris_lite
ALLOWED = {
    "precision": set(),
    "device": set(),
    "viz": set(),
    "data": {"precision", "device"},
    "model": {"precision", "device"},
    "evaluation": {"precision", "device", "data", "model"},
    "pretrained": {"precision", "device", "model"},
    "training": {"precision", "device", "data", "model", "pretrained"},
    "cli": {"precision", "device", "viz", "data", "model", "evaluation", "pretrained", "training"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules():
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set) -> set:
    """Every ris_lite module ``path`` imports, at module level or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # ``from pkg import mod`` imports a module; ``from mod import name`` the module itself
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def graph():
    mods = modules()
    return {m: imports_of(p, set(mods)) for m, p in mods.items()}


def part(module: str) -> str:
    """``ris_lite.model.ris`` -> ``model``; ``ris_lite.precision`` -> ``precision``."""
    return module.split(".")[1] if module.count(".") else ""


def test_the_walker_sees_imports():
    g = graph()
    assert "ris_lite.model.kinds" in g["ris_lite.training.trainer"]
    assert "ris_lite.cli.evaluate" in g["ris_lite.cli"]  # ``from . import evaluate``
    assert "ris_lite.precision" in g["ris_lite.model.ris"]


def test_no_import_cycle():
    g = graph()
    state = {}

    def visit(m, path):
        state[m] = "open"
        for n in sorted(g[m]):
            if state.get(n) == "open":
                cycle = path[path.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n, path + [n])
        state[m] = "done"

    for m in sorted(g):
        if m not in state:
            visit(m, [m])


def test_no_upward_or_sideways_import_between_folders():
    bad = []
    for m, targets in graph().items():
        here = part(m)
        if here in ("", "__main__"):  # the package root re-exports everything
            continue
        for t in targets:
            there = part(t)
            if there != here and there not in ALLOWED[here]:
                bad.append(f"{m} imports {t}")
    assert not bad, "imports against the layering of ris_lite/README.md:\n" + "\n".join(sorted(bad))


def test_every_folder_and_module_is_placed():
    assert {part(m) for m in modules()} - {"", "__main__"} == set(ALLOWED)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: module_name(p))
def test_modules_stay_small(path):
    assert len(path.read_text().splitlines()) <= 400, f"{path.name} is over 400 lines: split it by idea"


def test_the_training_loop_is_short():
    tree = ast.parse((PACKAGE / "training" / "trainer.py").read_text())
    trainer = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Trainer")
    assert trainer.end_lineno - trainer.lineno + 1 < 200
