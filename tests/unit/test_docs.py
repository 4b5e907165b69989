# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The documentation states the same defaults and rules as the code."""

from __future__ import annotations

import os
import re

from ansible_collections.kvmha.cluster.plugins.module_utils._decision import RULE_IDS, RULES
from ansible_collections.kvmha.cluster.plugins.module_utils._policy import SETTINGS

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs")


def read(name):
    with open(os.path.join(DOCS, name), encoding="utf-8") as f:
        return f.read()


def _shown(value):
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_operations_policy_table_matches_the_code():
    text = read("OPERATIONS.md")
    table = text.split("<!-- policy-table: begin -->")[1].split("<!-- policy-table: end -->")[0]
    rows = re.findall(r"^\| `(\w+)` \| `([^`]*)` \| (.+) \|$", table, re.M)
    assert [row[0] for row in rows] == list(SETTINGS)
    for key, default, meaning in rows:
        assert default == _shown(SETTINGS[key].default), key
        assert meaning == SETTINGS[key].doc, key


def test_safety_explains_every_rule_and_verdict():
    text = read("SAFETY.md")
    for rule in RULES:
        assert re.search(r"^\| %s \| %s \|" % (re.escape(rule.id), rule.verdict), text, re.M), rule.id
    assert len(RULE_IDS) == len(set(RULE_IDS))


def test_operations_has_a_runbook_row_for_every_verdict():
    text = read("OPERATIONS.md")
    for rule in RULES:
        assert "| %s |" % rule.verdict in text, rule.verdict
