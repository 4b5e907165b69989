# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What ansible hands the journal callback, as the callback reads it: ``result.task`` (``action``, ``get_vars()``),
``result.host.get_name()``, ``result.result``, and the stats at the end of the play."""

from __future__ import annotations

# The phase playbooks/watchdog.yml runs each module in (kvmha_journal on its plays and imports): a recorded result
# of these modules carries it unless the test says otherwise. test_journal_phases.py checks it against the playbook.
WATCHDOG_PHASES = {
    "kvm_heartbeat": "observe", "host_investigate": "decide", "ipmi_power": "fence", "vm_evacuate": "recover",
    "vm_reconcile": "reconcile", "neighbor_ping": "probe", "vm_disk_activity": "probe", "host_fence": "fence",
}


class FakeHost:
    def __init__(self, name):
        self.name = name

    def get_name(self):
        return self.name


class FakeTask:
    def __init__(self, action, task_vars=None, check_mode=False):
        self.action = action
        self.vars = task_vars or {}
        self.check_mode = check_mode

    def get_vars(self):
        """The task's variables with those of its blocks and imports, where the playbooks set the phase."""
        return dict(self.vars)


WATCHDOG = object()  # FakeResult's phase: the module's phase in the watchdog


class FakeResult:
    """A task result: ``module`` is a kvmha.cluster module's short name or any fully qualified action; ``phase`` is
    the task's kvmha_journal (by default the module's phase in the watchdog; None: the task has none)."""

    def __init__(self, module, host, result, task_vars=None, check_mode=False, phase=WATCHDOG):
        action = module if "." in module else "kvmha.cluster." + module
        if phase is WATCHDOG:
            phase = WATCHDOG_PHASES.get(action[len("kvmha.cluster."):]) if action.startswith("kvmha.cluster.") else None
        self.task = FakeTask(action, dict({"kvmha_journal": phase} if phase else {}, **(task_vars or {})), check_mode)
        self.host = FakeHost(host)
        self.result = result


class FakePlay:
    def __init__(self, play_vars=None):
        self.vars = play_vars or {}

    @staticmethod
    def get_variable_manager():
        return None


class FakeStats:
    def __init__(self, failures=None):
        self.failures = failures or {}
        self.processed = dict.fromkeys(self.failures or {"h2": 0})

    def summarize(self, host):
        return {"failures": self.failures.get(host, 0)}
