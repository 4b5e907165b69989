"""An operator's confirm-off end to end (issue 15) on the lab: a host whose BMC died with it is UNKNOWN until a person
confirms it off (playbooks/confirm_off.yml); the next run recovers its VMs and uses the word up. A live host is
refused. Checked from outside the product as every scenario is: the qemu logs and processes of every host (each
guest once), and the BMCs' own logs (nothing went over IPMI)."""

from test_operations import marks, operate


def guests_of(cluster, host) -> set:
    return {g for g, home in cluster.guest_homes.items() if home == host}


def confirm_off(cluster, tmp_path, host):
    return operate(cluster, tmp_path, "confirm_off", kvmha_confirm_host=host, kvmha_confirm_host_is_off=host,
                   kvmha_confirm_operator="e2e", kvmha_confirm_reason="lab: powered off with its BMC")


def test_a_host_confirmed_off_is_recovered_by_the_next_run_and_the_word_is_used_up(cluster, tmp_path):
    starts, offs = cluster.qemu_starts(), cluster.bmc_power_offs()

    def blackout():
        cluster.lab.fault("h2", "bmc-unreachable")
        cluster.lab.power("h2", "off")

    first = cluster.during_watch(blackout, watch_s=20)
    assert first.rc != 0 and first.incidents["h2"]["verdict"] == "UNKNOWN", first.explain()
    assert first.started_vms() == {}
    confirmed = confirm_off(cluster, tmp_path, "h2")
    assert confirmed.returncode == 0 and "h2: confirmed off by e2e" in confirmed.output, confirmed.output[-3000:]
    assert "h2" in marks("confirmed_off")["active"]
    second = cluster.watchdog(watch_s=3)
    assert second.rc == 0, second.explain()
    cluster.assert_invariants([first, second], verdicts={"h2": ("DOWN_CONFIRMED", "R9a")}, starts_before=starts)
    assert set(second.started_vms()) == guests_of(cluster, "h2")
    assert "h2" not in marks("confirmed_off")["active"], "one use: the recovery used it up"
    assert cluster.bmc_power_offs()["h2"] == offs["h2"]  # the operator's word, no fence over IPMI


def test_a_confirm_off_of_a_live_host_is_refused_and_changes_nothing(cluster, tmp_path):
    starts = cluster.qemu_starts()
    cluster.lab.fault("h2", "bmc-unreachable")  # where a confirmation would matter: its BMC cannot say on
    cluster.wait_all_alive(30)
    refused = confirm_off(cluster, tmp_path, "h2")
    assert refused.returncode != 0 and "h2 is not off" in refused.output, refused.output[-3000:]
    assert "its heartbeat advances on the store" in refused.output and "it answers on its management address" in refused.output
    assert marks("confirmed_off")["active"] == {}
    run = cluster.watchdog(watch_s=3)
    assert run.rc == 0 and "h2" not in run.incidents, run.explain()
    cluster.assert_invariants(run, starts_before=starts)
