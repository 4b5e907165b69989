# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""cluster_lease, every case both ways: as a module run, and in the controller's process (plugins/action/cluster_lease.py)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.kvmha.cluster.plugins.modules import cluster_lease


@pytest.fixture
def run_module(run_either_way):  # noqa: F811 - every case both ways: a module run, and in the controller's process
    return run_either_way


def lease(run_module, store, owner, **args):
    return run_module(cluster_lease, dict({"store_path": store, "cluster": "lab", "owner": owner}, **args))


def test_second_watchdog_does_not_get_the_lease_and_does_not_fail(run_module, tmp_path):
    store = str(tmp_path)
    assert lease(run_module, store, "run-1")["acquired"] is True
    second = lease(run_module, store, "run-2")
    assert second["acquired"] is False and second["changed"] is False and "failed" not in second
    assert second["holder"]["owner"] == "run-1"
    assert lease(run_module, store, "run-1", state="released")["changed"] is True
    assert lease(run_module, store, "run-2")["acquired"] is True


def test_held_checks_the_fencing_token_and_a_generation_only_renews_never_takes(run_module, tmp_path):
    store = str(tmp_path)
    generation = lease(run_module, store, "run-1")["lease"]["generation"]
    held = lease(run_module, store, "run-1", state="held", generation=generation)
    assert held["acquired"] is True and held["changed"] is False and held["lease"]["generation"] == generation
    renewed = lease(run_module, store, "run-1", generation=generation)
    assert renewed["changed"] is True and renewed["lease"]["generation"] == generation + 1
    stale = lease(run_module, store, "run-1", state="held", generation=generation)  # the token moved on
    assert stale["failed"] is True and stale["error_kind"] == "lease_lost"
    lease(run_module, store, "run-1", state="released")
    again = lease(run_module, store, "run-1", generation=generation + 1)  # released: a renewal must not take it back
    assert again["failed"] is True and again["error_kind"] == "lease_lost"
    assert lease(run_module, store, "run-1", state="held")["error_kind"] == "invalid_input"


def test_lease_check_mode_writes_nothing(run_module, tmp_path):
    result = run_module(cluster_lease, {"store_path": str(tmp_path), "cluster": "lab", "owner": "run-1"}, check_mode=True)
    assert result["changed"] is True and result["acquired"] is True
    assert not os.path.exists(tmp_path / "kvmha")


def test_lease_refuses_hostile_cluster_names(run_module, tmp_path):
    result = run_module(cluster_lease, {"store_path": str(tmp_path), "cluster": "../etc", "owner": "x"})
    assert result["failed"] is True and "invalid cluster name" in result["msg"]
    assert not os.path.exists(tmp_path / "kvmha")
