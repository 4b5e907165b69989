# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every store call of the watchdog is bounded by the policy's store deadline: a site that raises
``store_timeout_s`` for a slow NFS server gets it on the marks and the lease too, not the modules' own 10 s."""

from __future__ import annotations

import pathlib

import pytest
import yaml

PLAYBOOKS = pathlib.Path(__file__).resolve().parents[3] / "playbooks"
STORE_MODULES = ("kvmha.cluster.host_mark", "kvmha.cluster.host_mark_info", "kvmha.cluster.cluster_lease")
POLICY_DEADLINE = "{{ kvmha_policy_effective.store_timeout_s }}"


def tasks_of(items):
    """Every task in a task list, blocks opened (block, rescue and always)."""
    for task in items or []:
        yield task
        for part in ("block", "rescue", "always"):
            yield from tasks_of(task.get(part))


def task_lists():
    """(file name, tasks) of every task file, and of every play of the watchdog (a task of its own: the early lease)."""
    for path in sorted((PLAYBOOKS / "tasks").glob("*.yml")):
        yield path.name, yaml.safe_load(path.read_text())
    for play in yaml.safe_load((PLAYBOOKS / "watchdog.yml").read_text()):
        yield "watchdog.yml", play.get("tasks")


def store_calls():
    for name, tasks in task_lists():
        for task in tasks_of(tasks):
            for module in STORE_MODULES:
                if module in task:
                    yield pytest.param(task[module], id="%s: %s" % (name, task.get("name", module)))


CALLS = list(store_calls())


def test_the_watchdog_makes_store_calls_at_all():
    assert len(CALLS) >= 7  # the lease (take x3, release x2), the marks (clear x2)


@pytest.mark.parametrize("args", CALLS)
def test_each_store_call_has_the_policys_deadline(args):
    assert args.get("deadline_s") == POLICY_DEADLINE
