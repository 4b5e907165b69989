"""Running the BMC of each host in its namespace bN: lab/bmc.py (pyghmi), or OpenIPMI's ipmi_sim.

Two password files per BMC: secrets/bN.password is what the controller knows (the inventory reads it);
the BMC's own credential is separate, so `bmc-wrong-password` changes the BMC's and not the controller's.
The pyghmi BMC re-reads its password file at every session; ipmi_sim gets it changed over IPMI
(Set User Password), as an administrator would, from inside bN so it works even with the cable cut.
BMCs are started with `nsenter --net=/run/netns/bN`, never `ip netns exec` (which remounts /sys and hides
the cgroup mounts the power switch needs).
"""

import os
import secrets

from lab import config, tls
from lab.util import (LabError, kill_pid_file, read_pid, read_text, run, spawn_detached, wait_until,
                      with_pid_file, write_text)

IPMI_SIM_USER_ID = 2


def bmc_nsenter(host):
    return ['nsenter', f'--net=/run/netns/{config.bmc_name(host)}']


def ensure_passwords(host):
    """Create the controller's and the BMC's password (equal) unless they exist."""
    if not os.path.exists(config.secret_file(host)):
        write_text(config.secret_file(host), secrets.token_urlsafe(12) + '\n', mode=0o600)
    if not os.path.exists(config.bmc_password_file(host)):
        write_text(config.bmc_password_file(host), read_text(config.secret_file(host)), mode=0o600)


def _pid_file(host):
    return config.pid_file(config.bmc_name(host))


def running(host):
    return bool(read_pid(_pid_file(host)))


def start(host, ipmi_sim):
    """Start the host's BMC unless it runs."""
    ensure_passwords(host)
    # The Redfish certificate before the check, so that its openssl runs do not fall between "not running" and the
    # spawn: a BMC that a killed `lab up` left starting would become ready meanwhile, and the spawn would remove its
    # pid file and start a second one that cannot bind (seen in the lab stage's killed-midway test).
    name, address = config.bmc_name(host), config.bmc_ip(host)
    certificate = None if ipmi_sim else tls.ensure_server_certificate(config.PKI, name, address)
    if running(host):
        return
    if ipmi_sim:
        _start_ipmi_sim(host)
    else:
        _start_pyghmi(host, *certificate)


def stop(host):
    kill_pid_file(_pid_file(host))


def _start_pyghmi(host, cert, key):
    """The BMC, its Redfish face serving ``cert`` of the lab CA (config.PKI/ca.pem: the inventory's ca_path)."""
    cmd = bmc_nsenter(host) + [
        config.PYTHON, '-m', 'lab.bmc', '--address', config.bmc_ip(host), '--port', str(config.BMC_PORT),
        '--user', config.BMC_USER, '--password-file', config.bmc_password_file(host), '--lab-host', host,
        '--redfish-port', str(config.REDFISH_PORT), '--tls-cert', cert, '--tls-key', key,
        '--pid-file', _pid_file(host)]
    # The BMC writes its pid file once it listens (~1 s: importing pyghmi).
    spawn_detached(cmd, config.log_file(config.bmc_name(host)), _pid_file(host), cwd=config.REPO, timeout=20)


# ---- ipmi_sim ----

HOOK = """#!/bin/sh
# chassis_control hook of ipmi_sim for lab host {host}. ipmi_sim runs it as
#   hook <mc> get power          -> prints power:1 or power:0
#   hook <mc> set <parm> <value>  (power 0/1, reset 1, shutdown 1; boot and identify are ignored)
# "get" must be quick (it runs on every status request): it reads the power switch's own truth, the
# host's freezer cgroup, like lab.power.status(). "set" goes through the lab's power switch.
cd {repo}
power() {{ timeout 60 {python} -m lab.power "$1" {host}; }}
case "$2" in
get)
    if find {freezer} -name cgroup.procs -exec cat {{}} + 2>/dev/null | grep -q .; then echo power:1; else echo power:0; fi ;;
set)
    case "$3 $4" in
    "power 1") power on ;;
    "power 0") power off ;;
    "reset 1") power reset ;;
    "shutdown 1") setsid -f timeout 60 {python} -m lab.power shutdown {host} >/dev/null 2>&1 ;;
    esac ;;
esac
exit 0
"""

LAN_CONF = """name "{bmc}"
set_working_mc 0x20
startlan 1
  addr {address} {port}
  priv_limit admin
  allowed_auths_callback md5
  allowed_auths_user md5
  allowed_auths_operator md5
  allowed_auths_admin md5
  guid {guid}
endlan
chassis_control "{hook} 0x20"
user {user_id} true "{user}" "{password}" admin 10 md5
"""

EMU_COMMANDS = """mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
mc_enable 0x20
"""


def _sim_dir(host):
    return f'{config.BMC_DIR}/{config.bmc_name(host)}'


def _start_ipmi_sim(host):
    directory = _sim_dir(host)
    bmc = config.bmc_name(host)
    hook = f'{directory}/chassis-control'
    write_text(hook, HOOK.format(host=host, repo=config.REPO, python=config.PYTHON,
                                 freezer=f'{config.CGROUP_FS}/freezer/{config.CGROUP_PARENT}/{host}'), mode=0o700)
    password = read_text(config.bmc_password_file(host)).strip()
    write_text(f'{directory}/lan.conf', LAN_CONF.format(
        bmc=bmc, address=config.bmc_ip(host), port=config.BMC_PORT, guid=os.urandom(16).hex(), hook=hook,
        user_id=IPMI_SIM_USER_ID, user=config.BMC_USER, password=password), mode=0o600)
    write_text(f'{directory}/emu.cmds', EMU_COMMANDS)
    os.makedirs(f'{directory}/state', exist_ok=True)
    sim = ['ipmi_sim', '-n', '-c', f'{directory}/lan.conf', '-f', f'{directory}/emu.cmds', '-s', f'{directory}/state']
    spawn_detached(bmc_nsenter(host) + with_pid_file(sim, _pid_file(host)), config.log_file(bmc), _pid_file(host),
                   cwd=directory)
    if not wait_until(lambda: _answers(host, password), 10, 0.2):
        raise LabError(f'{bmc}: ipmi_sim does not answer (see {config.log_file(bmc)})')


def ipmitool(host, password, *command, timeout=10, check=True):
    """ipmitool against the host's BMC from inside bN (works with its cable cut). Cipher suite 3 (see bmc.py).

    `--` ends ipmitool's options: a password in the command that starts with '-' (token_urlsafe makes those) would
    otherwise be parsed as options (`-sec…` = -s -e c…), and `user set password` would set another password.
    """
    cmd = bmc_nsenter(host) + ['ipmitool', '-I', 'lanplus', '-C', '3', '-H', config.bmc_ip(host),
                               '-p', str(config.BMC_PORT), '-U', config.BMC_USER, '-P', password, '--'] + list(command)
    return run(cmd, timeout=timeout, check=check)


def _answers(host, password):
    return ipmitool(host, password, 'power', 'status', timeout=5, check=False).returncode == 0


def set_password(host, ipmi_sim, new_password):
    """Change the BMC's own password (the controller's copy stays): the bmc-wrong-password fault and its heal."""
    old = read_text(config.bmc_password_file(host)).strip()
    if new_password == old:
        return
    if ipmi_sim:
        ipmitool(host, old, 'user', 'set', 'password', str(IPMI_SIM_USER_ID), new_password)
    write_text(config.bmc_password_file(host), new_password + '\n', mode=0o600)


def controller_password(host):
    return read_text(config.secret_file(host)).strip()
