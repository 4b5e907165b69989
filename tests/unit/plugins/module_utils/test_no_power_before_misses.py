# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 17's regression guard: nothing is fenced (or recovered) before the policy's missed-beat count.

The reader's judgement (``StalenessJudge``, as kvm_heartbeat runs it with the policy's ``heartbeat_misses``) feeds the
decision (``_decision.decide``, as host_investigate runs it) with the worst evidence there is - the BMC says off or
on, nobody pings, management is silent, the disks are idle, a self-fence long past its deadline - at any moment of
any beat pattern. Whenever the last new sequence number is less than ``misses x interval`` of reader time old, the
action is neither a fence nor a recovery. Probes may start earlier (issue 17 asks them to); power may not."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils._decision import decide
from ansible_collections.kvmha.cluster.plugins.module_utils._heartbeat import StalenessJudge
from ansible_collections.kvmha.cluster.plugins.module_utils._policy import effective_policy
from ansible_collections.kvmha.cluster.tests.unit.plugins.module_utils.test__heartbeat import Clocks, reading_at

SKEW = 2.0
POWER = ("fence", "recover")


def worst_evidence(state: dict, bmc: str, mgmt) -> dict:
    return {"host": "h1", "cluster": "c1", "observer": {"ok": True}, "mgmt": {"reachable": mgmt},
            "heartbeat": dict(state, self_fence={"armed": True, "deadline_s": 0.0}),
            "neighbors": {"reachable": 0, "unreachable": 2}, "bmc": {"power": bmc}, "disk_activity": "none"}


@settings(max_examples=300, deadline=None)
@given(
    misses=st.integers(1, 6),
    interval=st.sampled_from([0.5, 1.0, 2.0, 5.0]),
    steps=st.lists(st.tuples(st.floats(0.0, 6.0), st.booleans()), min_size=1, max_size=25),
    first_age=st.floats(0.0, 60.0),
    ts_offset=st.floats(-100.0, 100.0),
    bmc=st.sampled_from(["on", "off", "unknown"]),
    mgmt=st.sampled_from([False, None]),
)
def test_no_power_action_before_the_policys_missed_beat_count(misses, interval, steps, first_age, ts_offset, bmc, mgmt):
    policy = effective_policy({"heartbeat_misses": misses, "trust_self_fence": True, "fence_hung": True,
                               "fence_isolated": True, "self_fence_margin_s": 0})
    clocks = Clocks()
    judge = StalenessJudge(misses=policy["heartbeat_misses"], skew_allowance=SKEW, wall=clocks.wall,
                           monotonic=clocks.monotonic)
    seq = 1
    state = judge.judge(reading_at(clocks, seq, age=first_age, ts_offset=ts_offset, interval=interval))
    since_change = max(0.0, first_age - SKEW)  # the first look never overstates the age
    for pause, beat in steps:
        clocks.advance(pause)
        since_change += pause
        if beat:
            seq, since_change = seq + 1, 0.0
        state = judge.judge(reading_at(clocks, seq, ts_offset=ts_offset, interval=interval))
        action = decide([worst_evidence(state.as_dict(), bmc, mgmt)], {"c1": {"size": 5, "fenced": 0}}, policy,
                        clocks.wall())["decisions"]["h1"]["action"]
        if since_change < misses * interval - 1e-9:
            assert action not in POWER, (since_change, misses * interval, state.status, action)


def test_the_same_evidence_fences_once_the_count_is_reached():
    """The guard above can fail: past misses x interval the same evidence with the BMC saying on is a fence."""
    policy = effective_policy({"heartbeat_misses": 3})
    clocks = Clocks()
    judge = StalenessJudge(misses=3, skew_allowance=SKEW, wall=clocks.wall, monotonic=clocks.monotonic)
    judge.judge(reading_at(clocks, 1, interval=2.0))
    actions = []
    for _beat in range(4):
        clocks.advance(2.0)
        state = judge.judge(reading_at(clocks, 1, interval=2.0))
        actions.append(decide([worst_evidence(state.as_dict(), "on", None)], {"c1": {"size": 5, "fenced": 0}}, policy,
                              clocks.wall())["decisions"]["h1"]["action"])
    assert actions == ["alert", "alert", "fence", "fence"]  # R4 (a live heartbeat, silent management), then R8
