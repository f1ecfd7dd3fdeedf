"""The README and docs/: links that resolve, a README that stays short, a flag table that lists every flag."""

import glob
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
MAX_README_LINES = 320

# Written on other branches (the metrics and Kubernetes guides); until those are merged, links to
# them may point at nothing here. Links to them are still checked once the files exist.
WRITTEN_ELSEWHERE = {"docs/metrics.md", "docs/kubernetes.md"}
# Flags the README documents that other branches are adding (--ignore_columns: the data package;
# the synthetic text settings: flags generated from every config field); drop a name from here once
# its flag is defined.
FLAGS_BEING_ADDED = set()

_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def _markdown_files():
    return [README] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))


def _prose(path):
    """The file's text without fenced code blocks (a link inside one is an example, not a link)."""
    with open(path, encoding="utf-8") as f:
        return _FENCE.sub("", f.read())


def _anchors(path):
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    anchors, seen = set(), {}
    for heading in _HEADING.findall(_prose(path)):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links(path):
    """(target file relative to the repo, or None for the file itself; anchor or '') of each local link."""
    for target in _LINK.findall(_CODE.sub("", _prose(path))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        if not file_part:
            yield None, anchor
            continue
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part))
        yield os.path.relpath(resolved, REPO), anchor


def test_every_local_link_in_the_readme_and_docs_resolves():
    broken = []
    for path in _markdown_files():
        name = os.path.relpath(path, REPO)
        for target, anchor in _links(path):
            target_path = path if target is None else os.path.join(REPO, target)
            if not os.path.exists(target_path):
                if target not in WRITTEN_ELSEWHERE:
                    broken.append(f"{name}: {target} does not exist")
                continue
            if anchor and target_path.endswith(".md") and anchor not in _anchors(target_path):
                broken.append(f"{name}: {target or name} has no heading #{anchor}")
    assert not broken, "\n".join(broken)


def test_readme_stays_a_door_not_the_house():
    """STYLE.md point 15: the README is at most MAX_README_LINES lines; the rest lives in docs/."""
    with open(README, encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def _defined_trainer_flags():
    """The trainer's flag names, from its own --helpfull (the sections of modules under trainer)."""
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "--helpfull"],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=REPO),
        capture_output=True,
        text=True,
        timeout=120,
    )
    names, in_trainer = set(), False
    for line in result.stdout.splitlines():
        if line and not line.startswith(" "):
            in_trainer = line.startswith("trainer")
        elif in_trainer:
            match = re.match(r"  (?:-\w+,)?--(?:\[no\])?(\w+):", line)
            if match:
                names.add(match.group(1))
    assert names, f"no trainer flags in --helpfull:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
    return names


def _readme_flag_table():
    """Every `--name` in the first cell of the README's flag table rows."""
    section = _prose(README).split("\n## Flags", 1)[1].split("\n## ", 1)[0]
    cells = [row.split("|")[1] for row in section.splitlines() if row.startswith("| `--")]
    return {name for cell in cells for name in re.findall(r"`--(\w+)`", cell)}


@pytest.mark.e2e
def test_readme_flag_table_lists_every_trainer_flag_and_no_other():
    defined, documented = _defined_trainer_flags(), _readme_flag_table()
    assert not defined - documented, f"add to the README's flag table: {sorted(defined - documented)}"
    stale = documented - defined - FLAGS_BEING_ADDED
    assert not stale, f"the README's flag table names flags that do not exist: {sorted(stale)}"
