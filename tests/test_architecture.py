"""The dependency rules of README.md's "Architecture" section, checked on the import statements."""

import ast
import os

import pytest
from helpers import REPO

TRAINER = os.path.join(REPO, "trainer")


def trainer_modules():
    """{module name relative to trainer (`data.sources`, `run`, ...): its file}."""
    modules = {}
    for folder, _, files in os.walk(TRAINER):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                relative = os.path.relpath(path, TRAINER)[: -len(".py")].replace(os.sep, ".")
                modules[relative.removesuffix(".__init__")] = path
    return modules


def imported_trainer_modules(path):
    """The trainer modules `path` imports (`from trainer import x`, `from trainer.x import y`, `import trainer.x`)."""
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "trainer":
            base = node.module.split(".")[1:]
            if base:
                found.add(".".join(base))
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".", 1)[1] for a in node.names if a.name.startswith("trainer."))
    return found


def top(module):
    return module.split(".")[0]


# (modules whose name starts with one of these, must never import a module starting with one of these)
RULES = [
    ("data", ("run", "train", "steps", "evaluation", "checkpoint", "reporting", "models", "export")),
    ("checkpoint", ("metrics", "reporting", "evaluation", "run", "train")),
    ("evaluation", ("reporting", "paths", "checkpoint", "run", "train")),
    ("metrics", ("reporting", "checkpoint", "evaluation", "run", "train", "data")),
    ("reporting", ("run", "train", "evaluation", "checkpoint")),
    ("paths", ("run", "train", "data", "models", "checkpoint", "reporting", "evaluation", "metrics", "config")),
    ("steps", ("run", "train", "reporting", "checkpoint", "evaluation")),
]


@pytest.mark.parametrize("owner, forbidden", RULES, ids=[rule[0] for rule in RULES])
def test_dependency_rule(owner, forbidden):
    """A module of `owner` imports no module of `forbidden`."""
    breaches = []
    for module, path in trainer_modules().items():
        if top(module) != owner:
            continue
        for imported in imported_trainer_modules(path):
            if top(imported) in forbidden:
                breaches.append(f"{module} imports {imported}")
    assert not breaches, breaches


def test_only_main_and_flags_read_absl_flags():
    """Flags are read at the entry point only; everything else gets the Config."""
    readers = []
    for module, path in trainer_modules().items():
        source = open(path).read()
        if "flags.FLAGS" in source or "FLAGS." in source:
            readers.append(module)
    assert set(readers) <= {"main", "flags", "prepare"}, readers


def test_files_are_written_through_paths():
    """No module but trainer.paths opens a file for writing: every write is atomic and works on gs://."""
    writers = []
    for module, path in trainer_modules().items():
        if module == "paths":
            continue
        for node in ast.walk(ast.parse(open(path).read())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", "") or getattr(node.func, "attr", "")
            mode = next((a.value for a in node.args[1:2] if isinstance(a, ast.Constant)), "")
            if name in ("open", "GFile") and isinstance(mode, str) and ("w" in mode or "a" in mode):
                writers.append(f"{module}:{node.lineno}")
    assert not writers, writers
