"""What deploy.yml produced on every hypervisor (issue 19): the session's lab was deployed with it, as an operator
deploys (Cluster.up); this reads the result from inside each host (after the reset that every scenario starts
from), never from the product's own reports."""

import json
import re
import stat

from lab import config, container

UNIT, GUARD = "kvmha-heartbeat.service", "kvmha-boot-guard.service"
CONFIG = "/etc/kvmha/heartbeat.json"  # the role's heartbeat_writer_config_path default
INSTALL_DIR = "/usr/lib/kvmha-heartbeat"  # the role's heartbeat_writer_install_dir default


def inside(host, *cmd):
    return container.execute(host, list(cmd), timeout=20).stdout.strip()


def exists(host, path):
    return container.execute(host, ["test", "-f", path], timeout=20, check=False).returncode == 0


def test_deploy_left_a_running_writer_its_config_and_a_fresh_record_on_every_host(cluster):
    for host in cluster.hosts:
        assert inside(host, "systemctl", "is-enabled", UNIT) == "enabled", host
        assert inside(host, "systemctl", "is-active", UNIT) == "active", host
        assert inside(host, "systemctl", "is-enabled", GUARD) == "enabled", host
        mode, owner = inside(host, "stat", "-c", "%a %U:%G", CONFIG).split()
        assert (mode, owner) == ("640", "root:root"), (host, mode, owner)  # it may name a store path: not world-readable
        settings = json.loads(inside(host, "cat", CONFIG))
        assert settings["host"] == host and settings["store"] == config.STORE, (host, settings)
        argv = re.search(r"argv\[\]=([^;]*);", inside(host, "systemctl", "show", "-p", "ExecStart", UNIT)).group(1).split()
        named = [arg for arg in argv if arg.startswith("/")]
        assert named and all(exists(host, path) for path in named), (host, argv)  # the program, its script, the config
        assert "%s/kvmha-heartbeat.pyz" % INSTALL_DIR in argv, (host, argv)
        # one artifact (issue 17): the writer, the boot guard and their formats are this one file, nothing beside it
        assert inside(host, "ls", "-A", INSTALL_DIR) == "kvmha-heartbeat.pyz", host
        record_file = "%s/kvmha/hosts/%s.json" % (config.STORE, host)
        info = stat.S_IMODE(int(inside(host, "stat", "-c", "%f", record_file), 16))
        assert info & 0o022 == 0, (host, oct(info))  # nobody but its writer may change a host's heartbeat
        record = json.loads(inside(host, "cat", record_file))
        assert record["host"] == host and record["state"] == "running", (host, record)
        # systemd's %b (the writer's boot id) is the host's boot id without dashes
        assert record["boot_id"] == inside(host, "cat", "/proc/sys/kernel/random/boot_id").replace("-", ""), host


def test_deploy_again_changes_nothing(cluster):
    again = cluster.ansible_playbook("deploy.yml")
    recap = dict(re.findall(r"^(h\d+)\s*:.*changed=(\d+)", again.stdout, re.M))
    assert set(recap) == set(cluster.hosts) and set(recap.values()) == {"0"}, again.stdout[-3000:]
