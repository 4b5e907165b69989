# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput
from ansible_collections.kvmha.cluster.plugins.module_utils._placement import place, vm_order_key
from ansible_collections.kvmha.cluster.plugins.module_utils._policy import default_policy

GROUPS = ["", "", "db", "web", "mq"]


def vm(name, priority=50, mem=64, cpus=1, group=""):
    return {"uuid": "u-" + name, "name": name, "priority": priority, "memory_mib": mem, "vcpus": cpus, "group": group}


def host(name, mem=1024, cpus=4, groups=()):
    return {"host": name, "mem_free_mib": mem, "vcpus_free": cpus, "groups": list(groups)}


# ----------------------------------------------------------------------------------------- examples


def test_priority_then_best_fit():
    plan = place([vm("low", 10), vm("high", 90, mem=512), vm("mid", 50, mem=256)],
                 [host("h2", mem=600), host("h3", mem=2000)], strategy="best_fit")
    assert [(p["name"], p["host"], p["order"]) for p in plan["placements"]] == [
        ("high", "h2", 1), ("mid", "h3", 2), ("low", "h2", 3)]
    assert plan["unplaced"] == []
    assert plan["hosts"]["h2"]["mem_free_mib"] == 600 - 512 - 64


def test_anti_affinity_never_shares_a_host():
    plan = place([vm("db1", group="db"), vm("db2", group="db"), vm("db3", group="db")], [host("h2"), host("h3")])
    assert sorted(p["host"] for p in plan["placements"]) == ["h2", "h3"]
    assert [u["name"] for u in plan["unplaced"]] == ["db3"]
    assert "anti-affinity group 'db' is already on every host" in plan["unplaced"][0]["reason"]


def test_anti_affinity_counts_what_a_host_already_runs():
    plan = place([vm("db1", group="db")], [host("h2", mem=4000, groups=["db"]), host("h3", mem=100)])
    assert plan["placements"][0]["host"] == "h3"


def test_spares_only_when_needed():
    plan = place([vm("a", mem=500), vm("b", mem=500), vm("c", mem=500)], [host("h2", mem=1000), host("spare", mem=8000)],
                 spare_hosts=["spare"])
    assert [(p["name"], p["host"], p["spare"]) for p in plan["placements"]] == [
        ("a", "h2", False), ("b", "h2", False), ("c", "spare", True)]
    assert plan["hosts"]["spare"]["spare"] is True


def test_spread_strategy():
    vms = [vm("a"), vm("b"), vm("c"), vm("d")]
    hosts = [host("h2", mem=1000), host("h3", mem=1000)]
    assert [p["host"] for p in place(vms, hosts, strategy="best_fit")["placements"]] == ["h2", "h2", "h2", "h2"]
    assert [p["host"] for p in place(vms, hosts, strategy="spread")["placements"]] == ["h2", "h3", "h2", "h3"]
    with pytest.raises(InvalidInput):
        place(vms, hosts, strategy="random")


def test_the_default_strategy_is_the_policys():
    vms = [vm("a"), vm("b"), vm("c"), vm("d")]
    hosts = [host("h2", mem=1000), host("h3", mem=1000)]
    assert place(vms, hosts) == place(vms, hosts, strategy=default_policy()["placement_strategy"])
    assert default_policy()["placement_strategy"] == "spread"


def test_unplaced_reasons():
    assert place([vm("a")], [])["unplaced"][0]["reason"] == "no target host is available"
    reason = place([vm("big", mem=5000, cpus=2)], [host("h2", mem=1000, cpus=8)])["unplaced"][0]["reason"]
    assert reason == "no host has 5000 MiB and 2 vCPUs free: short of memory on 1 host (the most: h2 with 1000 MiB free)"
    reason = place([vm("c", cpus=9)], [host("h2", cpus=8)])["unplaced"][0]["reason"]
    assert "9 vCPUs" in reason


def test_unplaced_reason_names_each_limit_with_numbers():
    hosts = [host("h1", mem=3000, cpus=2), host("h2", mem=1000, cpus=16), host("h3", mem=500, cpus=1)]
    reason = place([vm("c", mem=2000, cpus=9)], hosts)["unplaced"][0]["reason"]
    assert reason == ("no host has 2000 MiB and 9 vCPUs free: short of memory on 2 hosts (the most: h2 with 1000 MiB free)"
                      " and of vCPUs on 2 hosts (the most: h1 with 2 vCPUs free)")
    reason = place([vm("d", mem=64, cpus=2)], [host("h1", cpus=1), host("h2", cpus=0)])["unplaced"][0]["reason"]
    assert reason == "no host has 64 MiB and 2 vCPUs free: short of vCPUs on 2 hosts (the most: h1 with 1 vCPU free)"


def test_never_over_commits_vcpus_either():
    plan = place([vm("a", cpus=3), vm("b", cpus=3)], [host("h2", cpus=4, mem=9999)])
    assert len(plan["placements"]) == 1 and len(plan["unplaced"]) == 1


def test_negative_free_capacity_counts_as_zero():
    plan = place([vm("zero", mem=0, cpus=0), vm("one")], [host("h2", mem=-5, cpus=-1)])
    assert [p["name"] for p in plan["placements"]] == ["zero"]


@pytest.mark.parametrize("vms, hosts", [
    ([vm("a"), vm("a")], [host("h2")]),
    ([vm("a")], [host("h2"), host("h2")]),
    ([{"uuid": "x"}], [host("h2")]),
    ([vm("a", mem=-1)], [host("h2")]),
    ([vm("a")], [{"host": "h2", "mem_free_mib": "lots", "vcpus_free": 1}]),
])
def test_malformed_input(vms, hosts):
    with pytest.raises(InvalidInput):
        place(vms, hosts)


# ----------------------------------------------------------------------------------------- properties

vm_space = st.lists(
    st.builds(
        lambda i, pri, mem, cpus, group: {"uuid": "u%03d" % i, "name": "vm%d" % (i % 7), "priority": pri, "memory_mib": mem,
                                          "vcpus": cpus, "group": group},
        st.integers(0, 999), st.sampled_from([0, 10, 50, 50, 90, 100]), st.integers(0, 2048), st.integers(0, 6),
        st.sampled_from(GROUPS)),
    max_size=14, unique_by=lambda v: v["uuid"])
host_space = st.lists(
    st.builds(lambda i, mem, cpus, groups: {"host": "h%d" % i, "mem_free_mib": mem, "vcpus_free": cpus, "groups": groups},
              st.integers(0, 9), st.integers(0, 6000), st.integers(0, 12), st.lists(st.sampled_from(GROUPS[2:]), max_size=2)),
    max_size=5, unique_by=lambda h: h["host"])


@st.composite
def scenarios(draw):
    vms = draw(vm_space)
    hosts = draw(host_space)
    spares = draw(st.lists(st.sampled_from([h["host"] for h in hosts]), unique=True)) if hosts else []
    strategy = draw(st.sampled_from(["best_fit", "spread"]))
    return vms, hosts, spares, strategy


def fits(vm_, free, groups):
    return free[0] >= vm_["memory_mib"] and free[1] >= vm_["vcpus"] and (not vm_["group"] or vm_["group"] not in groups)


def replay(hosts, placements):
    """Yield (placement, state before it) with state = {host: [mem, cpus, groups]}."""
    state = dict((h["host"], [h["mem_free_mib"], h["vcpus_free"], set(h["groups"])]) for h in hosts)
    for p in placements:
        yield p, dict((k, [v[0], v[1], set(v[2])]) for k, v in state.items())
        entry = state[p["host"]]
        entry[0] -= p["memory_mib"]
        entry[1] -= p["vcpus"]
        if p["group"]:
            entry[2].add(p["group"])


@settings(max_examples=700, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_every_vm_is_placed_once_or_unplaced_and_nothing_is_over_committed(scenario):
    vms, hosts, spares, strategy = scenario
    plan = place(vms, hosts, spares, strategy)
    placed = [p["uuid"] for p in plan["placements"]]
    unplaced = [u["uuid"] for u in plan["unplaced"]]
    assert sorted(placed + unplaced) == sorted(v["uuid"] for v in vms)
    assert all(u["reason"] for u in plan["unplaced"])
    for h in hosts:
        mine = [p for p in plan["placements"] if p["host"] == h["host"]]
        assert sum(p["memory_mib"] for p in mine) <= max(0, h["mem_free_mib"])
        assert sum(p["vcpus"] for p in mine) <= max(0, h["vcpus_free"])
        assert plan["hosts"][h["host"]]["mem_free_mib"] >= 0 and plan["hosts"][h["host"]]["vcpus_free"] >= 0
    assert [p["order"] for p in plan["placements"]] == list(range(1, len(placed) + 1))


@settings(max_examples=700, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_anti_affinity_groups_never_share_a_host(scenario):
    vms, hosts, spares, strategy = scenario
    plan = place(vms, hosts, spares, strategy)
    for h in hosts:
        groups = [p["group"] for p in plan["placements"] if p["host"] == h["host"] and p["group"]]
        assert len(groups) == len(set(groups))
        assert not set(groups) & set(h["groups"])


@settings(max_examples=700, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_higher_priority_never_unplaced_while_a_lower_one_takes_a_slot_it_could_use(scenario):
    vms, hosts, spares, strategy = scenario
    plan = place(vms, hosts, spares, strategy)
    initial = dict((h["host"], h) for h in hosts)
    for u in plan["unplaced"]:
        for low in plan["placements"]:
            if low["priority"] >= u["priority"]:
                continue
            h = initial[low["host"]]
            others = [p for p in plan["placements"] if p["host"] == low["host"] and p["uuid"] != low["uuid"]]
            free = (max(0, h["mem_free_mib"]) - sum(p["memory_mib"] for p in others),
                    max(0, h["vcpus_free"]) - sum(p["vcpus"] for p in others))
            groups = set(h["groups"]) | set(p["group"] for p in others if p["group"])
            assert not fits(u, free, groups), "%s unplaced although %s's slot on %s fits it" % (u["name"], low["name"], h["host"])


@settings(max_examples=700, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_spares_used_only_when_no_regular_host_can_take_the_vm_and_best_fit_or_spread_otherwise(scenario):
    vms, hosts, spares, strategy = scenario
    clamped = [dict(h, mem_free_mib=max(0, h["mem_free_mib"]), vcpus_free=max(0, h["vcpus_free"])) for h in hosts]
    plan = place(vms, hosts, spares, strategy)
    sign = 1 if strategy == "best_fit" else -1
    for p, state in replay(clamped, plan["placements"]):
        regular = [name for name in sorted(state) if name not in spares and fits(p, state[name][:2], state[name][2])]
        if p["spare"]:
            assert p["host"] in spares and not regular
        else:
            assert p["host"] in regular
            leftover = [(sign * (state[n][0] - p["memory_mib"]), sign * (state[n][1] - p["vcpus"]), n) for n in regular]
            assert min(leftover)[2] == p["host"]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(), seed=st.integers(0, 2 ** 32 - 1))
def test_deterministic_whatever_the_input_order(scenario, seed):
    vms, hosts, spares, strategy = scenario
    plan = place(vms, hosts, spares, strategy)
    rng = random.Random(seed)
    vms2, hosts2, spares2 = list(vms), list(hosts), list(spares)
    rng.shuffle(vms2)
    rng.shuffle(hosts2)
    rng.shuffle(spares2)
    assert place(vms2, hosts2, spares2, strategy) == plan
    assert [vm_order_key(p) for p in plan["placements"]] == sorted(vm_order_key(p) for p in plan["placements"])
    assert [vm_order_key(u) for u in plan["unplaced"]] == sorted(vm_order_key(u) for u in plan["unplaced"])


@settings(max_examples=200)
@given(scenario=scenarios())
def test_pure_inputs_are_not_modified(scenario):
    vms, hosts, spares, strategy = scenario
    snapshot = (repr(vms), repr(hosts), repr(spares))
    place(vms, hosts, spares, strategy)
    assert (repr(vms), repr(hosts), repr(spares)) == snapshot
