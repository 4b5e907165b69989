# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Domain XML read one way (module_utils/_domainxml.py). The HA marker as text: what ha_vm writes reads back
unchanged, malformed markers are read as the writer reads them (and always rewritten), and a tagging written once
needs no second write. Memory units are libvirt's own (checked against its test driver), UUIDs have one canonical
form, and whatever the parser is given it either parses or refuses with a DomainXMLError."""

from __future__ import annotations

import pathlib
import re
import uuid
from xml.etree import ElementTree

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.module_utils import _domainxml as marker
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput
from ansible_collections.kvmha.cluster.tests._require import require_module

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


# ------------------------------------------------------------------------------------------ memory units


def memory(amount, unit=None):
    return ElementTree.fromstring("<memory%s>%s</memory>" % ("" if unit is None else " unit='%s'" % unit, amount))


def libvirt_kib(conn, libvirt, amount, unit):
    """What libvirt's own parser makes of <memory unit=...>: the KiB it reads back, or None when it refuses it."""
    xml = "<domain type='test'><name>units</name><memory unit='%s'>%d</memory><os><type>hvm</type></os></domain>" % (unit, amount)
    try:
        dom = conn.defineXML(xml)
    except libvirt.libvirtError:
        return None
    try:
        return int(re.search(r"<memory unit='KiB'>(\d+)</memory>", dom.XMLDesc(0)).group(1))
    finally:
        dom.undefine()


# Every unit of the table in the spellings people write (libvirt reads them case-insensitively), and near misses.
# The first list is libvirt's (formatdomain, and its parser virScaleInteger for "byte", P and E), not the table's.
LIBVIRT_UNITS = ("b", "byte", "bytes", "k", "KiB", "KB", "M", "MiB", "MB", "G", "GiB", "GB", "T", "TiB", "TB", "P", "PiB", "PB",
                 "E", "EiB", "EB")
SPELLINGS = sorted(set(LIBVIRT_UNITS) | set(marker.MEMORY_UNITS) | {u.upper() for u in marker.MEMORY_UNITS}
                   | {u[0].upper() + u[1:] for u in marker.MEMORY_UNITS})
NOT_UNITS = ("furlongs", "KiBB", "ki", "bit", "kibibytes", "KiB ", "mbit", "Z", "ZiB", "YB")


def test_the_unit_table_is_libvirts():
    """libvirt's test driver reads each unit to the same KiB (it rounds bytes up to KiB) and refuses the others."""
    libvirt = require_module("libvirt", "the venv's libvirt binding (libvirt-python, built by scripts/setup.sh)")
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open("test:///default")
    try:
        for unit in SPELLINGS:
            per_unit = marker.MEMORY_UNITS[unit.lower()]
            for amount in (n for n in (1, 3, 999, 1000001) if n * per_unit < 2 ** 62):
                kib = libvirt_kib(conn, libvirt, amount, unit)
                assert kib == -(-amount * per_unit // 1024), (amount, unit, kib)
                assert marker.memory_mib(memory(amount, unit)) == -(-kib // 1024), (amount, unit)
        for unit in NOT_UNITS:
            assert libvirt_kib(conn, libvirt, 1, unit) is None, unit
            with pytest.raises(marker.DomainXMLError):
                marker.memory_mib(memory(1, unit))
    finally:
        conn.close()


@given(st.integers(0, 2 ** 40))
def test_units_agree_with_each_other(mib):
    """The same memory in any binary unit is the same MiB; a byte over rounds up, as libvirt's KiB do."""
    assert marker.memory_mib(memory(mib * 1024)) == marker.memory_mib(memory(mib * 1024, "k")) == mib
    assert marker.memory_mib(memory(mib, "M")) == marker.memory_mib(memory(mib * 2 ** 20, "bytes")) == mib
    assert marker.memory_mib(memory(mib * 2 ** 20 + 1, "b")) == marker.memory_mib(memory(mib * 1024 + 1)) == mib + 1
    assert marker.memory_mib(memory(mib, "MB")) == -(-mib * 1000 ** 2 // 2 ** 20)


@pytest.mark.parametrize("element", ["<memory unit='KiB'>-1</memory>", "<memory>1.5</memory>", "<memory unit='MiB'>lots</memory>"])
def test_memory_that_is_not_a_whole_amount_is_refused(element):
    with pytest.raises(marker.DomainXMLError):
        marker.memory_mib(ElementTree.fromstring(element))


@pytest.mark.parametrize("element, current, count", [
    (None, False, None), ("<vcpu/>", False, None), ("<vcpu>4</vcpu>", False, 4), ("<vcpu current='2'>4</vcpu>", False, 4),
    ("<vcpu current='2'>4</vcpu>", True, 2), ("<vcpu>4</vcpu>", True, 4)])
def test_vcpus_maximum_or_current(element, current, count):
    assert marker.vcpu_count(None if element is None else ElementTree.fromstring(element), current) == count


# ------------------------------------------------------------------------------------------ UUIDs, parsing


@given(st.uuids(), st.sampled_from(["{}", "urn:uuid:{}", " {} ", "{{{}}}"]), st.booleans(), st.booleans())
def test_a_uuid_has_one_canonical_form(value, form, upper, dashes):
    text = str(value) if dashes else value.hex
    text = form.format(text.upper() if upper else text)
    assert marker.uuid_or_none(text) == marker.normalise_uuid(text) == str(value)


@example(10 ** 31)  # 32 digits: a UUID once made a string (hypothesis found it)
@given(st.one_of(st.text(max_size=40), st.integers(), st.none()))
def test_anything_else_is_not_a_uuid(value):
    try:
        canonical = str(uuid.UUID(value.strip()))
    except (AttributeError, ValueError):
        canonical = None
    assert marker.uuid_or_none(value) == canonical
    if canonical is None:
        with pytest.raises(marker.DomainXMLError, match="is not a UUID"):
            marker.normalise_uuid(value, "uuid")


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_the_parser_parses_or_refuses_clearly(raw):
    """Whatever it is given, the parser returns an element or raises DomainXMLError (an InvalidInput and a ValueError)."""
    try:
        marker.parse_xml(raw, 100)
    except marker.DomainXMLError as err:
        assert isinstance(err, InvalidInput) and isinstance(err, ValueError) and str(err)


@pytest.mark.parametrize("raw, words", [
    ('<!DOCTYPE d [<!ENTITY a "b">]><domain/>', "DTD or entity"),
    ("<domain>" + "x" * 200 + "</domain>", "byte limit"),
    (b"<domain>\xff</domain>", "not UTF-8"),
    ("<domain><name>", "malformed: not well-formed XML"),
    ("<network/>", "<network>, not <domain>"),
])
def test_domain_xml_refused(raw, words):
    with pytest.raises(marker.DomainXMLError, match=re.escape(words)):
        marker.domain_root(raw, 100)


def test_lab_copies_of_the_namespace_are_the_same():
    """The lab writes the marker itself (lab/config.py; lab/remote_libvirt.py runs inside a host, imports nothing)."""
    root = pathlib.Path(__file__).resolve().parents[4]
    for path in ("lab/config.py", "lab/remote_libvirt.py"):
        assert re.findall(r"^HA_NAMESPACE = '([^']+)'$", (root / path).read_text(), re.M) == [marker.HA_NAMESPACE], path
