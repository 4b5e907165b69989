# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""deploy.yml run for real by ansible-playbook without the lab: in a private mount namespace whose
/etc/systemd/system is a temporary directory, the install and configuration paths in it too, and a stand-in
systemctl that keeps each unit's state in files and logs every call (fake_systemd.py). The artifact is built
on the controller and installed as one file; a second deploy changes nothing, with the module runs counted; an
install of the layout before it is upgraded; check mode installs nothing."""

from __future__ import annotations

import hashlib
import json
import pathlib
import re
import sys

import pytest

from ansible_collections.kvmha.cluster.tests._require import require
from ansible_collections.kvmha.cluster.tests._shipped import ARTIFACT, build_pyz
from ansible_collections.kvmha.cluster.tests.unit.roles.heartbeat_writer.fake_systemd import FakeHost, namespaces_work

OLD_LAYOUT = ("kvmha", "kvmha-heartbeat.py", "kvmha-boot-guard.py")
# Runs of the interpreter on the host of a deploy that changes nothing (role defaults but no packages): the preflight's
# one look at the host (a raw command, no module around it), which finds the directories, the archive, the
# configuration, both units and their states as wanted. (It was 13 module runs: two directories, stat + file for the
# archive and each template, two units kept enabled.) And nothing else runs on the host: no temporary directory (it
# was 25 executions: copy and template make one and remove it).
WARM_INTERPRETER_RUNS = 1
WARM_EXECUTIONS = 1


class Host(FakeHost):
    def deploy(self, *options):
        # The store is only looked at, and must lie where the unit's sandbox leaves it writable (not under /tmp).
        done = super().deploy({"kvmha_store_path": "/var/lib", "heartbeat_writer_packages": [],
                               "heartbeat_writer_python": sys.executable}, "-vvv", *options)
        # One EXEC of the interpreter per module run (pipelining) or raw look at the host; the controller's are localhost's.
        done.interpreter_runs = len(re.findall(r"^<h1> EXEC .*%s" % re.escape(sys.executable), done.stdout, re.M))
        done.executions = len(re.findall(r"^<h1> EXEC ", done.stdout, re.M))
        return done

    def exec_start(self, unit):
        return [line.split("=", 1)[1] for line in (self.units / unit).read_text().splitlines() if line.startswith("ExecStart=")]


@pytest.fixture
def host(tmp_path):
    require(namespaces_work(), "root and unshare -m, to give the role a private /etc/systemd/system")
    return Host(tmp_path)


def recap_changed(output) -> int:
    return int(re.search(r"^h1\s*:.*changed=(\d+)", output, re.M).group(1))


def test_deploy_installs_one_archive_and_again_changes_nothing_in_fewer_module_runs(host, tmp_path):
    done = host.deploy()
    assert done.returncode == 0, done.output[-5000:]
    assert sorted(p.name for p in host.install.iterdir()) == [ARTIFACT]
    (tmp_path / "expected").mkdir()
    assert (host.install / ARTIFACT).read_bytes() == build_pyz(tmp_path / "expected").read_bytes()
    assert host.exec_start("kvmha-heartbeat.service")[0].endswith("%s --config %s" % (host.install / ARTIFACT, host.config))
    assert " %s boot-guard --config %s " % (host.install / ARTIFACT, host.config) in host.exec_start("kvmha-boot-guard.service")[0]
    assert "start kvmha-heartbeat.service" in done.calls and "enable kvmha-boot-guard.service" in done.calls, done.calls
    assert not list(pathlib.Path(tmp_path).glob("kvmha-heartbeat-*")), "the build directory is removed"
    again = host.deploy()
    assert again.returncode == 0 and recap_changed(again.output) == 0, again.output[-5000:]
    assert not [call for call in again.calls if call.split()[0] in ("restart", "reload", "start")], again.calls
    assert (again.interpreter_runs, again.executions) == (WARM_INTERPRETER_RUNS, WARM_EXECUTIONS)


def test_listed_packages_that_dpkg_knows_cost_no_module_run(host):
    """The package module needs the package manager's fact (one more module run) and then runs itself: neither when
    dpkg says every listed package is installed. (The name is in no archive: should the task run, apt fails.)"""
    for name, text in (("dpkg-query", 'echo "kvmha-test-binding ii "\n'), ("apt-get", "echo apt-get $* >> %s/apt; exit 1\n" % host.state)):
        (host.bin / name).write_text("#!/bin/sh\n" + text)
        (host.bin / name).chmod(0o755)
    packages = ("-e", json.dumps({"heartbeat_writer_packages": ["kvmha-test-binding"]}))
    assert host.deploy(*packages).returncode == 0
    again = host.deploy(*packages)
    assert again.returncode == 0 and recap_changed(again.output) == 0, again.output[-5000:]
    assert again.interpreter_runs == WARM_INTERPRETER_RUNS and not (host.state / "apt").exists()


def test_deploy_upgrades_the_layout_before_the_archive(host):
    (host.install / "kvmha").mkdir(parents=True)
    (host.install / "kvmha" / "writer.py").write_text("")
    (host.install / "kvmha-heartbeat.py").write_text("")
    (host.install / "kvmha-boot-guard.py").write_text("")
    (host.units / "kvmha-heartbeat.service").write_text("[Service]\nExecStart=/usr/bin/python3 -I -B %s/kvmha-heartbeat.py\n" % host.install)
    (host.state / "kvmha-heartbeat.service.active").touch()
    done = host.deploy()
    assert done.returncode == 0, done.output[-5000:]
    assert sorted(p.name for p in host.install.iterdir()) == [ARTIFACT]
    assert "restart kvmha-heartbeat.service" in done.calls, done.calls  # a new unit: a restart, not a reload
    assert "Remove the writer's files from before kvmha-heartbeat.pyz" in done.output


def test_check_mode_on_a_new_host_installs_nothing(host):
    done = host.deploy("--check", "--diff")
    assert done.returncode == 0, done.output[-5000:]
    assert not host.install.exists() and not host.config.exists() and not list(host.units.iterdir())
    assert not [call for call in done.calls if call.split()[0] not in ("show", "is-enabled", "is-active")], done.calls


def test_a_writer_left_on_the_archive_before_is_reloaded_once_by_the_next_deploy(host):
    """A deploy that died between the copy of a new archive and the reload leaves the writer running the old code,
    and the next deploy finds the archive up to date. The writer's runtime state names the archive it started from
    (the stand-in systemctl records it as the writer does): the next deploy reloads it, once; the one after is quiet."""
    assert host.deploy().returncode == 0
    installed = json.loads(host.runtime_state.read_text())["archive"]
    assert installed == hashlib.sha256((host.install / ARTIFACT).read_bytes()).hexdigest()
    host.runtime_state.write_text(json.dumps({"archive": "0" * 64}))  # the archive before, still running
    done = host.deploy()
    assert done.returncode == 0 and recap_changed(done.output) == 2, done.output[-5000:]  # the finding, the reload
    assert [call for call in done.calls if call.split()[0] in ("restart", "reload", "start", "stop")] == ["reload kvmha-heartbeat.service"], done.calls
    assert json.loads(host.runtime_state.read_text())["archive"] == installed
    again = host.deploy()
    assert again.returncode == 0 and recap_changed(again.output) == 0, again.output[-5000:]
    assert again.interpreter_runs == WARM_INTERPRETER_RUNS and "reload kvmha-heartbeat.service" not in again.calls, again.calls


@pytest.mark.parametrize("container", ["lxc", "none"])
def test_the_watchdog_action_is_refused_inside_a_container_before_anything_changes(host, container):
    """A container's watchdog device is the whole machine's. The host check asks systemd-detect-virt (a stand-in)."""
    detect = host.bin / "systemd-detect-virt"
    detect.write_text('#!/bin/sh\n[ "$1" = --container ] && echo %s\n' % container)
    detect.chmod(0o755)
    done = host.deploy("-e", json.dumps({"heartbeat_writer_self_fence_armed": True, "heartbeat_writer_self_fence_action": "watchdog",
                                         "heartbeat_writer_self_fence_peers": ["198.51.100.2"]}))
    refused = "h1 is a lxc container; its watchdog device would be the whole machine's" in done.output
    assert (done.returncode != 0, refused, host.install.exists()) == ((True, True, False) if container == "lxc" else (False, False, True)), \
        done.output[-5000:]
