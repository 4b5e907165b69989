# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""heartbeat_writer_state=absent, run for real by ansible-playbook without the lab or molecule, on a stand-in
systemd (fake_systemd.py)."""

from __future__ import annotations

import pathlib

import pytest

from ansible_collections.kvmha.cluster.tests._require import require
from ansible_collections.kvmha.cluster.tests.unit.roles.heartbeat_writer.fake_systemd import FakeHost, namespaces_work

UNITS = ("kvmha-heartbeat.service", "kvmha-boot-guard.service")


class Host(FakeHost):
    """An installed writer as the role leaves it, under one temporary directory."""

    def __init__(self, base: pathlib.Path):
        super().__init__(base)
        for directory in (self.install / "kvmha", self.config.parent):
            directory.mkdir(parents=True)
        for unit in UNITS:
            (self.units / unit).write_text("[Service]\n")
            (self.state / (unit + ".active")).touch()
            (self.state / (unit + ".enabled")).touch()
        (self.units / "other.service").write_text("[Service]\n")  # not the role's: stays
        (self.install / "kvmha-heartbeat.pyz").write_text("")
        (self.install / "kvmha" / "writer.py").write_text("")  # and the layout before the one archive
        (self.install / "kvmha-heartbeat.py").write_text("")
        self.config.write_text("{}")
        (base / "store").mkdir()

    def uninstall(self):
        return self.deploy({"kvmha_store_path": str(self.base / "store"), "heartbeat_writer_state": "absent"})


@pytest.fixture
def host(tmp_path):
    require(namespaces_work(), "root and unshare -m, to give the role a private /etc/systemd/system")
    return Host(tmp_path)


def test_absent_stops_disables_and_removes_what_the_role_installed_and_nothing_else(host):
    done = host.uninstall()
    assert done.returncode == 0, done.output
    assert "stop kvmha-heartbeat.service" in done.calls and "disable kvmha-heartbeat.service" in done.calls, done.calls
    assert "stop kvmha-boot-guard.service" in done.calls and "disable kvmha-boot-guard.service" in done.calls, done.calls
    assert "daemon-reload" in done.calls, done.calls
    assert not [call for call in done.calls if call.split()[0] in ("start", "restart", "reload", "enable")], done.calls
    assert sorted(p.name for p in host.units.iterdir()) == ["other.service"]
    assert not host.install.exists() and not host.config.exists() and not host.config.parent.exists()
    assert sorted(p.name for p in host.state.iterdir()) == ["calls"]  # every unit stopped and disabled
    assert "Deploy the heartbeat writers" in done.output and "Install the writer" not in done.output  # nothing deployed


def test_absent_again_changes_nothing(host):
    assert host.uninstall().returncode == 0
    again = host.uninstall()
    assert again.returncode == 0 and "changed=0" in again.output, again.output
    assert not [call for call in again.calls if call.split()[0] in ("stop", "disable")], again.calls


def test_absent_keeps_a_configuration_directory_that_holds_more_than_the_writers(host):
    (host.config.parent / "notes.txt").write_text("mine")
    assert host.uninstall().returncode == 0
    assert not host.config.exists() and (host.config.parent / "notes.txt").read_text() == "mine"
