"""`make check` (the fast tier: `pytest -m "not e2e"`) holds no test that starts a process.

A test that runs the trainer, the launcher or any other program (directly, through a helper of its
module, or through one of its fixtures) must be marked `e2e`, so that the fast tier stays fast.
"""

import ast
import os

import pytest
from helpers import REPO

TESTS = os.path.join(REPO, "tests")
# What starts a process: the shared helpers of helpers.py, and subprocess itself.
STARTS_A_PROCESS = {
    "run_trainer",
    "run_local_workers",
    "start_trainer",
    "start_workers",
    "kill_at",
    "resumes_exactly",
    "score_in_fresh_process",
    "Popen",
    "check_output",
    "check_call",
}


def _called_names(node):
    names = set()
    for call in ast.walk(node):
        if isinstance(call, ast.Call):
            function = call.func
            name = getattr(function, "id", None) or getattr(function, "attr", None)
            if (
                name == "run"
                and isinstance(function, ast.Attribute)
                and getattr(function.value, "id", "") == "subprocess"
            ):
                name = "subprocess.run"
            if name:
                names.add(name)
    return names


def _marked_e2e(node) -> bool:
    return any("e2e" in ast.unparse(decorator) for decorator in node.decorator_list)


def unmarked_process_tests(path):
    """Tests in `path` that start a process (directly or through a module helper or fixture) but are not e2e."""
    tree = ast.parse(open(path).read())
    if any("pytestmark" in ast.unparse(node) and "e2e" in ast.unparse(node) for node in tree.body):
        return []
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    starting = set()
    changed = True
    while changed:  # Module helpers and fixtures that start a process, transitively.
        changed = False
        for name, node in functions.items():
            if name not in starting and _called_names(node) & (STARTS_A_PROCESS | {"subprocess.run"} | starting):
                starting.add(name)
                changed = True
    found = []
    for name, node in functions.items():
        if not name.startswith("test_") or _marked_e2e(node):
            continue
        if name in starting or any(arg.arg in starting for arg in node.args.args):
            found.append(name)
    return found


@pytest.mark.parametrize("module", sorted(f for f in os.listdir(TESTS) if f.startswith("test_") and f.endswith(".py")))
def test_tests_that_start_a_process_are_marked_e2e(module):
    assert not unmarked_process_tests(os.path.join(TESTS, module)), "mark these @pytest.mark.e2e"
