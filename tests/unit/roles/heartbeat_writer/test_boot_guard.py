# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The boot guard's pure parts and its local file handling: verdicts from fenced marks, libvirt definitions,
which autostart links go, libvirt-guests' list, the store read under a deadline, and the installed package."""

from __future__ import annotations

import ast
import os
import pathlib
import sys
import time
import types

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.kvmha.cluster.tests._shipped import BUILD

ROOT = pathlib.Path(__file__).resolve().parents[4]

U1 = "11111111-1111-4111-8111-111111111111"
U2 = "22222222-2222-4222-8222-222222222222"
U3 = "33333333-3333-4333-8333-333333333333"
HA = '<metadata><kvmha:ha xmlns:kvmha="http://kvmha.invalid/xmlns/ha/1" priority="80" group=""/></metadata>'


def domain_xml(name, uuid, ha=True, header=True) -> bytes:
    """A definition as libvirt saves it in /etc/libvirt/qemu (with its warning comment)."""
    text = ("<!--\nWARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE\nOVERWRITTEN AND LOST.\n-->\n"
            if header else "")
    text += "<domain type='qemu'>\n  <name>%s</name>\n  <uuid>%s</uuid>\n  %s\n  <memory unit='KiB'>65536</memory>\n" \
            "</domain>\n" % (name, uuid, HA if ha else "")
    return text.encode()


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "store"
    (path / "kvmha").mkdir(parents=True)
    return str(path)


def marks(boot_guard):
    return sys.modules[boot_guard.__package__ + "._marks"]


def conf(store, **extra):
    return dict({"host": "h1", "store": store, "require_mount": False, "ha_domains": []}, **extra)


# ------------------------------------------------------------------------------------------ verdicts


def test_uuids_are_normalized(boot_guard):
    """The boot guard reads UUIDs with the writer's uuid_or_none (module_utils/_domainxml.py, inlined)."""
    assert boot_guard.writer.uuid_or_none(U1.upper()) == U1
    assert boot_guard.writer.uuid_or_none(U1.replace("-", "")) == U1
    for bad in ("", "  ", "g1", None, 17, ["x"], U1 + "0"):
        assert boot_guard.writer.uuid_or_none(bad) is None


def test_no_mark_and_a_released_mark_are_clear(boot_guard, store):
    docs = marks(boot_guard).documents(store, "fenced")
    assert boot_guard.verdict_from_mark(docs.read("h1")).mode == "clear"
    marks(boot_guard).set_mark(store, "fenced", "h1", "watchdog", {"vms": [U1]})
    marks(boot_guard).clear_mark(store, "fenced", "h1", "watchdog")
    verdict = boot_guard.verdict_from_mark(docs.read("h1"))
    assert verdict.mode == "clear" and "released" in verdict.reason and not verdict.vms


def test_an_active_mark_lists_the_moved_vms(boot_guard, store):
    marks(boot_guard).set_mark(store, "fenced", "h1", "watchdog", {"vms": [U1.upper(), U2], "reason": "SUSPECT (R8)"})
    verdict = boot_guard.verdict_from_mark(marks(boot_guard).documents(store, "fenced").read("h1"))
    assert verdict.mode == "fenced" and verdict.vms == {U1, U2}
    assert "generation 1 by watchdog (SUSPECT (R8))" in verdict.reason and verdict.mark["data"]["vms"] == [U1.upper(), U2]


def test_what_the_mark_says_is_logged_on_one_line(boot_guard, store):
    marks(boot_guard).set_mark(store, "fenced", "h1", "watchdog", {"vms": [U1], "reason": "R8\nfake log line" + "x" * 500})
    verdict = boot_guard.verdict_from_mark(marks(boot_guard).documents(store, "fenced").read("h1"))
    assert "\n" not in verdict.reason and "R8?fake log line" in verdict.reason and len(verdict.reason) < 300


def test_an_active_mark_with_no_vm_moved_disables_nothing(boot_guard, store):
    marks(boot_guard).set_mark(store, "fenced", "h1", "watchdog", {"vms": []})
    verdict = boot_guard.verdict_from_mark(marks(boot_guard).documents(store, "fenced").read("h1"))
    assert verdict.mode == "fenced" and verdict.vms == frozenset()


@pytest.mark.parametrize("data, reason", [
    ({"reason": "fenced by hand"}, "does not list the moved VMs"),
    ({"vms": "11111111-1111-4111-8111-111111111111"}, "does not list the moved VMs"),
    ({"vms": [U1, "g2"]}, "not UUIDs"),
    ({"vms": [U1, None]}, "not UUIDs"),
])
def test_an_active_mark_that_does_not_say_which_vms_moved_is_unknown(boot_guard, store, data, reason):
    marks(boot_guard).set_mark(store, "fenced", "h1", "watchdog", data)
    verdict = boot_guard.verdict_from_mark(marks(boot_guard).documents(store, "fenced").read("h1"))
    assert verdict.mode == "unknown" and reason in verdict.reason


def test_fenced_marks_are_active_whatever_their_ttl(boot_guard, store):
    docs = marks(boot_guard).documents(store, "fenced")
    docs.create("h1", "watchdog", {"vms": [U1]}, ttl=0.01)
    time.sleep(0.05)
    assert boot_guard.verdict_from_mark(docs.read("h1")).mode == "fenced"


# ------------------------------------------------------------------------------------------ the store, under a deadline


def test_read_verdict_reads_this_hosts_mark_only(boot_guard, store):
    marks(boot_guard).set_mark(store, "fenced", "h2", "watchdog", {"vms": [U1]})
    deadline = boot_guard.Deadline(2)
    assert boot_guard.read_verdict(conf(store), deadline).mode == "clear"
    marks(boot_guard).set_mark(store, "fenced", "h1", "watchdog", {"vms": [U2]})
    verdict = boot_guard.read_verdict(conf(store), deadline)
    assert verdict.mode == "fenced" and verdict.vms == {U2}


def test_a_store_without_its_kvmha_directory_is_not_taken_for_an_empty_one(boot_guard, tmp_path):
    verdict = boot_guard.read_verdict(conf(str(tmp_path)), boot_guard.Deadline(2))
    assert verdict.mode == "unknown" and "not (yet) the kvmha store" in verdict.reason


def test_an_unreadable_mark_is_unknown(boot_guard, store):
    directory = os.path.join(store, "kvmha", "fenced", "h1")
    os.makedirs(directory)
    with open(os.path.join(directory, "0000000001.json"), "w", encoding="utf-8") as handle:
        handle.write('{"version": 1, "kind": "fenced", "truncated')
    verdict = boot_guard.read_verdict(conf(store), boot_guard.Deadline(2))
    assert verdict.mode == "unknown" and "not a valid fenced document" in verdict.reason


def test_a_symlinked_mark_is_unknown(boot_guard, store, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.makedirs(os.path.join(store, "kvmha", "fenced"))
    os.symlink(str(elsewhere), os.path.join(store, "kvmha", "fenced", "h1"))
    verdict = boot_guard.read_verdict(conf(store), boot_guard.Deadline(2))
    assert verdict.mode == "unknown" and "symbolic link" in verdict.reason


def test_a_hung_store_is_unknown_within_the_deadline(boot_guard, store, tmp_path, monkeypatch):
    hang = tmp_path / "hang"
    hang.write_text("")
    monkeypatch.setenv("KVMHA_HEARTBEAT_TEST_HANG_FILE", str(hang))
    started = time.monotonic()
    verdict = boot_guard.read_verdict(conf(store), boot_guard.Deadline(0.5))
    assert verdict.mode == "unknown" and "did not answer within 0.5 s" in verdict.reason
    assert time.monotonic() - started < 10 * 0.5  # catches a hang (the store never answers), not a slow machine
    hang.unlink()  # lets the abandoned worker finish


def test_waits_for_the_store_to_be_mounted_within_the_deadline(boot_guard, store, monkeypatch):
    polls = []
    monkeypatch.setattr(boot_guard, "_store_mounted", lambda path: polls.append(path) or len(polls) > 2)
    marks(boot_guard).set_mark(store, "fenced", "h1", "watchdog", {"vms": [U1]})
    assert boot_guard.read_verdict(conf(store, require_mount=True), boot_guard.Deadline(5)).mode == "fenced"
    assert len(polls) == 3


def test_a_store_that_never_gets_mounted_is_unknown(boot_guard, store, monkeypatch):
    monkeypatch.setattr(boot_guard, "_store_mounted", lambda path: False)
    started = time.monotonic()
    verdict = boot_guard.read_verdict(conf(store, require_mount=True), boot_guard.Deadline(0.8))
    assert verdict.mode == "unknown" and ("not mounted" in verdict.reason or "to be mounted" in verdict.reason)
    assert time.monotonic() - started < 10 * 0.8  # catches a hang (waiting for ever), not a slow machine


# ------------------------------------------------------------------------------------------ definitions


def test_parses_a_definition_as_libvirt_saves_it(boot_guard):
    assert boot_guard.parse_definition(domain_xml("g1", U1.upper())) == ("g1", U1, True)
    assert boot_guard.parse_definition(domain_xml("plain", U2, ha=False, header=False)) == ("plain", U2, False)


def test_ha_also_means_listed_in_the_roles_ha_list(boot_guard):
    plain = domain_xml("g3", U3, ha=False)
    assert boot_guard.parse_definition(plain, [{"name": "g3", "priority": 50, "group": ""}])[2] is True
    assert boot_guard.parse_definition(plain, [{"name": U3, "priority": 50, "group": ""}])[2] is True
    assert boot_guard.parse_definition(plain, [{"name": "g4", "priority": 50, "group": ""}])[2] is False


@pytest.mark.parametrize("raw, message", [
    (b"<!DOCTYPE d [<!ENTITY a 'aaaa'><!ENTITY b '&a;&a;&a;'>]><domain><name>&b;</name><uuid>%s</uuid></domain>" % U1.encode(),
     "DTD or entity"),
    (b"<domain><name>g1</name><uuid>%s</uuid>" % U1.encode(), "not well-formed"),
    (b"<network><name>default</name><uuid>%s</uuid></network>" % U1.encode(), "not <domain>"),
    (b"<domain><name>g1</name></domain>", "valid <uuid>"),
    (b"<domain><name>g1</name><uuid>not-a-uuid</uuid></domain>", "valid <uuid>"),
    (b"<domain><uuid>%s</uuid></domain>" % U1.encode(), "no domain name"),
    (b"<domain><name>g1</name><uuid>%s</uuid><description>%s</description></domain>" % (U1.encode(), b"x" * (4 * 2**20)),
     "byte limit"),
])
def test_refuses_definitions_it_cannot_trust(boot_guard, raw, message):
    with pytest.raises(ValueError, match=message):
        boot_guard.parse_definition(raw)


def test_reads_the_config_directory_safely(boot_guard, tmp_path):
    config = tmp_path / "qemu"
    (config / "autostart").mkdir(parents=True)
    (config / "networks").mkdir()
    (config / "g1.xml").write_bytes(domain_xml("g1", U1))
    (config / "plain.xml").write_bytes(domain_xml("plain", U2, ha=False))
    (config / "broken.xml").write_bytes(b"<domain><name>broken</name>")
    (config / "dir.xml").mkdir()
    os.mkfifo(str(config / "fifo.xml"))  # would block a plain open(); O_NONBLOCK and fstat refuse it
    (config / "notes.txt").write_text("not a definition")
    (config / ".xml").write_bytes(domain_xml("nameless", U3))
    os.symlink(str(config / "g1.xml"), str(config / "alias.xml"))
    found = {d.stem: d for d in boot_guard.read_definitions(str(config))}
    assert sorted(found) == ["alias", "broken", "fifo", "g1", "plain"]
    assert (found["g1"].name, found["g1"].uuid, found["g1"].ha, found["g1"].error) == ("g1", U1, True, "")
    assert found["alias"].uuid == U1 and found["plain"].ha is False
    assert "not well-formed" in found["broken"].error and "not a regular file" in found["fifo"].error
    assert boot_guard.read_definitions(str(tmp_path / "missing")) == []


def test_autostart_links_by_stem(boot_guard, tmp_path):
    config = tmp_path / "qemu"
    assert boot_guard.autostart_links(str(config)) == {}
    (config / "autostart").mkdir(parents=True)
    os.symlink(str(config / "g1.xml"), str(config / "autostart" / "g1.xml"))
    (config / "autostart" / "README").write_text("")
    assert boot_guard.autostart_links(str(config)) == {"g1": str(config / "autostart" / "g1.xml")}


def test_removing_a_link_never_touches_what_it_points_to(boot_guard, tmp_path):
    target = tmp_path / "g1.xml"
    target.write_bytes(domain_xml("g1", U1))
    link = tmp_path / "link.xml"
    os.symlink(str(target), str(link))
    boot_guard.remove_link(str(link))
    assert not os.path.lexists(str(link)) and target.read_bytes() == domain_xml("g1", U1)
    (tmp_path / "adir.xml").mkdir()
    with pytest.raises(OSError):
        boot_guard.remove_link(str(tmp_path / "adir.xml"))


# ------------------------------------------------------------------------------------------ what goes


def definitions(boot_guard):
    return [
        boot_guard.Definition("g1", "/q/g1.xml", "g1", U1, True),
        boot_guard.Definition("g2", "/q/g2.xml", "g2", U2, True),
        boot_guard.Definition("plain", "/q/plain.xml", "plain", U3, False),
        boot_guard.Definition("broken", "/q/broken.xml", error="not well-formed XML"),
        boot_guard.Definition("idle", "/q/idle.xml", "idle", "44444444-4444-4444-8444-444444444444", True),
    ]


LINKS = {stem: "/q/autostart/%s.xml" % stem for stem in ("g1", "g2", "plain", "broken", "orphan")}


def removed(boot_guard, verdict):
    return sorted(d.stem for d, _link, _why in boot_guard.plan_removals(verdict, definitions(boot_guard), LINKS))


def test_clear_removes_nothing(boot_guard):
    assert removed(boot_guard, boot_guard.Verdict("clear", "no mark")) == []


def test_fenced_removes_the_moved_vms_and_what_cannot_be_read(boot_guard):
    verdict = boot_guard.Verdict("fenced", "mark", [U1, U3, "55555555-5555-4555-8555-555555555555"])
    assert removed(boot_guard, verdict) == ["broken", "g1", "plain"]


def test_unknown_removes_every_ha_domain_and_what_cannot_be_read(boot_guard):
    assert removed(boot_guard, boot_guard.Verdict("unknown", "store hung")) == ["broken", "g1", "g2"]


def test_each_removal_says_why(boot_guard):
    plan = boot_guard.plan_removals(boot_guard.Verdict("unknown", "store hung"), definitions(boot_guard), LINKS)
    why = {d.stem: text for d, _link, text in plan}
    assert "cannot be read" in why["broken"] and "store hung" in why["g1"]
    assert {link for _d, link, _why in plan} == {LINKS["broken"], LINKS["g1"], LINKS["g2"]}


UUIDS = st.sampled_from([U1, U2, U3, "44444444-4444-4444-8444-444444444444", "55555555-5555-4555-8555-555555555555"])
DEFINITIONS = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", "e", "f"]), UUIDS, st.booleans(), st.booleans()),
                       unique_by=lambda t: t[0], max_size=6)


@settings(max_examples=300)
@given(DEFINITIONS, st.sets(st.sampled_from(["a", "b", "c", "d", "e", "f", "g"])), st.sets(UUIDS),
       st.sampled_from(["clear", "fenced", "unknown"]))
def test_removals_are_exactly_the_cautious_set(boot_guard, raw, linked, moved, mode):
    """Whatever the definitions, links and mark: a link goes iff its definition exists and is unreadable, or is one
    of the moved VMs (fenced), or is HA (unknown); clear removes nothing; a link without a definition stays."""
    defs = [boot_guard.Definition(stem, "/q/%s.xml" % stem, stem, uuid, ha, "bad" if broken else "")
            for stem, uuid, ha, broken in raw]
    links = {stem: "/q/autostart/%s.xml" % stem for stem in linked}
    plan = boot_guard.plan_removals(boot_guard.Verdict(mode, "test", moved), defs, links)
    got = {d.stem for d, _link, _why in plan}
    expected = set()
    if mode != "clear":
        for d in defs:
            if d.stem in links and (d.error or (mode == "fenced" and d.uuid in moved) or (mode == "unknown" and d.ha)):
                expected.add(d.stem)
    assert got == expected
    assert all(link == links[d.stem] for d, link, _why in plan)


# ------------------------------------------------------------------------------------------ libvirt-guests


def test_guests_list_loses_only_the_dropped_uuids(boot_guard):
    text = "qemu:///system %s %s\nqemu:///session %s\n\nlxc:/// %s\n" % (U1, U2, U1.upper(), U3)
    new, dropped = boot_guard.filter_guests_list(text, {U1})
    assert new == "qemu:///system %s\n\nlxc:/// %s\n" % (U2, U3)
    assert dropped == [U1, U1.upper()]
    assert boot_guard.filter_guests_list(text, {"55555555-5555-4555-8555-555555555555"}) == (text, [])
    assert boot_guard.filter_guests_list("qemu:///system %s\n" % U1, {U1}) == ("", [U1])


def test_guests_to_drop(boot_guard):
    defs = definitions(boot_guard)
    assert boot_guard.guests_to_drop(boot_guard.Verdict("fenced", "", [U3]), defs) == {U3}
    assert boot_guard.guests_to_drop(boot_guard.Verdict("unknown", ""), defs) == {U1, U2, "44444444-4444-4444-8444-444444444444"}
    assert boot_guard.guests_to_drop(boot_guard.Verdict("clear", ""), defs) == frozenset()


def test_update_guests_list_rewrites_it_in_place_keeping_its_mode(boot_guard, tmp_path):
    path = tmp_path / "libvirt-guests"
    assert boot_guard.update_guests_list(str(path), {U1}, dry_run=False) == []
    path.write_text("qemu:///system %s %s\n" % (U1, U2))
    path.chmod(0o600)
    assert boot_guard.update_guests_list(str(path), {U1}, dry_run=True) == [U1]
    assert path.read_text() == "qemu:///system %s %s\n" % (U1, U2)
    assert boot_guard.update_guests_list(str(path), {U1}, dry_run=False) == [U1]
    assert path.read_text() == "qemu:///system %s\n" % U2 and (path.stat().st_mode & 0o777) == 0o600
    assert boot_guard.update_guests_list(str(path), {U1}, dry_run=False) == []


# ------------------------------------------------------------------------------------------ the run, in process


def args_for(tmp_path, config, **extra):
    values = {"config": str(config), "store_timeout": 2.0, "libvirt_config_dir": str(tmp_path / "qemu"),
              "guests_list": str(tmp_path / "guests"), "dry_run": False}
    values.update(extra)
    return types.SimpleNamespace(**values)


def test_a_bug_falls_back_to_the_cautious_answer(boot_guard, tmp_path, monkeypatch):
    (tmp_path / "qemu" / "autostart").mkdir(parents=True)
    (tmp_path / "qemu" / "g1.xml").write_bytes(domain_xml("g1", U1))
    os.symlink(str(tmp_path / "qemu" / "g1.xml"), str(tmp_path / "qemu" / "autostart" / "g1.xml"))
    monkeypatch.setattr(boot_guard, "run", lambda args: 1 / 0)
    status = boot_guard.main(["--config", str(tmp_path / "none.json"), "--libvirt-config-dir", str(tmp_path / "qemu"),
                              "--guests-list", str(tmp_path / "guests")])
    assert status == 1 and not os.path.lexists(str(tmp_path / "qemu" / "autostart" / "g1.xml"))


def test_an_unusable_configuration_is_unknown(boot_guard, tmp_path):
    (tmp_path / "bad.json").write_text('{"host": "../etc", "store": "/srv"}')
    summary, status = boot_guard.run(args_for(tmp_path, tmp_path / "bad.json"))
    assert status == 0 and summary["mode"] == "unknown" and "configuration cannot be used" in summary["reason"]


def test_a_link_that_cannot_be_removed_fails_the_run(boot_guard, tmp_path, store, monkeypatch):
    (tmp_path / "qemu" / "autostart").mkdir(parents=True)
    (tmp_path / "qemu" / "g1.xml").write_bytes(domain_xml("g1", U1))
    os.symlink(str(tmp_path / "qemu" / "g1.xml"), str(tmp_path / "qemu" / "autostart" / "g1.xml"))
    marks(boot_guard).set_mark(store, "fenced", "h1", "watchdog", {"vms": [U1]})
    (tmp_path / "conf.json").write_text('{"host": "h1", "store": "%s", "require_mount": false}' % store)

    def refuse(path):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(boot_guard, "remove_link", refuse)
    summary, status = boot_guard.run(args_for(tmp_path, tmp_path / "conf.json"))
    assert status == 1 and summary["mode"] == "fenced" and summary["removed"] == []
    assert "Read-only file system" in summary["errors"][0]


# ------------------------------------------------------------------------------------------ the installed package


def _imports(path):
    tree = ast.parse(path.read_text(), str(path))
    absolute, relative = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            absolute.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                relative.update([node.module] if node.module else [alias.name for alias in node.names])
            else:
                absolute.add(node.module.split(".")[0])
    return absolute, relative


def test_the_installed_package_is_standard_library_only_complete_and_imported_at_the_start():
    """Every file of kvmha-heartbeat.pyz imports only the standard library (the writer's libvirt binding is optional)
    and modules the archive holds too: the mark and record formats are the collection's own files, unchanged. And
    it imports them at its top, at the start: a deploy may replace the archive under a running writer, and a later
    import would read the new archive (files/pyz_main.py)."""
    members = BUILD.members()
    assert {"_errors.py", "_deadline.py", "_heartbeat.py", "_storefile.py", "_marks.py"} <= {name.split("/")[-1] for name in members}
    modules = {name[len("kvmha/"):-3] for name in members if name.startswith("kvmha/")}
    assert {"writer", "boot_guard"} <= modules
    for name, source in members.items():
        absolute, relative = _imports(source)
        foreign = absolute - set(sys.stdlib_module_names) - {"__future__"} - ({"libvirt"} if name == "kvmha/writer.py" else set())
        assert not foreign, (name, foreign)
        assert relative <= modules, (name, relative - modules)
        code = [node for node in ast.parse(source.read_text()).body if not isinstance(node, (ast.Import, ast.ImportFrom))]
        late = [node.lineno for top in code for node in ast.walk(top) if isinstance(node, ast.ImportFrom) and node.level]
        assert not late, (name, late)
