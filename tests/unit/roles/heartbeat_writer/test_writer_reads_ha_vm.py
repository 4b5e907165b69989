# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What ha_vm writes is what the heartbeat writer reads, and ha_vm_info reads a marker - a malformed one too -
exactly as the writer does: one namespace, one priority rule."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils import _domainxml as marker

DOMAIN = "<domain type='test'><name>g</name><uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid><metadata>%s</metadata></domain>"


def in_domain(element: str) -> str:
    """The element as libvirt puts it in the domain XML: with the namespace's prefix and declaration."""
    return DOMAIN % element.replace("<ha ", '<kvmha:ha xmlns:kvmha="%s" ' % marker.HA_NAMESPACE, 1)


def test_one_namespace(writer):
    assert writer.HA_NAMESPACE == marker.HA_NAMESPACE and writer.DEFAULT_PRIORITY == marker.DEFAULT_PRIORITY


@given(st.integers(0, 100), st.text(max_size=marker.MAX_GROUP).filter(str.isprintable))
def test_the_writer_reads_what_ha_vm_writes(writer, priority, group):
    vm = writer.parse_domain(in_domain(marker.render_marker(priority, group)))
    assert (vm["ha"], vm["priority"], vm["group"]) == (True, priority, group)


@given(st.one_of(st.text(max_size=8).filter(str.isprintable), st.integers(-5, 105).map(str), st.sampled_from([" 7", "+7", "07", "1e2", "٣"])))
def test_a_priority_is_read_as_the_writer_reads_it(writer, raw):
    element = '<ha priority=%s group="g"/>' % quoteattr(raw)
    vm, read = writer.parse_domain(in_domain(element)), marker.read_marker(element)
    assert (vm["ha"], vm["priority"], vm["group"]) == (read["ha"], read["priority"], read["group"])
    assert bool(vm["warnings"]) == bool(read["problems"])
