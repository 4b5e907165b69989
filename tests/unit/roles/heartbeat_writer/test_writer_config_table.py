# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The writer's table of configuration keys (``SETTINGS``) drives its parser, and the role's argument spec, its
configuration template and docs/WRITER.md agree with it."""

from __future__ import annotations

import json
import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[4]
ROLE = ROOT / "roles" / "heartbeat_writer"
BEGIN, END = "<!-- writer-config: begin -->", "<!-- writer-config: end -->"
# What the argument spec may say differently from the writer, and why.
ROLE_DERIVES_DEFAULT = {
    "host": "the role's default is the inventory name",
    "store": "required: the inventory contract's kvmha_store_path",
    "self_fence.peers": "the role's default (null) means the other cluster hosts' kvmha_private_ip",
}
ARGSPEC_TYPES = {
    "number": {"float"}, "int": {"int"}, "bool": {"bool"}, "choice": {"str"}, "string": {"str"}, "word": {"str"},
    "host": {"str"}, "path": {"str", "path"}, "addresses": {"list"}, "argv": {"list"}, "domains": {"list"},
}


def argument_spec():
    return yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]


def doc_value(value) -> str:
    return "`%s`" % json.dumps(value) if value is not None else "null"


def render_table(writer) -> str:
    """docs/WRITER.md's table of the configuration file, from the writer's own table."""
    lines = ["| key | default | range | meaning | role variable |", "|---|---|---|---|---|"]
    for setting in writer.SETTINGS:
        lines.append("| `%s` | %s | %s | %s | %s |" % (
            setting.key, doc_value(setting.default), setting.range_text() or "-", setting.doc,
            "`%s`" % setting.role_var if setting.role_var else "-"))
    for setting in writer.DOMAIN_ENTRY:
        lines.append("| `ha_domains[].%s` | %s | %s | %s | `heartbeat_writer_ha_domains[].%s` |" % (
            setting.key, doc_value(setting.default), setting.range_text() or "-", setting.doc, setting.key))
    return "\n".join(lines)


def test_writer_md_lists_the_table(writer):
    text = (ROOT / "docs" / "WRITER.md").read_text()
    documented = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    expected = render_table(writer)
    assert documented == expected, "docs/WRITER.md's configuration table is out of date; it should read:\n" + expected


def test_the_defaults_are_the_tables(writer):
    conf = writer.parse_config({"host": "h1", "store": "/srv/store"})
    for setting in writer.SETTINGS:
        if setting.default is None and not setting.nullable:
            continue
        section, _dot, leaf = setting.key.partition(".")
        value = conf[section][leaf] if leaf else conf[section]
        assert value == setting.parse(setting.default, setting.key), setting.key


def test_every_role_variable_of_the_table_is_in_the_argument_spec_with_the_same_default_and_type(writer):
    options = argument_spec()
    for setting in writer.SETTINGS:
        if setting.role_var is None:
            continue
        option = options.get(setting.role_var)
        assert option is not None, "%s: %s is not in the role's argument spec" % (setting.key, setting.role_var)
        assert option.get("type", "str") in ARGSPEC_TYPES[setting.kind], setting.key
        assert tuple(option.get("choices", ())) == tuple(setting.choices), setting.key
        if setting.key not in ROLE_DERIVES_DEFAULT:
            assert option.get("default") == setting.default, "%s: the role's default %r, the writer's %r" % (
                setting.key, option.get("default"), setting.default)


def test_the_ha_domains_entries_agree_with_the_argument_spec(writer):
    suboptions = argument_spec()["heartbeat_writer_ha_domains"]["options"]
    assert set(suboptions) == {s.key for s in writer.DOMAIN_ENTRY}
    for setting in writer.DOMAIN_ENTRY:
        assert suboptions[setting.key].get("default") == setting.default, setting.key


def test_the_template_sets_every_key_with_a_role_variable_and_nothing_else(writer):
    template = (ROLE / "templates" / "heartbeat.json.j2").read_text()
    used = set(re.findall(r"\b(heartbeat_writer_[a-z_]+|kvmha_store_path)\b", template)) - {"heartbeat_writer__peers"}
    wanted = {s.role_var for s in writer.SETTINGS if s.role_var}
    # The peers reach the template through the preflight, which works out the default (heartbeat_writer__peers).
    assert used | {"heartbeat_writer_self_fence_peers"} == wanted


def numeric(writer):
    return [s for s in writer.SETTINGS + writer.DOMAIN_ENTRY if s.kind in ("number", "int")]


def test_every_numeric_key_takes_its_bounds_and_refuses_what_lies_beyond(writer):
    for setting in numeric(writer):
        for inside in (setting.low, setting.high):
            assert setting.parse(inside, setting.key) == inside
        for outside in (setting.low - 1, setting.high * 2 + 1, True, "1", float("nan")):
            with pytest.raises(writer.ConfigError, match=re.escape(setting.key)):
                setting.parse(outside, setting.key)
        if setting.nullable:
            assert setting.parse(None, setting.key) is None
        else:
            with pytest.raises(writer.ConfigError):
                setting.parse(None, setting.key)


@pytest.mark.parametrize("doc, message", [
    ({"store": "/s"}, "^host: "),
    ({"host": "h1", "store": "/s", "libvirt": "qemu:///system"}, "libvirt must be an object"),
    ({"host": "h1", "store": "/s", "libvirt": {"uri": ""}}, "libvirt.uri must be a libvirt URI"),
    ({"host": "h1", "store": "/s", "libvirt": {"uri": "", "method": "none"}}, None),
    ({"host": "h1", "store": "/s", "libvirt": {"virsh": ""}}, "libvirt.virsh must be a non-empty string"),
    ({"host": "h1", "store": "/s", "xml_mode": "0999"}, "octal"),
    ({"host": "h1", "store": "/s", "xml_mode": "1777"}, "between 0000 and 0777"),
    ({"host": "h1", "store": "/s", "require_mount": "yes"}, "require_mount must be a boolean"),
    ({"host": "h1", "store": "/s", "ha_domains": {}}, "ha_domains must be a list"),
    ({"host": "h1", "store": "/s", "ha_domains": [{"priority": 5}]}, r"ha_domains\[0\].name must be"),
    ({"host": "h1", "store": "/s", "ha_domains": ["g", {"name": "x", "group": "y" * 256}]}, r"ha_domains\[1\].group .*255"),
    ({"host": "h1", "store": "/s", "self_fence": {"command": "/bin/true"}}, "self_fence.command must be a list"),
    ({"host": "h1", "store": "/s", "self_fence": {"peers": "10.0.0.1"}}, "self_fence.peers must be a list"),
    ({"host": "h1", "store": "/s",
      "self_fence": {"armed": True, "peers": ["10.0.0.2"], "action": "watchdog", "watchdog_timeout": 4}}, "more than 2 x interval"),
    (["host"], "the configuration must be an object"),
])
def test_messages_name_the_key(writer, doc, message):
    if message is None:
        assert writer.parse_config(doc)["libvirt"]["uri"] == ""
        return
    with pytest.raises(writer.ConfigError, match=message):
        writer.parse_config(doc)


def test_paths_are_normalised_and_lists_are_not_shared_between_parses(writer):
    conf = writer.parse_config({"host": "h1", "store": "/srv//store/"})
    assert conf["store"] == "/srv/store"
    conf["self_fence"]["command"].append("/bin/x")
    assert writer.parse_config({"host": "h1", "store": "/s"})["self_fence"]["command"] == []
