# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure parts of the fence-agent backend: the stdin protocol, metadata checks, secret masking. The agents
themselves run in tests/fencing (scripts/test-stages/50-integration-redfish.sh)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils import _fence_agent
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import BmcError, InvalidInput

METADATA = """<?xml version="1.0" ?>
<resource-agent name="fence_x" shortdesc="x">
<parameters>
  <parameter name="action" required="1"><content type="string" default="reboot"/></parameter>
  <parameter name="ip" required="1" obsoletes="ipaddr"><content type="string"/></parameter>
  <parameter name="ipaddr" required="1" deprecated="1"><content type="string"/></parameter>
  <parameter name="password" required="0" obsoletes="passwd"><content type="string"/></parameter>
  <parameter name="passwd" required="0" deprecated="1"><content type="string"/></parameter>
  <parameter name="lanplus" required="0"><content type="boolean"/></parameter>
</parameters>
<actions><action name="on"/><action name="off"/><action name="status"/><action name="monitor"/></actions>
</resource-agent>
"""

KEY = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10).filter(lambda k: k != "action")
VALUE = st.one_of(st.booleans(), st.integers(),
                  st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
                          max_size=20))


def test_metadata_is_parsed():
    metadata = _fence_agent.AgentMetadata.parse(METADATA, "fence_x")
    assert set(metadata.parameters) == {"action", "ip", "ipaddr", "password", "passwd", "lanplus"}
    assert metadata.actions == {"on", "off", "status", "monitor"}


@pytest.mark.parametrize("given_names, problems", [
    ({"ip", "password"}, []),
    ({"ipaddr", "passwd", "lanplus"}, []),  # the obsolete names satisfy the required ones
    ({"password"}, ["required option 'ip' is missing"]),
    ({"ip", "lan_plus"}, ["unknown option 'lan_plus'"]),
])
def test_metadata_problems(given_names, problems):
    assert _fence_agent.AgentMetadata.parse(METADATA, "fence_x").problems(given_names) == problems


def test_an_agent_without_off_or_status_is_refused():
    metadata = _fence_agent.AgentMetadata.parse(METADATA.replace('<action name="off"/>', ""), "fence_x")
    assert metadata.problems({"ip"}) == ["the agent does not offer action=off"]


def test_bad_metadata():
    with pytest.raises(BmcError):
        _fence_agent.AgentMetadata.parse("Usage: fence_x [options]", "fence_x")


@given(st.dictionaries(KEY, VALUE, max_size=6), st.sampled_from(["status", "off", "on", "monitor"]))
def test_agent_input_round_trips_and_action_comes_last(options, action):
    text = _fence_agent.agent_input(options, action).decode("utf-8")
    # Agents read stdin in text mode, whose lines end at \n and \r only (not at \x0c, \x85 ... as splitlines() would).
    lines = text[:-1].split("\n")
    assert lines[-1] == "action=" + action and text.endswith("\n")
    parsed = dict(line.split("=", 1) for line in lines[:-1])
    assert parsed == {k: _fence_agent.value_text(v) for k, v in options.items()}


@pytest.mark.parametrize("options", [{"ip": "a\nb"}, {"ip": "a\rb"}, {"a=b": "1"}, {"": "1"}])
def test_agent_input_refuses_injection(options):
    """A newline in a value would be a second line - e.g. a smuggled action=reboot."""
    with pytest.raises(InvalidInput):
        _fence_agent.agent_input(options, "off")


def test_text_that_is_not_text_is_refused():
    with pytest.raises(InvalidInput):
        _fence_agent.agent_input({"ip": "\ud800"}, "status")


def test_booleans_are_flags():
    assert _fence_agent.agent_input({"lanplus": True, "verbose": False}, "status") == b"lanplus=1\nverbose=0\naction=status\n"


SECRET = st.text(alphabet=st.characters(blacklist_characters="*", blacklist_categories=("Cs",)), min_size=1,
                 max_size=12)


@given(st.lists(SECRET, min_size=1, max_size=3), st.lists(st.text(max_size=8), max_size=4), st.data())
def test_scrub_leaves_no_secret(secrets, noise, data):
    pieces = noise + secrets + [s + s for s in secrets]
    text = "".join(data.draw(st.permutations(pieces)))
    scrubbed = _fence_agent.scrub(text, secrets)
    for secret in secrets:
        assert secret not in scrubbed


def test_scrub_masks_the_longer_secret_whole():
    assert _fence_agent.scrub("pw=abcdef", ["abc", "abcdef"]) == "pw=********"


def test_tail_keeps_the_end():
    assert _fence_agent.tail("x" * 5000).endswith("x" * _fence_agent.OUTPUT_TAIL)
    assert _fence_agent.tail("  short \n") == "short"


@pytest.mark.parametrize("agent", ["ipmilan", "fence_../../bin/sh", "fence_x;rm", ""])
def test_agent_names(agent):
    with pytest.raises(InvalidInput):
        _fence_agent.find_agent(agent)


def test_absent_agent_is_invalid_input(tmp_path):
    with pytest.raises(InvalidInput, match="not installed"):
        _fence_agent.find_agent("fence_nothing", search_path=(str(tmp_path),))


@pytest.mark.parametrize("kwargs", [
    {"options": {"action": "reboot"}},
    {"secrets": {"option": "x"}},
    {"options": {"password": "a"}, "secrets": {"password": "a"}},
    {"agent_timeout": 0},
])
def test_client_refuses_bad_input(kwargs, tmp_path):
    agent = tmp_path / "fence_x"
    agent.write_text("#!/bin/sh\n")
    agent.chmod(0o755)
    with pytest.raises(InvalidInput):
        _fence_agent.FenceAgentClient(str(agent), **dict({"options": {}}, **kwargs))
