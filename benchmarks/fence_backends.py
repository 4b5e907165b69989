"""Benchmark: confirmed-off time per power backend, next to the ClusterLabs agent for the same protocol.

Starts, on 127.0.0.1, one IPMI BMC simulator (lab/bmc.py, standalone) and one sushy-tools Redfish emulator over
HTTPS (its libvirt driver on libvirt's in-process test driver, whose power changes are immediate, so the numbers are
the tools' own costs; the emulator's config file keeps one test:///default connection open so the domain's state
lives between requests). Then measures, REPEAT times each, interleaved (the order rotates every repetition), the
wall time of one fence - power off and confirmation - as a process run from start to exit:

  IPMI     ipmi_power          PowerOperation(IpmiClient) state=off confirm=2, in a fresh Python process
           fence_agent_power   PowerOperation(FenceAgentClient fence_ipmilan) state=off confirm=2, fresh process
           fence_ipmilan       the agent alone, -o off on stdin (it waits for the off itself)
  Redfish  redfish_power       PowerOperation(RedfishClient) state=off confirm=2, TLS verified, fresh process
           fence_agent_power   PowerOperation(FenceAgentClient fence_redfish) state=off confirm=2, fresh process
           fence_redfish       the agent alone, -o off, TLS verified (ssl_secure, REQUESTS_CA_BUNDLE)

Before every sample the machine is powered on (state file / Redfish On, then read back); after it, the power must
read off or the run aborts. Medians with min-max, and each backend's ratio to the agent of its protocol. Nothing here
is a test. Usage (needs fence-agents, ipmitool, openssl, sushy-tools, libvirt-python; loopback only):

    .venv/bin/python benchmarks/fence_backends.py [--repeat 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
EMULATOR = os.path.join(ROOT, ".venv", "bin", "sushy-emulator")
USER = "admin"
PASSWORD = "bench-pw-1"

sys.path.insert(0, os.path.join(ROOT, ".collections"))
sys.path.insert(0, ROOT)
from ansible_collections.kvmha.cluster.plugins.module_utils import _redfish  # noqa: E402
from ansible_collections.kvmha.cluster.plugins.module_utils._deadline import Deadline  # noqa: E402
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import BmcError  # noqa: E402
from lab import tls  # noqa: E402

RUN = textwrap.dedent(
    """
    import json, sys
    from ansible_collections.kvmha.cluster.plugins.module_utils import _power
    kind, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if kind == "ipmi":  # each kind imports only its own backend, as its module does
        from ansible_collections.kvmha.cluster.plugins.module_utils import _ipmi
        client = _ipmi.IpmiClient("127.0.0.1", "%(user)s", "%(password)s", port=port)
    elif kind == "redfish":
        from ansible_collections.kvmha.cluster.plugins.module_utils import _redfish
        client = _redfish.RedfishClient("127.0.0.1", "%(user)s", "%(password)s", port=port, ca_path=ca)
    else:
        from ansible_collections.kvmha.cluster.plugins.module_utils import _fence_agent
        agent = "fence_ipmilan" if kind == "agent_ipmi" else "fence_redfish"
        protocol = {"lanplus": True} if kind == "agent_ipmi" else {"ssl_secure": True}
        client = _fence_agent.FenceAgentClient(agent, dict({"ip": "127.0.0.1", "ipport": port,
            "username": "%(user)s"}, **protocol), {"password": "%(password)s"})
    result = _power.PowerOperation(client, "off", confirm=2, timeout=30).run()
    assert result["fenced"], result
    print(json.dumps(result))
    """ % {"user": USER, "password": PASSWORD}
)

TOOLS = {  # name -> (protocol, how)
    "ipmi_power": ("ipmi", "ipmi"),
    "fence_agent_power+fence_ipmilan": ("ipmi", "agent_ipmi"),
    "fence_ipmilan": ("ipmi", "fence_ipmilan"),
    "redfish_power": ("redfish", "redfish"),
    "fence_agent_power+fence_redfish": ("redfish", "agent_redfish"),
    "fence_redfish": ("redfish", "fence_redfish"),
}
AGENT_OF = {"ipmi": "fence_ipmilan", "redfish": "fence_redfish"}


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bench:
    def __init__(self, work: str, repeat: int):
        self.work = work
        self.repeat = repeat
        self.ca = os.path.join(work, "ca.pem")
        self.env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, ".collections"), REQUESTS_CA_BUNDLE=self.ca,
                        PYTHONWARNINGS="ignore", LC_ALL="C")
        self.processes = []
        self.samples = {name: [] for name in TOOLS}
        tls.ensure_server_certificate(work, "bmc", "127.0.0.1")  # work/ca.pem, work/bmc.pem, work/bmc.key
        self.ipmi_port = free_port(socket.SOCK_DGRAM)
        self.state_file = os.path.join(work, "ipmi.state")
        self._start_ipmi()
        self.redfish_port = free_port()
        self._start_redfish()

    def _spawn(self, argv: list, log: str, **kwargs) -> subprocess.Popen:
        with open(os.path.join(self.work, log), "wb") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=self.env, **kwargs)
        self.processes.append(process)
        return process

    def _start_ipmi(self) -> None:
        with open(os.path.join(self.work, "pw"), "w", encoding="utf-8") as f:
            f.write(PASSWORD + "\n")
        self._spawn([PYTHON, "-m", "lab.bmc", "--address", "127.0.0.1", "--port", str(self.ipmi_port), "--user",
                     USER, "--password-file", os.path.join(self.work, "pw"), "--state-file", self.state_file],
                    "bmc.log", cwd=ROOT)
        for _attempt in range(100):
            if "READY" in open(os.path.join(self.work, "bmc.log"), encoding="utf-8").read():
                return
            time.sleep(0.1)
        raise SystemExit("lab/bmc.py did not start")

    def _start_redfish(self) -> None:
        import bcrypt  # sushy-tools' dependency; cost 4 so the emulator's password check is not what is measured

        htpasswd = os.path.join(self.work, "htpasswd")
        with open(htpasswd, "w", encoding="utf-8") as f:
            f.write("%s:%s\n" % (USER, bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()))
        config = os.path.join(self.work, "emulator.conf")
        with open(config, "w", encoding="utf-8") as f:
            f.write("import libvirt\n_KEEP = libvirt.open('test:///default')\n"
                    "SUSHY_EMULATOR_AUTH_FILE = %r\nSUSHY_EMULATOR_LIBVIRT_URI = 'test:///default'\n" % htpasswd)
        self._spawn([EMULATOR, "--config", config, "-i", "127.0.0.1", "-p", str(self.redfish_port),
                     "--ssl-certificate", os.path.join(self.work, "bmc.pem"),
                     "--ssl-key", os.path.join(self.work, "bmc.key")], "emulator.log")
        for _attempt in range(100):
            try:
                self.redfish_power()
                return
            except BmcError:
                time.sleep(0.1)
        raise SystemExit("sushy-emulator did not start")

    def _redfish_client(self):
        return _redfish.RedfishClient("127.0.0.1", USER, PASSWORD, port=self.redfish_port, ca_path=self.ca)

    def redfish_power(self) -> str:
        return self._redfish_client().power_state(Deadline(10))

    def power_on(self, protocol: str) -> None:
        if protocol == "ipmi":
            with open(self.state_file, "w", encoding="utf-8") as f:
                f.write("on\n")
            return
        client = self._redfish_client()
        if client.power_state(Deadline(10)) != "on":
            client.chassis_control("on", Deadline(10))
        if self.redfish_power() != "on":
            raise SystemExit("the Redfish system did not power on")

    def is_off(self, protocol: str) -> bool:
        if protocol == "ipmi":
            return open(self.state_file, encoding="utf-8").read().strip() == "off"
        return self.redfish_power() == "off"

    def run_tool(self, how: str, protocol: str) -> float:
        port = self.ipmi_port if protocol == "ipmi" else self.redfish_port
        if how.startswith("fence_"):
            options = {"ip": "127.0.0.1", "ipport": port, "username": USER, "password": PASSWORD, "action": "off"}
            options.update({"lanplus": 1} if how == "fence_ipmilan" else {"ssl_secure": 1})
            argv, stdin = ["/usr/sbin/" + how], "".join("%s=%s\n" % kv for kv in options.items())
        else:
            argv, stdin = [PYTHON, "-c", RUN, how, str(port), self.ca], ""
        started = time.monotonic()
        run = subprocess.run(argv, input=stdin, env=self.env, capture_output=True, text=True, timeout=60, check=False)
        took = time.monotonic() - started
        if run.returncode != 0:
            raise SystemExit("%s failed (%d): %s%s" % (how, run.returncode, run.stdout[-800:], run.stderr[-800:]))
        return took

    def measure(self) -> None:
        names = list(TOOLS)
        for rep in range(self.repeat):
            for name in names[rep % len(names):] + names[:rep % len(names)]:
                protocol, how = TOOLS[name]
                self.power_on(protocol)
                took = self.run_tool(how, protocol)
                if not self.is_off(protocol):
                    raise SystemExit("%s reported success but the %s machine is not off" % (name, protocol))
                self.samples[name].append(took)
            print("repetition %d/%d done" % (rep + 1, self.repeat), file=sys.stderr)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                process.wait(10)


def summary(samples: dict) -> list:
    medians = {name: statistics.median(values) for name, values in samples.items()}
    rows = []
    for name, values in samples.items():
        protocol = TOOLS[name][0]
        rows.append({"tool": name, "protocol": protocol, "median_s": round(medians[name], 3),
                     "min_s": round(min(values), 3), "max_s": round(max(values), 3),
                     "ratio_to_agent": round(medians[name] / medians[AGENT_OF[protocol]], 2)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kvmha-bench-fence-") as work:
        bench = Bench(work, args.repeat)
        try:
            bench.measure()
        finally:
            bench.close()
    rows = summary(bench.samples)
    if args.json:
        print(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(), "repeat": args.repeat,
                          "rows": rows}, indent=2))
        return
    print("confirmed off (power off + confirmation), wall time of one process, %d samples each, %s, %d CPUs"
          % (args.repeat, platform.platform(), os.cpu_count()))
    print("%-34s %-8s %9s %17s %9s" % ("tool", "protocol", "median s", "min-max s", "vs agent"))
    for row in rows:
        print("%-34s %-8s %9.3f %8.3f-%-8.3f %8.2fx" % (row["tool"], row["protocol"], row["median_s"], row["min_s"],
                                                        row["max_s"], row["ratio_to_agent"]))


if __name__ == "__main__":
    main()
