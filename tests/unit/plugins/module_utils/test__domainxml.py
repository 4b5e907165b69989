# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The HA marker as text: what ha_vm writes reads back unchanged, malformed markers are read as the writer reads
them (and always rewritten), and a tagging written once needs no second write."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils import _domainxml as marker
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput

PRIORITIES = st.integers(0, 100)
# Any printable text, markup and quotes included: the group is an attribute value and must survive escaping.
GROUPS = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=marker.MAX_GROUP).filter(str.isprintable)
MARKERS = st.one_of(st.none(), st.builds(marker.render_marker, PRIORITIES, GROUPS),
                    st.sampled_from(['<ha priority="high"/>', "<ha/>", '<other priority="5"/>', "<ha priority='101' group=''/>",
                                     "not xml", '<!DOCTYPE x [<!ENTITY a "b">]><ha priority="1"/>']))


@given(PRIORITIES, GROUPS)
def test_what_is_written_reads_back_unchanged(priority, group):
    assert marker.read_marker(marker.render_marker(priority, group)) == {"ha": True, "priority": priority, "group": group, "problems": []}


@given(st.dictionaries(st.sampled_from(marker.MARKER_SCOPES), MARKERS), st.sampled_from(["present", "absent"]), PRIORITIES, GROUPS)
def test_one_write_makes_every_scope_what_was_asked(current, state, priority, group):
    """Writing the scopes that differ leaves none that differs: a second run of the same tagging changes nothing."""
    target = marker.wanted_marker(state, priority, group)
    before = {scope: marker.read_marker(text) for scope, text in current.items()}
    written = marker.scopes_to_write(before, target)
    element = marker.render_marker(priority, group) if target["ha"] else None
    after = dict(before, **{scope: marker.read_marker(element) for scope in written})
    assert marker.scopes_to_write(after, target) == []
    assert set(written) <= set(current)


@pytest.mark.parametrize("text, priority, problem", [
    ('<ha priority="high" group="db"/>', 50, "priority 'high' is not an integer 0-100"),
    ('<ha priority="101"/>', 50, "priority '101' is not an integer 0-100"),
    ('<ha priority="-1"/>', 50, "priority '-1' is not an integer 0-100"),
    ('<ha priority="1.5"/>', 50, "priority '1.5' is not an integer 0-100"),
    ('<ha group="db"/>', 50, "no priority attribute"),
])
def test_an_unreadable_priority_counts_as_the_default_like_the_writer_reads_it(text, priority, problem):
    read = marker.read_marker(text)
    assert read["ha"] is True and read["priority"] == priority and read["problems"][0].startswith(problem)
    assert marker.scopes_to_write({"live": read}, marker.wanted_marker("present", 50, read["group"])) == ["live"]


@pytest.mark.parametrize("text, problem", [
    ('<other priority="5"/>', "the HA namespace holds <other>, not <ha>"),
    ("not xml", "the element of the HA namespace is not XML"),
    ('<!DOCTYPE x [<!ENTITY a "b">]><ha priority="&a;"/>', "the element of the HA namespace is oversized or holds a DTD"),
    ("<ha priority='1' group='%s'/>" % ("x" * 70000), "the element of the HA namespace is oversized"),
])
def test_anything_else_in_the_namespace_is_not_ha_and_is_removed_by_absent(text, problem):
    read = marker.read_marker(text)
    assert read["ha"] is False and read["problems"][0].startswith(problem)
    assert marker.scopes_to_write({"config": read}, marker.wanted_marker("absent", 50, "")) == ["config"]


def test_a_group_longer_than_the_writer_keeps_is_cut_and_flagged():
    read = marker.read_marker('<ha priority="10" group="%s"/>' % ("g" * 300))
    assert read["group"] == "g" * 255 and read["problems"] == ["group is longer than 255 characters: it is cut"]


@pytest.mark.parametrize("priority, group", [(101, ""), (-1, ""), (True, ""), ("50", ""), (50, "g" * 256), (50, "a\nb"),
                                             (50, "tab\there"), (50, None)])
def test_refused_taggings(priority, group):
    with pytest.raises(InvalidInput):
        marker.wanted_marker("present", priority, group)


def test_absent_needs_no_valid_priority_or_group():
    assert marker.wanted_marker("absent", 999, "\x00") == marker.no_marker()
