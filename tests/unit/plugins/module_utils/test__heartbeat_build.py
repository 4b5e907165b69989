# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""build_record (the writer's side of the format) and the optional manifest field."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils import _heartbeat as hb

VM = {"uuid": "6695eb01-f6a4-8304-79aa-97f2502e193f", "name": "g1", "ha": True, "priority": 50,
      "memory_mib": 64, "vcpus": 1, "disks": ["/store/g1.img"], "group": ""}


def _build(**kw):
    args = dict(host="h1", boot_id="b" * 36, seq=7, ts=1764063000.5, interval=2,
                self_fence={"armed": False, "deadline_s": 60}, capacity={"mem_free_mib": 100, "vcpus_free": 2}, vms=[VM])
    args.update(kw)
    return hb.build_record(**args)


def test_build_record_round_trips_through_parse():
    record = _build(manifest={"source": "libvirt", "age_s": 0.2, "error": ""})
    parsed = hb.parse_record(hb.encode_record(record), expected_host="h1")
    assert parsed == record
    assert parsed["manifest"] == {"source": "libvirt", "age_s": 0.2, "error": ""}
    assert isinstance(parsed["interval"], float) and parsed["state"] == "running"


def test_build_record_clamps_negative_capacity():
    record = _build(capacity={"mem_free_mib": -5, "vcpus_free": -1})
    assert record["capacity"] == {"mem_free_mib": 0, "vcpus_free": 0}


@pytest.mark.parametrize("kw, reason", [
    ({"host": "../x"}, "host name"),
    ({"seq": -1}, "seq"),
    ({"vms": [dict(VM, priority=101)]}, "priority"),
    ({"manifest": {"source": "libvirt", "age_s": -1, "error": ""}}, "manifest.field 'age_s'"),
    ({"manifest": {"source": "", "age_s": None, "error": ""}}, "manifest.field 'source'"),
])
def test_build_record_refuses_what_a_reader_would_refuse(kw, reason):
    with pytest.raises(hb.InvalidRecord, match=reason):
        _build(**kw)


def test_manifest_age_may_be_null_and_is_optional():
    assert "manifest" not in hb.parse_record(hb.encode_record(_build()))
    parsed = hb.parse_record(hb.encode_record(_build(manifest={"source": "none", "age_s": None, "error": "never read"})))
    assert parsed["manifest"]["age_s"] is None


def test_stopped_record_from_built_record_keeps_manifest_and_advances_seq():
    record = _build(manifest={"source": "libvirt", "age_s": 1.0, "error": ""})
    stopped = hb.stopped_record(record, "h1", 1764063010.0, "SIGTERM")
    parsed = hb.parse_record(hb.encode_record(stopped))
    assert parsed["state"] == "stopped" and parsed["seq"] == 8 and parsed["vms"] == [VM]


@given(seq=st.integers(min_value=0, max_value=hb.MAX_SAFE_INT), mem=st.integers(-10**6, 10**7), vcpus=st.integers(-64, 4096),
       age=st.one_of(st.none(), st.floats(min_value=0, max_value=1e9)))
def test_built_records_always_parse(seq, mem, vcpus, age):
    record = _build(seq=seq, capacity={"mem_free_mib": mem, "vcpus_free": vcpus},
                    manifest={"source": "virsh", "age_s": age, "error": ""})
    assert hb.parse_record(hb.encode_record(record))["seq"] == seq
