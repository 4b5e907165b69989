# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""ansible-core's ``difference``, ``intersect`` and ``union`` are set operations: their result comes in no order, a
new one in every process (string hashes are randomised). Where the order picks something - the row that takes the
lease, the neighbours that ping, the first of a loop - the choice became a coin toss (twice: the lease row, then the
order of the neighbours' group, found by CI). So a playbook may use them only where the order cannot matter: the
result is sorted or only counted; anything else keeps its order with ``select``/``reject``."""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
SET_FILTER = re.compile(r"\|\s*(difference|intersect|union|symmetric_difference)\s*\(")
ORDER_FREE = re.compile(r"\|\s*(sort|length)\b")


def expressions(text):
    """Every Jinja expression of a YAML file, comment lines left out."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return re.findall(r"\{\{(.*?)\}\}", code, flags=re.DOTALL)


def unordered_uses(text):
    """The set filters of a file whose result is neither sorted nor only counted."""
    found = []
    for expression in expressions(text):
        for match in SET_FILTER.finditer(expression):
            if not ORDER_FREE.search(expression, match.end()):
                found.append(" ".join(expression.split()))
    return found


YAML_FILES = sorted(p for folder in ("playbooks", "roles") for p in (ROOT / folder).rglob("*.yml"))


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_set_filter_decides_an_order(path):
    assert unordered_uses(path.read_text()) == []


@pytest.mark.parametrize("text, bad", [
    ("loop: \"{{ a | difference([b]) }}\"", True),
    ("x: \"{{ a | intersect(b) | first }}\"", True),
    ("x: \"{{ a | union(b)\n      | list }}\"", True),
    ("x: \"{{ a | difference(b) | sort }}\"", False),
    ("x: \"{{ a | difference(b) | length == 0 }}\"", False),
    ("# a comment: {{ a | difference(b) }}", False),
    ("x: \"{{ a | reject('in', b) | list }}\"", False),
    ("x: \"{{ a | sort | difference(b) }}\"", True),
])
def test_the_check_finds_what_it_should(text, bad):
    assert bool(unordered_uses(text)) is bad
