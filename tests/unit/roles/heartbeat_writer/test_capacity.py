# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The capacity a writer reports, with the allocation ratios and the host reserve, and the placement of VMs on
hosts that report it: nothing beyond what the ratios allow, and an unplaced VM names the limit that stopped it."""

from __future__ import annotations

import math
import os
import pathlib

from hypothesis import given, strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils._placement import place
from ansible_collections.kvmha.cluster.plugins.module_utils._policy import SETTINGS as POLICY

NONE = {"mem_mib": 0, "vcpus": 0}


def cap(**given):
    capacity = {"mem_mib": None, "vcpus": None, "reserved_mem_mib": 512, "reserved_vcpus": 0, "cpu_allocation_ratio": 4.0,
                "ram_allocation_ratio": 1.0}
    capacity.update(given)
    return capacity


def test_vcpus_are_overcommitted_by_the_ratio(writer):
    # 8 CPUs, 2 kept for the host, 4:1 -> 24 vCPUs offered, 20 of them running
    assert writer.compute_capacity(cap(reserved_vcpus=2), 64000, 8, {"mem_mib": 0, "vcpus": 20})["vcpus_free"] == 4
    assert writer.compute_capacity(cap(cpu_allocation_ratio=1.5), 64000, 3, NONE)["vcpus_free"] == 4  # 4.5 rounds down
    assert writer.compute_capacity(cap(cpu_allocation_ratio=0.5), 64000, 3, NONE)["vcpus_free"] == 1
    assert writer.compute_capacity(cap(reserved_vcpus=9), 64000, 8, NONE)["vcpus_free"] == 0


def test_the_operators_figures_are_taken_as_they_are(writer):
    """capacity.vcpus / capacity.mem_mib already include any overcommit: no ratio on top."""
    figures = cap(vcpus=10, mem_mib=4096, cpu_allocation_ratio=16.0, ram_allocation_ratio=2.0)
    assert writer.compute_capacity(figures, 100, 2, {"mem_mib": 1000, "vcpus": 3}, 99999) == {"mem_free_mib": 3096, "vcpus_free": 7}


def test_memory_is_the_smaller_of_the_allocation_budget_and_what_the_kernel_has_now(writer):
    # 16000 MiB total, 512 reserved: 15488 offered at 1.0, 10000 of it promised to running domains
    assert writer.compute_capacity(cap(), 12000, 4, {"mem_mib": 10000, "vcpus": 0}, 16000)["mem_free_mib"] == 5488
    # guests that touched little of their memory: the kernel has more, the budget still holds
    assert writer.compute_capacity(cap(), 15000, 4, {"mem_mib": 10000, "vcpus": 0}, 16000)["mem_free_mib"] == 5488
    # overcommitted 1.5: the budget grows, but never past MemAvailable - reserve
    assert writer.compute_capacity(cap(ram_allocation_ratio=1.5), 9000, 4, {"mem_mib": 10000, "vcpus": 0}, 16000)["mem_free_mib"] == 8488
    assert writer.compute_capacity(cap(ram_allocation_ratio=1.5), 15000, 4, {"mem_mib": 10000, "vcpus": 0}, 16000)["mem_free_mib"] == 13232
    # an unreadable meminfo offers nothing
    assert writer.compute_capacity(cap(), None, 4, NONE, None)["mem_free_mib"] == 0


def test_the_writer_defaults_are_the_policys(writer):
    table = {s.key: s.default for s in writer.SETTINGS}
    assert table["capacity.cpu_allocation_ratio"] == POLICY["cpu_allocation_ratio"].default == 4.0
    assert table["capacity.ram_allocation_ratio"] == POLICY["ram_allocation_ratio"].default == 1.0
    assert table["capacity.reserved_mem_mib"] == POLICY["reserved_memory_mib"].default == 512
    by_key = {s.key: s for s in writer.SETTINGS}
    for key, policy_key in (("capacity.cpu_allocation_ratio", "cpu_allocation_ratio"), ("capacity.ram_allocation_ratio", "ram_allocation_ratio")):
        assert (by_key[key].low, by_key[key].high) == (POLICY[policy_key].minimum, POLICY[policy_key].maximum), key
    assert by_key["capacity.reserved_mem_mib"].low == POLICY["reserved_memory_mib"].minimum


def test_the_role_takes_its_capacity_defaults_from_the_policy():
    defaults = (pathlib.Path(__file__).resolve().parents[4] / "roles" / "heartbeat_writer" / "defaults" / "main.yml").read_text()
    for variable, key in (("heartbeat_writer_cpu_allocation_ratio", "cpu_allocation_ratio"),
                          ("heartbeat_writer_ram_allocation_ratio", "ram_allocation_ratio"),
                          ("heartbeat_writer_reserved_mem_mib", "reserved_memory_mib")):
        line = next(line for line in defaults.splitlines() if line.startswith(variable + ":"))
        assert "(kvmha_policy | default({})).%s | default(%s)" % (key, POLICY[key].default) in line, line


@given(cpus=st.integers(0, 512), reserved=st.integers(0, 64), ratio=st.floats(0.1, 64), running=st.integers(0, 5000),
       available=st.integers(0, 2**20), total=st.integers(0, 2**20), ram_ratio=st.floats(0.1, 8), promised=st.integers(0, 2**21))
def test_reported_capacity_never_exceeds_what_the_ratios_allow(writer, cpus, reserved, ratio, running, available, total, ram_ratio, promised):
    capacity = cap(reserved_vcpus=reserved, cpu_allocation_ratio=ratio, ram_allocation_ratio=ram_ratio)
    free = writer.compute_capacity(capacity, available, cpus, {"mem_mib": promised, "vcpus": running}, total)
    assert free["vcpus_free"] == max(0, math.floor(max(0, cpus - reserved) * ratio + 1e-9) - running)
    assert 0 <= free["mem_free_mib"] <= max(0, available - 512)
    assert free["mem_free_mib"] + promised <= max(promised, (total - 512) * ram_ratio + 1e-6)
    more = writer.compute_capacity(dict(capacity, cpu_allocation_ratio=min(64, ratio * 2)), available, cpus, {"mem_mib": promised, "vcpus": running}, total)
    assert more["vcpus_free"] >= free["vcpus_free"]


# ------------------------------------------------------------------------------------------ placement with ratios

HOST = st.fixed_dictionaries({
    "cpus": st.integers(1, 64), "cpu_ratio": st.sampled_from([1.0, 1.5, 4.0, 16.0]), "running_vcpus": st.integers(0, 80),
    "total": st.integers(1024, 65536), "ram_ratio": st.sampled_from([0.8, 1.0, 1.5]), "promised": st.integers(0, 40000),
    "slack": st.integers(0, 65536),
})
VM = st.fixed_dictionaries({"priority": st.integers(0, 100), "memory_mib": st.integers(0, 16384), "vcpus": st.integers(0, 32)})


def reported(writer, name, h):
    capacity = cap(cpu_allocation_ratio=h["cpu_ratio"], ram_allocation_ratio=h["ram_ratio"])
    free = writer.compute_capacity(capacity, h["total"] - 512 + h["slack"], h["cpus"], {"mem_mib": h["promised"], "vcpus": h["running_vcpus"]},
                                   h["total"])
    return dict(free, host=name)


@given(hosts=st.lists(HOST, min_size=1, max_size=5), vms=st.lists(VM, max_size=12))
def test_placement_on_reported_capacity_stays_within_the_ratios(writer, hosts, vms):
    named = {"h%d" % i: h for i, h in enumerate(hosts)}
    guests = [dict(vm, uuid="u%d" % i, name="g%d" % i, group="") for i, vm in enumerate(vms)]
    plan = place(guests, [reported(writer, name, h) for name, h in named.items()])
    for name, h in named.items():
        placed = [p for p in plan["placements"] if p["host"] == name]
        vcpus_offered = math.floor(h["cpus"] * h["cpu_ratio"] + 1e-9)
        assert sum(p["vcpus"] for p in placed) <= max(0, vcpus_offered - h["running_vcpus"])
        assert sum(p["memory_mib"] for p in placed) <= max(0, (h["total"] - 512) * h["ram_ratio"] - h["promised"])
    assert len(plan["placements"]) + len(plan["unplaced"]) == len(guests)


@given(hosts=st.lists(HOST, min_size=1, max_size=5), vm=VM)
def test_an_unplaced_vm_names_the_limit_that_stopped_it_with_numbers(writer, hosts, vm):
    capacity = [reported(writer, "h%d" % i, h) for i, h in enumerate(hosts)]
    plan = place([dict(vm, uuid="u", name="g", group="")], capacity)
    if not plan["unplaced"]:
        return
    reason = plan["unplaced"][0]["reason"]
    short_mem = [h for h in capacity if h["mem_free_mib"] < vm["memory_mib"]]
    short_cpu = [h for h in capacity if h["vcpus_free"] < vm["vcpus"]]
    assert short_mem or short_cpu
    assert ("memory" in reason) == bool(short_mem) and ("vCPUs" in reason.split(" free:", 1)[1]) == bool(short_cpu)
    if short_mem:
        most = max(h["mem_free_mib"] for h in short_mem)
        assert "%d MiB" % most in reason
    if short_cpu:
        most = max(h["vcpus_free"] for h in short_cpu)
        assert "%d vCPU" % most in reason


class RunningDomains:
    """Stands in for libvirt: one running domain of 2048 MiB and 1 vCPU, not HA."""

    method = "libvirt"

    def refresh(self, _ha_domains):
        return {"vms": [], "xml": {}, "allocated": {"mem_mib": 2048, "vcpus": 1}, "warnings": []}

    def close(self):
        pass


def test_the_record_carries_the_capacity_after_the_ratios(writer, tmp_path, monkeypatch):
    """A writer without the operator's figures reports the kernel's, through the ratios, in its record."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  %d kB\nMemFree:  100 kB\nMemAvailable:  %d kB\n" % (8192 * 1024, 7000 * 1024))
    boot = tmp_path / "boot_id"
    boot.write_text("0f0f0f0f-1111-2222-3333-444444444444\n")
    conf = writer.parse_config({
        "host": "h1", "store": str(tmp_path / "store"), "require_mount": False, "state_dir": str(tmp_path / "run"),
        "boot_id_path": str(boot), "meminfo_path": str(meminfo), "interval": 0.2,
        "capacity": {"cpu_allocation_ratio": 2.5, "reserved_mem_mib": 1024}})
    monkeypatch.setattr(writer, "make_source", lambda _conf: RunningDomains())
    w = writer.Writer(conf)
    w.beat()
    record = writer.hb.parse_record((tmp_path / "store" / "kvmha" / "hosts" / "h1.json").read_bytes(), expected_host="h1")
    cpus = len(os.sched_getaffinity(0))
    # memory: min((8192 - 1024) x 1.0 - 2048, 7000 - 1024) = 5120; vCPUs: cpus x 2.5 - 1
    assert record["capacity"] == {"mem_free_mib": 5120, "vcpus_free": math.floor(cpus * 2.5) - 1}
    w.stop()
