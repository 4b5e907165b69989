# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 14 items 4 and 5: what the decision counts and believes.

4. The storm guard counted every fenced mark on the store, also those of hosts outside the cluster (other clusters
   on the same store, hosts removed from the inventory: marks never expire), and so held back a fence it should
   not have held back - or, as marks of foreign hosts left, let through more than max_fence_ratio of the cluster.
5. A BMC status probe that failed (read off, then an error, then off: not confirmed) still gave its last read as
   the power state, and "off" made the host DOWN (R5) - recovered without a confirmed power-off."""

from __future__ import annotations

import pytest

from ansible_collections.kvmha.cluster.plugins.module_utils._decision import decide
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput
from ansible_collections.kvmha.cluster.plugins.module_utils._policy import effective_policy
from ansible_collections.kvmha.cluster.plugins.modules import host_investigate

MEMBERS = ["h1", "h2", "h3", "h4"]


def dead(host="h1", **overrides):
    doc = {"host": host, "cluster": "c1", "observer": {"ok": True}, "mgmt": {"reachable": False},
           "heartbeat": {"status": "stale", "age": 60.0}, "neighbors": {"reachable": 0, "unreachable": 2, "errors": 0},
           "bmc": {"power": "on", "error": None}, "disk_activity": "idle"}
    doc.update(overrides)
    return doc


# ------------------------------------------------------------------------------------------ 4. storm guard


def test_the_storm_guard_counts_only_this_clusters_fenced_marks():
    clusters = {"c1": {"size": 4, "fenced": ["h2", "x7", "old-hv"], "members": MEMBERS}}
    result = decide([dead()], clusters, effective_policy({}), 0.0)
    assert result["actions"]["fence"] == ["h1"] and result["storm_guard"] == {"c1": False}
    assert result["foreign_fenced"] == {"c1": ["old-hv", "x7"]}


def test_this_clusters_own_marks_still_hold_the_guard():
    clusters = {"c1": {"size": 4, "fenced": ["h2", "h3", "x7"], "members": MEMBERS}}
    result = decide([dead()], clusters, effective_policy({}), 0.0)
    assert result["actions"]["fence"] == [] and result["storm_guard"] == {"c1": True}
    assert "2 host(s) already fenced" in result["decisions"]["h1"]["reasons"][-1]


def test_a_count_is_still_accepted_and_has_no_foreign_marks():
    result = decide([dead()], {"c1": {"size": 4, "fenced": 1}}, effective_policy({}), 0.0)
    assert result["actions"]["fence"] == ["h1"] and result["foreign_fenced"] == {}


@pytest.mark.parametrize("info, words", [
    ({"size": 4, "fenced": ["h2", 3], "members": MEMBERS}, "fenced must be a count or a list of host names"),
    ({"size": 4, "fenced": ["h2"], "members": "h1"}, "members must be a list of host names"),
])
def test_bad_fenced_lists_are_clear_errors(info, words):
    with pytest.raises(InvalidInput, match=words):
        decide([dead()], {"c1": info}, effective_policy({}), 0.0)


def test_host_investigate_warns_about_foreign_marks(run_module):
    clusters = {"c1": {"size": 4, "fenced": ["h2", "x7"], "members": MEMBERS}}
    result = run_module(host_investigate, {"hosts": [dead()], "clusters": clusters})
    assert result["actions"]["fence"] == ["h1"] and result["foreign_fenced"] == {"c1": ["x7"]}
    assert any("x7" in str(w) and "not counted" in str(w) for w in result["warnings"])


# ------------------------------------------------------------------------------------------ 5. BMC probe


@pytest.mark.parametrize("error", ["confirm_timeout", "timeout", "unreachable", "bmc_error", "not_run"])
def test_a_power_state_from_a_failed_probe_is_unknown(error):
    decision = decide([dead(bmc={"power": "off", "error": error})], {"c1": {"size": 4}}, effective_policy({}), 0.0)["decisions"]["h1"]
    assert decision["verdict"] == "UNKNOWN" and decision["action"] == "alert"
    assert any("failed" in reason and error in reason for reason in decision["reasons"])


def test_a_failed_probe_never_fences_either():
    decision = decide([dead(bmc={"power": "on", "error": "confirm_timeout"})], {"c1": {"size": 4}},
                      effective_policy({}), 0.0)["decisions"]["h1"]
    assert decision["verdict"] == "UNKNOWN" and decision["action"] == "alert"


def test_a_succeeded_probe_is_believed():
    decision = decide([dead(bmc={"power": "off", "error": None, "probe": "ok"})], {"c1": {"size": 4}},
                      effective_policy({}), 0.0)["decisions"]["h1"]
    assert decision["verdict"] == "DOWN" and decision["action"] == "recover"
