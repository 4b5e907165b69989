"""The failure-scenario matrix (issue 7). Each scenario starts from a healthy lab, injects a fault, runs the
watchdog as a user would, and asserts the invariants (Cluster.assert_invariants) plus its own expectation.

Scenarios 1 (crash), 2 (power loss, BMC says off), 5 (graceful writer stop), 10 (the seed's case, default
policy), 21 (two watchdogs), 22 (re-run) and 23 (returning host) are in test_watchdog.py; the numbers below are
the issue's.
"""

import json
import os
import time

import pytest
import yaml
from cluster import _marks, wait_for
from conftest import report_rto

from lab import config


def wait_stale(host, seconds):
    """Wait until `host`'s heartbeat has not changed for `seconds` (by the store file's mtime)."""
    path = os.path.join(config.STORE, "kvmha", "hosts", host + ".json")
    wait_for(lambda: time.time() - os.path.getmtime(path) >= seconds, seconds + 60, interval=0.5,
             what="%s's heartbeat to be %d s old" % (host, seconds))


def redeploy(cluster, hosts, **role_vars):
    """Re-apply the role's settings on `hosts` as an operator changing a setting would: only the configuration
    (`--tags heartbeat_writer_config`), which reloads the writers; the full role is some 15 module runs a host."""
    cluster.ansible_playbook("deploy.yml", "--limit", ",".join(hosts), "--tags", "heartbeat_writer_config",
                             "-e", json.dumps(role_vars))
    cluster.wait_all_alive()


# 3 --------------------------------------------------------------------------------------------------------------

def test_03_power_loss_including_the_bmc_is_unknown_and_repeated(cluster):
    starts = cluster.qemu_starts()

    def blackout():
        cluster.lab.fault("h2", "bmc-unreachable")
        cluster.lab.power("h2", "off")

    run = cluster.during_watch(blackout)
    assert run.rc != 0
    cluster.assert_invariants(run, verdicts={"h2": ("UNKNOWN", "R10")}, starts_before=starts, down_hosts={"h2"})
    assert run.started_vms() == {}
    again = cluster.watchdog(watch_s=3)
    assert again.rc != 0 and again.incidents["h2"]["verdict"] == "UNKNOWN"


# 4 --------------------------------------------------------------------------------------------------------------

@pytest.fixture
def armed_writers(cluster):
    redeploy(cluster, ["h2"], heartbeat_writer_self_fence_armed=True, heartbeat_writer_self_fence_deadline=8)
    yield cluster
    cluster.reset()
    redeploy(cluster, ["h2"], heartbeat_writer_self_fence_armed=False)


def test_04_power_loss_with_an_armed_self_fence_is_trusted_after_the_deadline(armed_writers):
    cluster = armed_writers
    cluster.reset()
    policy = {"trust_self_fence": True, "self_fence_margin_s": 2}
    starts = cluster.qemu_starts()

    def blackout():
        cluster.lab.fault("h2", "bmc-unreachable")
        cluster.lab.power("h2", "off")

    early = cluster.during_watch(blackout, policy=policy)
    assert early.incidents["h2"]["verdict"] == "UNKNOWN" and early.rc != 0
    deadline = early.incidents["h2"]["heartbeat"]["self_fence"]["deadline_s"]
    wait_stale("h2", deadline + 3)
    late = cluster.watchdog(watch_s=3, policy=policy)
    assert late.rc == 0, late.explain()
    cluster.assert_invariants([early, late], verdicts={"h2": ("DOWN_SELF_FENCED", "R9")}, starts_before=starts)
    assert set(late.started_vms()) == {"g3", "g4"}


# 6, 12, 13 ---------------------------------------------------------------------------------------------------------

def test_06_killed_writer_on_a_healthy_host_is_restarted(cluster):
    run = cluster.during_watch(lambda: cluster.lab.fault("h3", "writer-kill"))
    assert run.rc == 0, run.explain()
    cluster.assert_invariants(run, verdicts={"h3": ("ALIVE_WRITER_FAULT", "R3")})
    assert run.incidents["h3"]["evidence"]["heartbeat"]["status"] == "stale"
    assert cluster.lab.status()["hosts"]["h3"]["writer"] == "active"


@pytest.mark.parametrize("fault", ["store-readonly", "store-hang"])
def test_12_13_a_store_fault_on_one_host_is_never_fenced(cluster, fault):
    run = cluster.during_watch(lambda: cluster.lab.fault("h4", fault))
    assert run.rc != 0, "the writer cannot write after its restart: a human must look"
    assert "its heartbeat does not reach the store" in run.output, run.explain()
    cluster.assert_invariants(run, verdicts={"h4": ("ALIVE_WRITER_FAULT", "R3")})
    out = cluster.lab.ssh("h4", "systemctl is-active kvmha-heartbeat")[1]
    assert out.strip() == "active", "the writer's loop survives the store fault, and is not restarted into it"


# 7, 8, 9, 29 -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault", ["partition-mgmt", "partition-private", "partition"])
def test_07_08_09_network_cuts_with_a_live_writer_are_not_suspects(cluster, fault):
    run = cluster.during_watch(lambda: cluster.lab.fault("h2", fault), watch_s=10)
    assert run.rc == 0, run.explain()
    assert run.incidents == {}, "a host whose heartbeat is alive is not even investigated"
    cluster.assert_invariants(run)


def test_29_a_flap_shorter_than_the_threshold_is_ignored(cluster):
    def flap():
        cluster.lab.fault("h5", "store-hang")
        time.sleep(3)
        cluster.lab.heal("h5", "store-hang")

    run = cluster.during_watch(flap, watch_s=12)
    assert run.rc == 0 and run.incidents == {}, run.explain()
    cluster.assert_invariants(run)


# 10, 11 ------------------------------------------------------------------------------------------------------------

def partition_and_kill_writer(cluster, host):
    cluster.lab.fault(host, "partition")
    cluster.lab.fault(host, "writer-kill")


def test_10_the_seed_case_with_fence_isolated_is_fenced_and_restarted_once(cluster):
    starts = cluster.qemu_starts()
    run = cluster.during_watch(lambda: partition_and_kill_writer(cluster, "h1"), policy={"fence_isolated": True})
    assert run.rc == 0, run.explain()
    cluster.assert_invariants(run, verdicts={"h1": ("ALIVE_VMS_RUNNING", "R7")}, fenced={"h1"}, starts_before=starts)
    assert set(run.started_vms()) == {"g1", "g2"}
    report_rto(run, "h1")


def test_11_the_seed_case_with_idle_guests_is_fenced_and_restarted(cluster):
    for guest in ("g1", "g2"):
        assert cluster.lab.ssh("h1", "virsh suspend %s" % guest)[0] == 0
    starts = cluster.qemu_starts()
    run = cluster.during_watch(lambda: partition_and_kill_writer(cluster, "h1"))
    assert run.rc == 0, run.explain()
    cluster.assert_invariants(run, verdicts={"h1": ("SUSPECT", "R8")}, fenced={"h1"}, starts_before=starts)
    assert run.incidents["h1"]["evidence"]["disk_activity"] == "idle"


# 14, 24 ------------------------------------------------------------------------------------------------------------

def test_14_a_cluster_wide_store_outage_fences_nothing(cluster):
    boots = {h: s["boot_id"] for h, s in cluster.lab.status()["hosts"].items()}
    run = cluster.during_watch(lambda: cluster.lab.fault(None, "store-outage"))
    assert run.rc != 0 and "observer not OK" in run.output
    assert run.fenced() == set() and run.started_vms() == {}
    assert run.events_of("observer_not_ok"), "one clear alert"
    cluster.lab.heal(None, "store-outage")
    cluster.assert_invariants(run)
    assert {h: s["boot_id"] for h, s in cluster.lab.status()["hosts"].items()} == boots, "no host rebooted"


def test_24a_an_observer_that_loses_the_store_acts_on_nothing(cluster):
    cluster.lab.fault(None, "observer-store")
    cluster.lab.power("h1", "crash")
    run = cluster.watchdog(watch_s=15)
    assert run.rc != 0 and "observer not OK" in run.output
    assert run.fenced() == set() and run.started_vms() == {}
    cluster.lab.heal(None, "observer-store")


def test_24b_an_observer_cut_from_management_acts_on_nothing(cluster):
    cluster.lab.fault(None, "observer-mgmt")
    run = cluster.during_watch(lambda: cluster.lab.power("h1", "crash"))
    assert run.rc != 0
    assert run.incidents["h1"]["verdict"] == "OBSERVER_ISOLATED"
    assert run.fenced() == set() and run.started_vms() == {}
    cluster.lab.heal(None, "observer-mgmt")


# 15, 16, 17 ----------------------------------------------------------------------------------------------------------

def test_15_a_bmc_network_down_on_a_healthy_host_changes_nothing(cluster):
    run = cluster.during_watch(lambda: cluster.lab.fault("h3", "bmc-unreachable"), watch_s=10)
    assert run.rc == 0 and run.incidents == {}
    cluster.assert_invariants(run)


def test_16_wrong_bmc_password_and_a_hung_host_is_unknown_auth(cluster):
    cluster.lab.fault("h2", "bmc-wrong-password")
    starts = cluster.qemu_starts()
    run = cluster.during_watch(lambda: cluster.lab.power("h2", "crash"))
    assert run.rc != 0
    cluster.assert_invariants(run, verdicts={"h2": ("UNKNOWN", "R10")}, starts_before=starts, down_hosts={"h2"})
    assert run.incidents["h2"]["evidence"]["bmc"]["error"] == "auth"
    assert run.started_vms() == {}


def test_r5a_a_bmc_that_answers_for_another_host_is_a_conflict_never_a_fence(cluster, tmp_path):
    """Rule R5a end to end: h2's inventory names h5's BMC (a cabling or inventory mistake) and h5 is off, in
    maintenance. h2 loses its management network and its writer: its "BMC" says off while its neighbours still ping
    it - a contradiction, so an alert; nothing is fenced, nothing is started."""
    with open(cluster.lab.inventory_path(), encoding="utf-8") as f:
        inventory = yaml.safe_load(f)
    hosts = inventory["all"]["children"]["kvm_hosts"]["hosts"]
    for key in ("kvmha_bmc_address", "kvmha_bmc_password"):
        hosts["h2"][key] = hosts["h5"][key]
    lying = tmp_path / "inventory.yml"
    lying.write_text(yaml.safe_dump(inventory))
    _marks.set_mark(config.STORE, _marks.MAINTENANCE, "h5", "e2e", {"reason": "spare, powered off"}, ttl=3600)
    cluster.lab.power("h5", "off")
    starts = cluster.qemu_starts()

    def cut_h2():
        cluster.lab.fault("h2", "writer-kill")
        cluster.lab.fault("h2", "partition-mgmt")
    run = cluster.during_watch(cut_h2, watch_s=20, inventory=str(lying))
    assert run.rc != 0 and run.fenced() == set() and run.started_vms() == {}, run.explain()
    assert run.incidents["h2"]["evidence"]["bmc"]["power"] == "off"
    cluster.assert_invariants(run, verdicts={"h2": ("CONFLICT", "R5a")}, starts_before=starts, down_hosts={"h5"})


def test_17_a_host_without_libvirtd_is_never_an_evacuation_target(cluster):
    cluster.lab.fault("h2", "libvirtd-stop")
    starts = cluster.qemu_starts()
    run = cluster.during_watch(lambda: cluster.lab.power("h1", "crash"))
    assert run.rc == 0, run.explain()
    cluster.assert_invariants(run, verdicts={"h1": ("SUSPECT", "R8")}, fenced={"h1"}, starts_before=starts)
    targets = {vm["host"] for vm in run.incidents["h1"]["vms"]}
    assert "h2" not in targets and targets


# 18, 19, 25, 26 ------------------------------------------------------------------------------------------------------

def crash(cluster, *hosts):
    for host in hosts:
        cluster.lab.power(host, "crash")


def test_18_two_of_five_hang_both_are_fenced_and_placed_by_priority(cluster):
    cluster.lab.guest_set("g1", priority=90)
    cluster.lab.guest_set("g3", priority=80)
    cluster.wait_reported(g1={"priority": 90}, g3={"priority": 80})
    starts = cluster.qemu_starts()
    run = cluster.during_watch(lambda: crash(cluster, "h1", "h2"))
    assert run.rc == 0, run.explain()
    cluster.assert_invariants(run, verdicts={"h1": ("SUSPECT", "R8"), "h2": ("SUSPECT", "R8")}, fenced={"h1", "h2"},
                              starts_before=starts)
    vms = run.incidents["h1"]["vms"] + run.incidents["h2"]["vms"]
    order = [vm["name"] for vm in sorted(vms, key=lambda vm: vm["order"])]
    assert order[:2] == ["g1", "g3"], "higher priority is placed first: %s" % order


def test_19_three_of_five_hang_is_a_storm_nothing_is_fenced(cluster):
    run = cluster.during_watch(lambda: crash(cluster, "h1", "h2", "h3"))
    assert run.rc != 0
    decisions = run.incidents
    assert set(decisions) >= {"h1", "h2", "h3"}
    assert all(decisions[h]["storm_guard"] and decisions[h]["action"] == "alert" for h in ("h1", "h2", "h3")), decisions
    assert run.fenced() == set() and run.started_vms() == {}


@pytest.fixture
def tight_capacity(cluster):
    # h2 has room for one more 64 MiB guest, h3-h5 none (each already runs two); h1 is the one that fails.
    targets = ["h2", "h3", "h4", "h5"]
    redeploy(cluster, targets, heartbeat_writer_capacity_mem_mib="{{ 192 if inventory_hostname == 'h2' else 128 }}")
    yield cluster
    cluster.reset()
    redeploy(cluster, targets, heartbeat_writer_capacity_mem_mib=768)


def test_25_not_enough_capacity_honours_priority_and_reports_the_rest(tight_capacity):
    cluster = tight_capacity
    cluster.reset()
    cluster.lab.guest_set("g2", priority=90)
    cluster.lab.guest_set("g1", priority=10)
    cluster.wait_reported(g2={"priority": 90}, g1={"priority": 10})  # CI once crashed h1 before: both still 50
    run = cluster.during_watch(lambda: cluster.lab.power("h1", "crash"))
    assert run.rc != 0, "an unplaced VM is an incomplete recovery"
    vms = {vm["name"]: vm for vm in run.incidents["h1"]["vms"]}
    assert vms["g2"]["status"] == "started" and vms["g2"]["host"] == "h2"
    assert vms["g1"]["status"] == "unplaced" and vms["g1"]["reason"]
    copies = cluster.qemu_copies()
    assert copies["g2"] == ["h2"] and "g1" not in copies, "nothing over-committed, g1 not started anywhere"


def test_26_anti_affinity_group_members_land_on_different_hosts(cluster):
    for guest in ("g1", "g2"):
        cluster.lab.guest_set(guest, group="db")
    cluster.lab.guest_set("g3", group="db")  # already on h2: neither g1 nor g2 may join it there
    cluster.wait_reported(g1={"group": "db"}, g2={"group": "db"}, g3={"group": "db"})
    run = cluster.during_watch(lambda: cluster.lab.power("h1", "crash"))
    assert run.rc == 0, run.explain()
    cluster.assert_invariants(run, fenced={"h1"})
    placed = {vm["name"]: vm["host"] for vm in run.incidents["h1"]["vms"]}
    assert placed["g1"] != placed["g2"] and "h2" not in placed.values(), placed


# 20, 27, 28, 30, 31 -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("skew", [600, -600])
def test_20_clock_skew_on_one_writer_gives_no_false_verdict(cluster, skew):
    cluster.lab.fault("h3", "clock-skew", str(skew))
    cluster.wait_all_alive()
    run = cluster.watchdog(watch_s=8)
    assert run.rc == 0 and run.incidents == {}, run.explain()
    assert run.events_of("run_start")
    cluster.assert_invariants(run)


def test_27_a_host_in_maintenance_that_hangs_is_left_alone(cluster):
    _marks.set_mark(config.STORE, _marks.MAINTENANCE, "h4", "e2e", {"reason": "scenario 27"}, ttl=600)
    run = cluster.during_watch(lambda: cluster.lab.power("h4", "crash"), watch_s=15)
    assert run.rc == 0 and run.incidents == {}, run.explain()
    assert run.fenced() == set() and run.started_vms() == {}


def test_28_a_fast_reboot_is_not_fenced(cluster):
    run = cluster.during_watch(lambda: cluster.lab.power("h5", "reboot"), watch_s=20)
    # The graceful shutdown writes the stopped marker, so h5 is investigated at once: by then it answers again.
    assert run.rc == 0 and run.fenced() == set() and run.started_vms() == {}, run.explain()
    assert run.incidents["h5"]["verdict"] == "ALIVE_WRITER_FAULT"
    cluster.wait_all_alive()
    # h5 is alive again: its guests (no autostart) stay off, and nobody started them elsewhere.
    cluster.assert_invariants(run, down_hosts={"h5"})


def test_30_a_half_dead_host_is_unresponsive_then_hung_and_fenced(cluster):
    policy = {"hung_grace_s": 12}
    starts = cluster.qemu_starts()
    first = cluster.during_watch(lambda: cluster.lab.power("h3", "hang"), policy=policy)
    assert first.incidents["h3"]["verdict"] == "UNRESPONSIVE" and first.rc != 0
    assert first.incidents["h3"]["evidence"]["neighbors"]["reachable"] >= 1, "the frozen kernel still answers ping"
    wait_stale("h3", 14)
    second = cluster.watchdog(watch_s=3, policy=policy)
    assert second.rc == 0, second.explain()
    cluster.assert_invariants([first, second], verdicts={"h3": ("HUNG", "R6a")}, fenced={"h3"}, starts_before=starts)
    report_rto(second, "h3")


def test_31_management_flapping_while_the_writer_restarts_is_not_fenced(cluster):
    def flap():
        cluster.lab.fault("h2", "partition-mgmt")
        cluster.lab.fault("h2", "writer-stop")
        time.sleep(4)
        cluster.lab.heal("h2")

    run = cluster.during_watch(flap)
    assert run.fenced() == set() and run.started_vms() == {}
    assert run.incidents["h2"]["verdict"] in ("UNRESPONSIVE", "ALIVE_WRITER_FAULT")
    cluster.assert_invariants(run, verdicts={})
