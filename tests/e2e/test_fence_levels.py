"""Fence levels end to end (issue 15) on the lab: h2 is given two levels, a first device that cannot be reached (an
address on the lab's BMC network where nothing answers: a BMC or PDU that died) and then its own BMC. A crash of h2
is fenced through the second level and its guests restarted once; with h2's BMC dead too, no level can confirm: h2
is UNKNOWN, nothing is fenced or started, and the run fails loudly. With the BMC's Redfish face as the only level,
the crash is investigated and fenced over Redfish. Checked from outside the product as every
scenario is: the BMCs' own logs (the power-off counted by h2's BMC), the qemu logs and processes of every host."""

import yaml

from lab import config

DEAD_DEVICE_IP = "198.51.100.189"  # on the lab's BMC network (198.51.100.128/26), never given to anything


def with_levels(cluster, tmp_path, host, levels):
    """A copy of the lab's inventory in which ``host`` is fenced through ``levels`` of its devices: ``dead`` (an
    address where nothing answers), ``bmc`` (its BMC over IPMI) and ``redfish`` (the same BMC's Redfish face)."""
    with open(cluster.lab.inventory_path(), encoding="utf-8") as f:
        inventory = yaml.safe_load(f)
    hostvars = inventory["all"]["children"]["kvm_hosts"]["hosts"][host]
    bmc = {"protocol": "ipmi", "port": config.BMC_PORT, "username": config.BMC_USER,
           "password": hostvars["kvmha_bmc_password"], "deadline_s": 4}
    hostvars["kvmha_fence_levels"] = levels
    hostvars["kvmha_fence_devices"] = [dict(bmc, name="dead", address=DEAD_DEVICE_IP),
                                       dict(bmc, name="bmc", address=hostvars["kvmha_bmc_address"]),
                                       dict(bmc, name="redfish", protocol="redfish", port=config.REDFISH_PORT,
                                            address=hostvars["kvmha_bmc_address"], ca_path=config.PKI + "/ca.pem")]
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return str(path)


def guests_of(cluster, host) -> set:
    return {g for g, home in cluster.guest_homes.items() if home == host}


def test_a_first_level_that_cannot_answer_is_passed_over_and_the_next_one_fences(cluster, tmp_path):
    starts, offs = cluster.qemu_starts(), cluster.bmc_power_offs()
    run = cluster.during_watch(lambda: cluster.lab.power("h2", "crash"), watch_s=30,
                               inventory=with_levels(cluster, tmp_path, "h2", [["dead"], ["bmc"]]))
    assert run.rc == 0, run.explain()
    cluster.assert_invariants(run, verdicts={"h2": ("SUSPECT", "R8")}, fenced={"h2"}, starts_before=starts)
    assert cluster.bmc_power_offs()["h2"] == offs["h2"] + 1  # the second level's device, counted by the BMC itself
    fence = [a for a in run.incidents["h2"]["actions"] if a["action"] == "fence"]
    assert fence and fence[-1]["ok"] and fence[-1]["result"]["level"] == 2, run.explain()
    assert fence[-1]["result"]["devices"] == ["bmc"], run.explain()
    assert set(run.started_vms()) == guests_of(cluster, "h2")


def test_when_no_level_can_answer_the_host_is_unknown_and_nothing_is_started(cluster, tmp_path):
    starts = cluster.qemu_starts()

    def lose_everything():
        cluster.lab.fault("h2", "bmc-unreachable")
        cluster.lab.power("h2", "crash")
    run = cluster.during_watch(lose_everything, watch_s=20,
                               inventory=with_levels(cluster, tmp_path, "h2", [["dead"], ["bmc"]]))
    assert run.rc != 0 and run.fenced() == set() and run.started_vms() == {}, run.explain()
    cluster.assert_invariants(run, verdicts={"h2": ("UNKNOWN", "R10")}, starts_before=starts, down_hosts={"h2"})
    assert run.incidents["h2"]["evidence"]["bmc"]["power"] == "unknown", run.explain()


def test_a_host_is_fenced_over_redfish(cluster, tmp_path):
    """h2's only level is its BMC's Redfish face (HTTPS, the certificate verified against the lab CA): the crash is
    investigated through it (it reads "on"), fenced through it (ForceOff, confirmed by reads), its guests restarted."""
    starts, offs = cluster.qemu_starts(), cluster.bmc_power_offs()
    run = cluster.during_watch(lambda: cluster.lab.power("h2", "crash"), watch_s=30,
                               inventory=with_levels(cluster, tmp_path, "h2", [["redfish"]]))
    assert run.rc == 0, run.explain()
    cluster.assert_invariants(run, verdicts={"h2": ("SUSPECT", "R8")}, fenced={"h2"}, starts_before=starts)
    assert cluster.bmc_power_offs()["h2"] == offs["h2"] + 1
    fence = [a for a in run.incidents["h2"]["actions"] if a["action"] == "fence"]
    assert fence and fence[-1]["ok"] and fence[-1]["result"]["devices"] == ["redfish"], run.explain()
    assert set(run.started_vms()) == guests_of(cluster, "h2")
