"""Tagging VMs HA end to end (issue 16) on the lab: ha_vm.yml unmarks and marks a guest like an operator, the host's
heartbeat writer publishes the change, the listing shows it, and a fence restarts only the guests still marked HA."""

import json
import os
import subprocess

from cluster import REPO, wait_for

ANSIBLE_PLAYBOOK = os.path.join(REPO, ".venv", "bin", "ansible-playbook")


def ha_vm(cluster, tmp_path, *args, **extra):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), KVMHA_JOURNAL_DIR=str(tmp_path / "journal"))
    env.pop("KVMHA_METRICS_FILE", None)
    cmd = [ANSIBLE_PLAYBOOK, "-i", cluster.lab.inventory_path(), os.path.join(REPO, "playbooks", "ha_vm.yml"),
           "-e", json.dumps(extra), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600, check=False)
    proc.output = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.output[-6000:]
    return proc


def published(cluster, host, guest):
    """(ha, priority, group) of ``guest`` in the host's current heartbeat record, None while it is not listed."""
    entry = next((vm for vm in cluster.records(host) if vm["name"] == guest), None)
    return None if entry is None else (entry["ha"], entry["priority"], entry["group"])


def unmarked_in_record(cluster, host, guest):
    """The host's record no longer lists ``guest`` as HA (the writer lists only HA VMs: an unmarked one drops out)."""
    return (published(cluster, host, guest) or (False,))[0] is False


def test_ha_vm_marks_unmarks_and_lists_and_the_writer_publishes_it(cluster, tmp_path):
    guest = sorted(g for g, home in cluster.guest_homes.items() if home == "h2")[0]
    try:
        dry = ha_vm(cluster, tmp_path, "--check", "--diff", kvmha_ha_vm_hosts="h2", kvmha_ha_vm_names=guest,
                    kvmha_ha_vm_priority=90, kvmha_ha_vm_group="solo")
        assert "changed=1" in dry.output and published(cluster, "h2", guest) == (True, 50, "")
        ha_vm(cluster, tmp_path, kvmha_ha_vm_hosts="h2", kvmha_ha_vm_names=guest, kvmha_ha_vm_priority=90, kvmha_ha_vm_group="solo")
        wait_for(lambda: published(cluster, "h2", guest) == (True, 90, "solo"), 30, what="the writer to publish the new marker")
        again = ha_vm(cluster, tmp_path, kvmha_ha_vm_hosts="h2", kvmha_ha_vm_names=guest, kvmha_ha_vm_priority=90,
                      kvmha_ha_vm_group="solo")
        assert "changed=0" in again.output
        listing = ha_vm(cluster, tmp_path)
        assert "h2: %s priority 90, group solo, running" % guest in listing.output, listing.output[-4000:]
        ha_vm(cluster, tmp_path, kvmha_ha_vm_hosts="h2", kvmha_ha_vm_names=guest, kvmha_ha_vm_state="absent")
        wait_for(lambda: unmarked_in_record(cluster, "h2", guest), 30, what="the writer to publish the unmarked VM")
        assert "h2: %s priority" % guest not in ha_vm(cluster, tmp_path, kvmha_ha_vm_hosts="h2").output
    finally:
        cluster.lab.guest_set(guest, priority=50, group="", ha=True)  # the lab's own record still says so: rewrite it
    cluster.assert_invariants([])


def test_a_fence_restarts_only_the_guests_still_marked_ha(cluster, tmp_path):
    guests = sorted(g for g, home in cluster.guest_homes.items() if home == "h1")
    unmarked, marked = guests[0], set(guests[1:])
    try:
        ha_vm(cluster, tmp_path, kvmha_ha_vm_hosts="h1", kvmha_ha_vm_names=unmarked, kvmha_ha_vm_state="absent")
        wait_for(lambda: unmarked_in_record(cluster, "h1", unmarked), 30, what="the writer to publish it")
        starts = cluster.qemu_starts()
        run = cluster.during_watch(lambda: cluster.lab.power("h1", "crash"))
        assert run.rc == 0, run.explain()
        assert set(run.started_vms()) == marked, run.explain()
        assert unmarked not in cluster.qemu_copies(), "a VM that is not HA must not be restarted"
        # h1's guests may run zero times (the unmarked one does), never twice; the marked ones ran (above).
        cluster.assert_invariants([run], verdicts={"h1": ("SUSPECT", "R8")}, fenced={"h1"}, starts_before=starts,
                                  down_hosts=("h1",))
    finally:
        cluster.reset()  # h1 on again, every guest at home, and the unmarked guest's marker written back
