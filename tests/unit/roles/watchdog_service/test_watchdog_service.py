# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The watchdog_service role rendered for a fake controller: the instances' files, units systemd accepts, a runner
that never lets two runs overlap, and refusals of bad input. Nothing is installed: the templates are rendered into
a temporary directory and the runner is run against a stand-in for ansible-playbook."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

from ansible_collections.kvmha.cluster.tests._require import require

ROOT = pathlib.Path(__file__).resolve().parents[4]
ROLE = ROOT / "roles" / "watchdog_service"
PLAYBOOK = pathlib.Path(__file__).with_name("render.yml")
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")

INSTANCES = [
    {"name": "prod-a", "inventory": ["/etc/kvmha/inv/prod-a.yml", "/etc/kvmha/inv/common.yml"], "limit": "prod_a",
     "extra_vars": {"kvmha_watch_cluster": "prod-a"}},
    {"name": "prod-b", "inventory": "/etc/kvmha/inv/prod-b.yml", "environment": {"ANSIBLE_FORKS": "10"},
     "lock": "/run/lock/kvmha-shared.lock"},
    {"name": "retired", "state": "absent"},
]


def render(tmp_path, **variables):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    extra = dict({"render_dir": str(out), "role_dir": str(ROLE), "watchdog_service_instances": INSTANCES,
                  "watchdog_service_ansible_playbook": "/bin/true"}, **variables)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_CONFIG", None)
    done = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=" + sys.executable,
         "-e", json.dumps(extra), str(PLAYBOOK)],
        capture_output=True, text=True, env=env, cwd=str(tmp_path), check=False, timeout=120)
    return done, out


def read_env(path):
    """An EnvironmentFile as systemd reads these simple ones: KEY=VALUE, optionally in double quotes."""
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values[key] = json.loads(value) if value.startswith('"') else value
    return values


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("watchdog_service")
    done, out = render(tmp, watchdog_service_metrics_dir="/var/lib/prometheus/node-exporter", watchdog_service_watch_s=45,
                       watchdog_service_vault_password_file="/etc/kvmha/vault-pass",
                       watchdog_service_read_only_paths=["/tmp/kvmha-checkout"])
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_each_instance_runs_the_watchdog_with_its_inventory_limit_and_variables(rendered):
    a = read_env(rendered / "prod-a.env")
    assert a["KVMHA_ARGS"].split() == ["-i", "/etc/kvmha/inv/prod-a.yml", "-i", "/etc/kvmha/inv/common.yml", "--limit", "prod_a",
                                       "-e", "@/etc/kvmha/watchdog/prod-a.vars.json", "kvmha.cluster.watchdog"]
    assert a["KVMHA_LOCK"] == "/run/lock/kvmha-watchdog-prod-a.lock" and a["KVMHA_MIN_RUN_S"] == "5"
    assert a["KVMHA_JOURNAL_DIR"] == "/var/lib/kvmha-watchdog/prod-a/journal"
    assert a["KVMHA_METRICS_FILE"] == "/var/lib/prometheus/node-exporter/kvmha-prod-a.prom"
    assert a["ANSIBLE_CALLBACKS_ENABLED"] == "kvmha.cluster.journal"
    assert a["ANSIBLE_VAULT_PASSWORD_FILE"] == "/etc/kvmha/vault-pass"
    assert json.loads((rendered / "prod-a.vars.json").read_text()) == {"kvmha_watch_cluster": "prod-a", "kvmha_watch_s": 45.0}
    b = read_env(rendered / "prod-b.env")
    assert b["KVMHA_ARGS"].split()[:2] == ["-i", "/etc/kvmha/inv/prod-b.yml"] and "--limit" not in b["KVMHA_ARGS"]
    assert b["KVMHA_LOCK"] == "/run/lock/kvmha-shared.lock" and b["ANSIBLE_FORKS"] == "10"
    assert not (rendered / "retired.env").exists()


def test_units_are_a_oneshot_service_and_a_timer_that_chains_runs(rendered):
    service = (rendered / "kvmha-watchdog@.service").read_text()
    timer = (rendered / "kvmha-watchdog@.timer").read_text()
    for line in ("Type=oneshot", "EnvironmentFile=/etc/kvmha/watchdog/%i.env", "ExecStart=/usr/local/libexec/kvmha-watchdog-run",
                 "SuccessExitStatus=75", "TimeoutStartSec=300", "StateDirectory=kvmha-watchdog/%i", "User=root",
                 "PrivateTmp=yes", "BindReadOnlyPaths=/tmp/kvmha-checkout"):
        assert line in service.splitlines(), line
    # The next run starts as the last one ends: no pause, and no second of timer slack either.
    for line in ("OnActiveSec=1s", "OnUnitInactiveSec=0s", "AccuracySec=100ms", "WantedBy=timers.target"):
        assert line in timer.splitlines(), line


def test_systemd_accepts_the_units(rendered, tmp_path):
    require(shutil.which("systemd-analyze"), "systemd-analyze is not installed (package systemd)")
    units = tmp_path / "units"
    units.mkdir()
    runner = tmp_path / "kvmha-watchdog-run"
    shutil.copy(rendered / "kvmha-watchdog-run", runner)
    for name in ("kvmha-watchdog@.service", "kvmha-watchdog@.timer"):
        text = (rendered / name).read_text().replace("/usr/local/libexec/kvmha-watchdog-run", str(runner))
        (units / name.replace("@.", "@test.")).write_text(text)
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(units / "kvmha-watchdog@test.service"),
                           str(units / "kvmha-watchdog@test.timer")], capture_output=True, text=True, check=False, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "Unknown" not in output and "not executable" not in output, output


def run_runner(rendered, tmp_path, lock, sleep, min_run_s=0, rc=0):
    """Start the rendered runner with a stand-in ansible-playbook that logs its start and end."""
    fake = tmp_path / "ansible-playbook"
    fake.write_text('#!/bin/sh\necho "start $(date +%%s.%%N) $*" >> %s/log\nsleep %s\necho "end $(date +%%s.%%N)" >> %s/log\nexit %d\n'
                    % (tmp_path, sleep, tmp_path, rc))
    fake.chmod(0o755)
    env = dict(os.environ, KVMHA_LOCK=str(lock), KVMHA_ANSIBLE_PLAYBOOK=str(fake), KVMHA_ARGS="-i inv kvmha.cluster.watchdog",
               KVMHA_MIN_RUN_S=str(min_run_s))
    return subprocess.Popen(["/bin/sh", str(rendered / "kvmha-watchdog-run")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_the_runner_never_lets_two_runs_overlap(rendered, tmp_path):
    require(shutil.which("flock"), "flock is not installed (package util-linux)")
    lock = tmp_path / "lock"
    first = run_runner(rendered, tmp_path, lock, 1.5)
    deadline = time.monotonic() + 10
    while not (tmp_path / "log").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    second = run_runner(rendered, tmp_path, lock, 0)
    assert second.wait(10) == 75 and "another run holds" in second.stderr.read()
    assert first.wait(10) == 0
    third = run_runner(rendered, tmp_path, lock, 0)
    assert third.wait(10) == 0
    lines = (tmp_path / "log").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["start", "end", "start", "end"]
    assert lines[0].split()[2:] == ["-i", "inv", "kvmha.cluster.watchdog"]
    assert float(lines[2].split()[1]) >= float(lines[1].split()[1])


@pytest.mark.parametrize("bad, message", [
    ({"watchdog_service_instances": [{"name": "a", "inventory": ["x"]}, {"name": "a", "inventory": ["y"]}]}, "unique name"),
    ({"watchdog_service_instances": [{"name": "a b", "inventory": ["x"]}]}, "unique name"),
    ({"watchdog_service_instances": [{"name": "a"}]}, "inventory"),
    ({"watchdog_service_instances": [{"name": "a", "inventory": ["/my inventories/x"]}]}, "white space"),
    ({"watchdog_service_watch_s": 400}, "longer than the watch"),
    ({"watchdog_service_pause_s": 0, "watchdog_service_min_run_s": 2}, "together at least 3 s"),
    ({"watchdog_service_pause_s": -1}, "not negative"),
    ({"watchdog_service_user": "nobody-such-user"}, "does not exist"),
    ({"watchdog_service_ansible_playbook": "/nonexistent/ansible-playbook"}, "is not an executable"),
])
def test_bad_input_is_refused_before_anything_changes(tmp_path, bad, message):
    done, out = render(tmp_path, **bad)
    assert done.returncode != 0 and message in done.stdout + done.stderr, done.stdout + done.stderr
    assert not any(out.iterdir())


@pytest.mark.parametrize("sleep, rc, lasts", [(0, 2, 2.0), (2.5, 0, 2.5)])
def test_a_run_shorter_than_min_run_s_waits_out_the_rest_and_keeps_its_status(rendered, tmp_path, sleep, rc, lasts):
    require(shutil.which("flock"), "flock is not installed (package util-linux)")
    started = time.monotonic()
    assert run_runner(rendered, tmp_path, tmp_path / "lock", sleep, min_run_s=2, rc=rc).wait(20) == rc
    # Whole seconds of /proc/uptime: the wait is up to a second short of min_run_s, never longer than it needs.
    assert lasts - 1.0 <= time.monotonic() - started < lasts + 1.0


def test_a_run_skipped_for_the_lock_waits_out_min_run_s_too(rendered, tmp_path):
    require(shutil.which("flock"), "flock is not installed (package util-linux)")
    lock = tmp_path / "lock"
    holder = subprocess.Popen(["flock", str(lock), "sleep", "5"])
    try:
        time.sleep(0.3)
        started = time.monotonic()
        assert run_runner(rendered, tmp_path, lock, 0, min_run_s=2).wait(20) == 75
        assert time.monotonic() - started >= 1.0
    finally:
        holder.kill()
        holder.wait()
