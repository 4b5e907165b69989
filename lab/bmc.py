"""An IPMI 2.0 (RMCP+ over UDP) BMC for the lab, and a standalone one for integration tests.

Built on pyghmi's server-side ``Bmc`` class. Two ways to run it:

* standalone (no lab needed, e.g. on 127.0.0.1 for the ``ipmi_power`` integration tests)::

      python -m lab.bmc --address 127.0.0.1 --port 16230 --user admin \\
          --password-file pw --state-file state [--stuck] [--off-delay 2]

  The power state lives in the state file ("on"/"off", created as "on").
* lab mode (``--lab-host hN``, started by ``lab up`` inside netns bN): chassis control drives the
  lab's power switch of host hN, so BMC, SSH, libvirt and heartbeat always agree.

Either way it prints ``READY <address>:<port>`` once it listens and exits cleanly on SIGTERM.

With ``--redfish-port P --tls-cert CERT --tls-key KEY`` the same process also serves a Redfish face (lab/redfish.py,
HTTPS on TCP P of the same address) driving the same ``Chassis``: same power switch, same user and password file,
same ``power <command>`` log lines (the lab's tests count ``power off`` lines, whichever face was asked). READY then
names both: ``READY <address>:<port> https://<address>:P``. lab/tls.py makes a CA and the certificate for an IP.

Quirks worked around (measured with the pinned pyghmi):
* pyghmi's server always answers the RMCP+ open-session request with cipher suite 3 algorithms, even when
  the client asked for others (pyghmi's client offers SHA256 first and then fails with
  "pack expected 32 items"). We refuse anything but suite 3 with status 0x11 ("no matching cipher suite"),
  so clients retry with suite 3. ipmitool works with ``-C 3`` (and also without: it reads the suite list).
* ``Bmc.listen()`` must be called with no argument.
"""

import argparse
import os
import signal
import sys
import threading
import time
import uuid

import pyghmi.ipmi.bmc
from pyghmi.ipmi.private import serversession

from lab.redfish import RedfishServer

# IPMI completion codes used here.
CC_OK = 0x00
CC_NOT_IN_PRESENT_STATE = 0xD5  # e.g. power cycle/reset of a chassis that is off
CC_UNSPECIFIED = 0xFF

# RMCP+ status code 0x11: "no matching integrity/authentication/confidentiality payload".
RMCP_NO_MATCHING_CIPHER = 0x11
# Algorithm numbers of cipher suite 3 (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128): the only suite pyghmi serves.
SUITE3_ALGORITHMS = (1, 1, 1)

_original_open_session_response = serversession.ServerSession.create_open_session_response


def _open_session_response(session, request):
    """Refuse every cipher suite but 3, instead of silently answering with suite 3 algorithms."""
    asked = (request[12], request[20], request[28])  # authentication, integrity, confidentiality
    if asked != SUITE3_ALGORITHMS:
        session.managedsessionid = os.urandom(4)
        session.clientsessionid = request[4:8]
        return bytearray([request[0], RMCP_NO_MATCHING_CIPHER, 0, 0]) + request[4:8]
    return _original_open_session_response(session, request)


serversession.ServerSession.create_open_session_response = _open_session_response


class PasswordFile:
    """pyghmi ``authdata``: one user whose password is read from a file at every new IPMI session (and at every
    Redfish request).

    Re-reading means a changed password (the lab's ``bmc-wrong-password`` fault) needs no restart.
    """

    def __init__(self, user, path):
        self.user = user
        self.path = path

    def get(self, user):
        if user != self.user:
            return None
        try:
            with open(self.path, encoding='utf-8') as f:
                return f.read().strip()
        except OSError as e:
            log(f'cannot read password file {self.path}: {e}')
            return None


class FileSwitch:
    """Standalone power switch: the state is a file holding "on" or "off".

    ``stuck`` accepts every command and never changes the state (for confirm-timeout tests);
    ``off_delay`` makes off/soft take effect that many seconds later (for polling tests).
    """

    def __init__(self, path, stuck=False, off_delay=0.0):
        self.path = path
        self.stuck = stuck
        self.off_delay = off_delay
        if not os.path.exists(path):
            self._write('on')

    def state(self):
        with open(self.path, encoding='utf-8') as f:
            return 'off' if f.read().strip() == 'off' else 'on'

    def on(self):
        self._set('on')

    def off(self):
        if self.off_delay > 0 and not self.stuck:
            timer = threading.Timer(self.off_delay, self._set, ('off',))
            timer.daemon = True
            timer.start()
        else:
            self._set('off')

    shutdown = off

    def reset(self):
        """A reset of a running machine leaves it on; the state file does not change."""

    def _set(self, state):
        if not self.stuck:
            self._write(state)

    def _write(self, state):
        tmp = f'{self.path}.tmp'
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(state + '\n')
        os.replace(tmp, self.path)


class LabSwitch:
    """Lab power switch of one hypervisor container (see lab/power.py)."""

    def __init__(self, host):
        from lab import config, power  # imported here so that standalone mode needs nothing of the lab
        self.power = power
        self.host = host
        self.restore_file = config.bmc_power_restore_file(host)
        self.restore_after = None  # bmc-power-restore: off reads left before the chassis switches itself on
        self.slow_file = config.bmc_slow_file(host)

    def slow_down(self):
        """bmc-slow: a BMC that takes its time over every power request (an overloaded or old controller)."""
        try:
            with open(self.slow_file, encoding='utf-8') as f:
                time.sleep(int(f.read().strip()) / 1000)
        except (OSError, ValueError):
            pass

    def state(self):
        self.slow_down()
        state = self.power.status(self.host)
        if state == 'off' and self.restore_after is not None:
            if self.restore_after > 0:
                self.restore_after -= 1
            else:  # like a BIOS "always on" power-restore policy, or a person at the console
                self.restore_after = None
                log('power restore: switching the chassis back on')
                threading.Thread(target=self.power.on, args=(self.host,), daemon=True).start()
                return 'on'
        return state

    def on(self):
        self.slow_down()
        self.power.on(self.host)

    def off(self):
        self.slow_down()
        self.power.off(self.host)
        try:
            with open(self.restore_file, encoding='utf-8') as f:
                self.restore_after = int(f.read().strip())
        except (OSError, ValueError):
            self.restore_after = None

    def shutdown(self):
        # A soft off takes up to 30 s; IPMI answers at once and the host goes off in the background.
        threading.Thread(target=self.power.shutdown, args=(self.host,), daemon=True).start()

    def reset(self):
        self.power.reset(self.host)


class Chassis:
    """The power commands of one chassis, with the same rules and log lines whichever face (IPMI, Redfish) asks.

    The lab's tests count power-offs by the ``power off`` lines of the BMC log, so both faces must log alike.
    """

    OK, REFUSED, FAILED = 'ok', 'refused', 'failed'
    # Command -> switch method. A cycle is a reset: the switches have no separate off-then-on.
    SWITCH_METHODS = {'on': 'on', 'off': 'off', 'soft': 'shutdown', 'reset': 'reset', 'cycle': 'reset'}

    def __init__(self, switch):
        self.switch = switch
        self._lock = threading.Lock()  # two faces and the HTTP threads may ask at once; a chassis does one thing

    def state(self):
        return self.switch.state()

    def command(self, name):
        """Execute power command ``name`` (on, off, soft, reset, cycle); returns OK, REFUSED or FAILED."""
        with self._lock:
            # Like most real BMCs: a reset or cycle needs a running chassis; it never powers one on.
            if name in ('reset', 'cycle') and self.switch.state() == 'off':
                log(f'power {name} refused: chassis is off')
                return self.REFUSED
            log(f'power {name}')
            try:
                getattr(self.switch, self.SWITCH_METHODS[name])()
            except Exception as e:  # a failed switch must answer the client, not kill the BMC
                log(f'power {name} failed: {e}')
                return self.FAILED
            return self.OK


class SwitchBmc(pyghmi.ipmi.bmc.Bmc):
    """The IPMI face: chassis commands of RMCP+ clients go to the ``Chassis``."""

    COMPLETION_CODES = {Chassis.OK: CC_OK, Chassis.REFUSED: CC_NOT_IN_PRESENT_STATE, Chassis.FAILED: CC_UNSPECIFIED}

    def __init__(self, chassis, authdata, address, port):
        super().__init__(authdata, port=port, address=address, bmcuuid=uuid.uuid5(uuid.NAMESPACE_DNS, address))
        self.chassis = chassis

    def get_power_state(self):
        return self.chassis.state()

    def power_on(self):
        return self._command('on')

    def power_off(self):
        return self._command('off')

    def power_shutdown(self):
        return self._command('soft')

    def power_reset(self):
        return self._command('reset')

    def power_cycle(self):
        return self._command('cycle')

    def _command(self, name):
        return self.COMPLETION_CODES[self.chassis.command(name)]


def log(message):
    print(message, file=sys.stderr, flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(prog='python -m lab.bmc', description=__doc__.split('\n\n', maxsplit=1)[0])
    p.add_argument('--address', required=True, help='IP address to listen on')
    p.add_argument('--port', type=int, default=623)
    p.add_argument('--user', default='admin')
    p.add_argument('--password-file', required=True, help='re-read at every IPMI session and Redfish request')
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument('--state-file', help='standalone: file holding the power state "on"/"off"')
    mode.add_argument('--lab-host', help='lab mode: the lab host (hN) whose power switch this BMC drives')
    p.add_argument('--stuck', action='store_true', help='standalone: accept power commands, never change state')
    p.add_argument('--off-delay', type=float, default=0.0, help='standalone: off takes effect after SECONDS')
    p.add_argument('--pid-file', help='written once listening, removed on exit')
    p.add_argument('--redfish-port', type=int, help='also serve Redfish over HTTPS on this TCP port')
    p.add_argument('--tls-cert', help='Redfish: PEM server certificate (its chain may follow it)')
    p.add_argument('--tls-key', help='Redfish: PEM private key of the certificate')
    args = p.parse_args(argv)
    if args.lab_host and (args.stuck or args.off_delay):
        p.error('--stuck and --off-delay are standalone options (with --state-file)')
    redfish = (args.redfish_port, args.tls_cert, args.tls_key)
    if redfish.count(None) not in (0, 3):
        p.error('--redfish-port, --tls-cert and --tls-key go together')
    for path in (args.password_file, *(f for f in redfish[1:] if f)):
        if not os.path.isfile(path):
            p.error(f'file not found: {path}')
    return args


def make_switch(args):
    if args.lab_host:
        return LabSwitch(args.lab_host)
    return FileSwitch(args.state_file, stuck=args.stuck, off_delay=args.off_delay)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(0)


def start_redfish(args, chassis, authdata, uuid_):
    """The Redfish face, listening and serving in a thread of its own."""
    server = RedfishServer(chassis, authdata, args.address, args.redfish_port, args.tls_cert, args.tls_key,
                           str(uuid_), log)
    threading.Thread(target=server.serve_forever, name='redfish', daemon=True).start()
    return server


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    chassis = Chassis(make_switch(args))
    authdata = PasswordFile(args.user, args.password_file)
    bmc = SwitchBmc(chassis, authdata, args.address, args.port)
    redfish = None if args.redfish_port is None else start_redfish(args, chassis, authdata, bmc.uuid)
    if args.pid_file:
        with open(args.pid_file, 'w', encoding='utf-8') as f:
            f.write(f'{os.getpid()}\n')
    print(f'READY {args.address}:{args.port}' + (f' https://{args.address}:{args.redfish_port}' if redfish else ''),
          flush=True)
    try:
        bmc.listen()
    finally:
        if redfish:
            redfish.shutdown()
            redfish.server_close()
        if args.pid_file:
            with_suppressed_oserror(os.unlink, args.pid_file)
    return 0


def with_suppressed_oserror(func, *args):
    try:
        func(*args)
    except OSError:
        pass


if __name__ == '__main__':
    sys.exit(main())
