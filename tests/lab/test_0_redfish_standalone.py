"""lab/bmc.py's Redfish face (lab/redfish.py), standalone on 127.0.0.1 with a CA made by lab/tls.py: the
collection's own client and the real fence_redfish fence over verified TLS, both faces drive one chassis and log
alike (the e2e tests count the "power off" lines), and the protocol's refusals."""

import base64
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys

import pytest

from ansible_collections.kvmha.cluster.plugins.module_utils._errors import BmcAuthError, BmcTlsError
from ansible_collections.kvmha.cluster.plugins.module_utils._power import PowerOperation
from ansible_collections.kvmha.cluster.plugins.module_utils._redfish import RedfishClient
from conftest import REPO
from lab import tls

USER, PASSWORD = 'admin', 'secret'
RESET = '/redfish/v1/Systems/1/Actions/ComputerSystem.Reset'


def free_port(kind):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Bmc:
    """A standalone lab/bmc.py with both faces; its state file and log are read here independently."""

    def __init__(self, workdir, pki):
        cert, key = tls.ensure_server_certificate(str(pki), 'bmc', '127.0.0.1')  # made once, then kept
        self.ca = str(pki / 'ca.pem')
        self.ipmi_port, self.port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
        self.state, self.password, self.log = workdir / 'state', workdir / 'password', workdir / 'bmc.log'
        self.password.write_text(PASSWORD + '\n')
        with open(self.log, 'wb') as log:
            self.process = subprocess.Popen(
                [sys.executable, '-m', 'lab.bmc', '--address', '127.0.0.1', '--port', str(self.ipmi_port),
                 '--user', USER, '--password-file', str(self.password), '--state-file', str(self.state),
                 '--redfish-port', str(self.port), '--tls-cert', cert, '--tls-key', key],
                cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True)
        self.ready = self.process.stdout.readline()

    def power(self):
        return self.state.read_text().strip()

    def log_lines(self):
        return [line.strip() for line in self.log.read_text().splitlines()]

    def client(self, password=PASSWORD, ca=None):
        return RedfishClient('127.0.0.1', USER, password, port=self.port, ca_path=ca or self.ca)

    def request(self, method, path, body=None, password=PASSWORD):
        """One request over verified TLS, independent of the collection's client: (status, JSON body or None)."""
        connection = http.client.HTTPSConnection('127.0.0.1', self.port, timeout=10,
                                                 context=ssl.create_default_context(cafile=self.ca))
        headers = {} if password is None else {
            'Authorization': 'Basic ' + base64.b64encode(f'{USER}:{password}'.encode()).decode()}
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            return response.status, json.loads(data) if data else None
        finally:
            connection.close()

    def ipmi(self, *command):
        return subprocess.run(['ipmitool', '-I', 'lanplus', '-C', '3', '-N', '1', '-R', '1', '-H', '127.0.0.1',
                               '-p', str(self.ipmi_port), '-U', USER, '-P', PASSWORD, *command],
                              capture_output=True, text=True, timeout=20, check=False)

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


def started(workdir, pki):
    bmc_ = Bmc(workdir, pki)
    assert bmc_.ready.startswith('READY'), bmc_.log.read_text()
    return bmc_


@pytest.fixture(scope='module')
def pki(tmp_path_factory):
    return tmp_path_factory.mktemp('pki')


@pytest.fixture
def bmc(tmp_path, pki):
    bmc_ = started(tmp_path, pki)
    yield bmc_
    bmc_.stop()


@pytest.fixture(scope='module')
def idle_bmc(tmp_path_factory, pki):
    """One BMC for the requests that must change nothing."""
    bmc_ = started(tmp_path_factory.mktemp('idle'), pki)
    yield bmc_
    bmc_.stop()


def run(client, state, confirm=2):
    try:
        return PowerOperation(client, state, confirm=confirm, timeout=20).run()
    finally:
        client.close()


def test_our_client_fences_and_powers_on_over_verified_tls(bmc):
    assert bmc.ready == f'READY 127.0.0.1:{bmc.ipmi_port} https://127.0.0.1:{bmc.port}\n'
    fence = run(bmc.client(), 'off', confirm=3)
    assert fence['fenced'] is True and fence['changed'] is True and fence['confirmations'] == 3
    assert bmc.power() == 'off' and bmc.log_lines().count('power off') == 1
    on = run(bmc.client(), 'on')
    assert on['changed'] is True and on['powerstate']['after'] == 'on' and bmc.power() == 'on'


def test_fence_redfish_gets_status_and_fences(bmc):
    """The real agent (python3-requests, which takes its CA bundle from REQUESTS_CA_BUNDLE) finds the system from
    the service root, as it does without --systems-uri."""
    def agent(action, ca):
        env = dict(os.environ, REQUESTS_CA_BUNDLE=ca)
        return subprocess.run(['fence_redfish', '--ssl-secure', '-a', '127.0.0.1', '-u', str(bmc.port), '-l', USER,
                               '-p', PASSWORD, '-o', action], env=env, capture_output=True, text=True, timeout=60,
                              check=False)

    status = agent('status', bmc.ca)
    assert status.returncode == 0 and 'Status: ON' in status.stdout, status.stderr
    assert agent('status', '/etc/ssl/certs/ca-certificates.crt').returncode != 0  # it does verify the certificate
    off = agent('off', bmc.ca)
    assert off.returncode == 0 and 'Success: Powered OFF' in off.stdout, off.stderr
    assert bmc.power() == 'off' and bmc.log_lines().count('power off') == 1


def test_wrong_password_is_an_auth_error_and_changes_nothing(bmc):
    bmc.password.write_text('changed\n')  # what the lab's bmc-wrong-password fault does, with no restart
    with pytest.raises(BmcAuthError):
        run(bmc.client(), 'off')
    assert bmc.power() == 'on' and not [line for line in bmc.log_lines() if line.startswith('power')]
    assert run(bmc.client(password='changed'), 'status')['powerstate']['before'] == 'on'


def test_untrusted_certificate_is_refused(bmc, tmp_path_factory):
    other_ca = tls.ensure_ca(str(tmp_path_factory.mktemp('other-ca')))
    with pytest.raises(BmcTlsError, match='not trusted'):
        run(bmc.client(ca=other_ca), 'status')


def test_reset_of_an_off_chassis_is_refused(bmc):
    assert bmc.request('POST', RESET, json.dumps({'ResetType': 'ForceOff'}))[0] == 204
    for reset_type in ('ForceRestart', 'PowerCycle'):
        status, body = bmc.request('POST', RESET, json.dumps({'ResetType': reset_type}))
        assert status == 409 and 'ChassisPowerStateOnRequired' in body['error']['@Message.ExtendedInfo'][0]['MessageId']
    assert bmc.power() == 'off'
    assert 'power reset refused: chassis is off' in bmc.log_lines()
    assert 'power cycle refused: chassis is off' in bmc.log_lines()


def test_both_faces_drive_one_chassis_and_log_alike(bmc):
    assert bmc.ipmi('power', 'off').returncode == 0
    status = run(bmc.client(), 'status')
    assert status['fenced'] is True and status['powerstate']['before'] == 'off'
    assert bmc.request('POST', RESET, json.dumps({'ResetType': 'On'}))[0] == 204
    assert bmc.ipmi('power', 'status').stdout.strip() == 'Chassis Power is on'
    assert run(bmc.client(), 'off')['fenced'] is True
    assert bmc.ipmi('power', 'status').stdout.strip() == 'Chassis Power is off'
    assert bmc.log_lines().count('power off') == 2 and bmc.log_lines().count('power on') == 1


@pytest.mark.parametrize('method, path, body, password, status', [
    ('GET', '/redfish/v1', None, None, 200),  # the service root needs no credentials
    ('GET', '/redfish/v1/Systems', None, None, 401),
    ('GET', '/redfish/v1/Systems', None, 'wrong', 401),
    ('GET', '/redfish/v1/Systems/2', None, PASSWORD, 404),
    ('GET', RESET, None, PASSWORD, 405),
    ('PATCH', '/redfish/v1/Systems/1', '{}', PASSWORD, 405),
    ('POST', RESET, 'not json', PASSWORD, 400),
    ('POST', RESET, '["ForceOff"]', PASSWORD, 400),
    ('POST', RESET, '{"ResetType": "Nmi"}', PASSWORD, 400),
    ('POST', RESET, '{"ResetType": ["ForceOff"]}', PASSWORD, 400),
])
def test_refusals(idle_bmc, method, path, body, password, status):
    assert idle_bmc.request(method, path, body, password)[0] == status
    assert idle_bmc.power() == 'on' and not [line for line in idle_bmc.log_lines() if line.startswith('power')]


def test_the_system_document(bmc):
    status, system = bmc.request('GET', '/redfish/v1/Systems/1/')  # a trailing slash names the same resource
    assert status == 200 and system['PowerState'] == 'On'
    reset = system['Actions']['#ComputerSystem.Reset']
    assert reset['target'] == RESET
    allowed = {'On', 'ForceOff', 'GracefulShutdown', 'ForceRestart', 'PowerCycle'}
    assert set(reset['ResetType@Redfish.AllowableValues']) == allowed
    assert bmc.request('POST', RESET, json.dumps({'ResetType': 'GracefulShutdown'}))[0] == 204
    assert bmc.power() == 'off' and 'power soft' in bmc.log_lines()


def test_sigterm_exits_cleanly(bmc):
    os.kill(bmc.process.pid, signal.SIGTERM)
    assert bmc.process.wait(timeout=10) == 0


def test_tls_keeps_valid_files_and_remakes_the_rest(tmp_path):
    def files():
        return {path.name: path.read_bytes() for path in tmp_path.iterdir()}

    cert, key = tls.ensure_server_certificate(str(tmp_path), 'b1', '192.0.2.1')
    first = files()
    assert sorted(first) == ['b1.key', 'b1.pem', 'ca.key', 'ca.pem']
    assert all(path.stat().st_mode & 0o077 == 0 for path in tmp_path.iterdir())
    assert tls.ensure_server_certificate(str(tmp_path), 'b1', '192.0.2.1') == (cert, key) and files() == first

    tls.ensure_server_certificate(str(tmp_path), 'b1', '192.0.2.2')  # another address: a new certificate, same CA
    second = files()
    assert second['ca.pem'] == first['ca.pem'] and second['b1.pem'] != first['b1.pem']

    (tmp_path / 'ca.key').unlink()  # a new CA: the certificate it cannot verify is made again
    tls.ensure_server_certificate(str(tmp_path), 'b1', '192.0.2.2')
    third = files()
    assert third['ca.pem'] != second['ca.pem'] and third['b1.pem'] != second['b1.pem']
    verify = subprocess.run(['openssl', 'verify', '-CAfile', str(tmp_path / 'ca.pem'), cert], capture_output=True,
                            check=False)
    assert verify.returncode == 0
