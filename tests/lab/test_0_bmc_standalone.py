"""lab/bmc.py standalone (no lab, loopback): what the ipmi_power integration tests rely on."""

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, wait_for

PORT = 16239


@pytest.fixture
def bmc(tmp_path):
    """Start a standalone BMC with extra options; yields (process, state file, password file)."""
    started = []

    def start(*options):
        password, state = tmp_path / 'password', tmp_path / 'state'
        password.write_text('secret\n')
        proc = subprocess.Popen([sys.executable, '-m', 'lab.bmc', '--address', '127.0.0.1', '--port', str(PORT),
                                 '--password-file', str(password), '--state-file', str(state), *options],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        started.append(proc)
        assert proc.stdout.readline() == f'READY 127.0.0.1:{PORT}\n'
        return proc, state, password
    yield start
    for proc in started:
        proc.kill()
        proc.wait(timeout=10)


def ipmi(*command, password='secret'):
    cp = subprocess.run(['ipmitool', '-I', 'lanplus', '-C', '3', '-N', '1', '-R', '1', '-H', '127.0.0.1',
                         '-p', str(PORT), '-U', 'admin', '-P', password, *command],
                        capture_output=True, text=True, timeout=20, check=False)
    return cp.returncode, cp.stdout.strip()


def test_power_commands_drive_the_state_file(bmc):
    _proc, state, _password = bmc()
    assert state.read_text() == 'on\n' and ipmi('power', 'status') == (0, 'Chassis Power is on')
    for command, after in (('off', 'off'), ('on', 'on'), ('soft', 'off')):
        assert ipmi('power', command)[0] == 0
        assert state.read_text() == f'{after}\n'
    assert ipmi('power', 'cycle')[0] != 0  # refused while off (0xD5), like most real BMCs
    cp = subprocess.run(['fence_ipmilan', '--lanplus', '-a', '127.0.0.1', '-u', str(PORT), '-l', 'admin',
                         '-p', 'secret', '-o', 'on'], capture_output=True, text=True, timeout=60, check=False)
    assert cp.returncode == 0 and 'Success: Powered ON' in cp.stdout and state.read_text() == 'on\n'


def test_stuck_accepts_commands_and_never_changes_state(bmc):
    _proc, state, _password = bmc('--stuck')
    assert ipmi('power', 'off')[0] == 0
    time.sleep(0.5)
    assert state.read_text() == 'on\n' and ipmi('power', 'status')[1] == 'Chassis Power is on'


def test_off_delay(bmc):
    _proc, state, _password = bmc('--off-delay', '1.5')
    assert ipmi('power', 'off')[0] == 0
    assert ipmi('power', 'status')[1] == 'Chassis Power is on'
    assert wait_for(lambda: ipmi('power', 'status')[1] == 'Chassis Power is off', 10)


def test_password_is_reread_and_sigterm_exits_cleanly(bmc):
    proc, _state, password = bmc()
    password.write_text('changed\n')
    assert ipmi('power', 'status')[0] != 0
    assert ipmi('power', 'status', password='changed')[0] == 0
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
