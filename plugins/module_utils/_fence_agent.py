# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
"""Power through any installed ClusterLabs fence agent (fence_ipmilan, fence_redfish, fence_apc_snmp, ...).

``FenceAgentClient`` has the three calls ``_power.PowerOperation`` drives, so an agent run keeps the power contract
(states compared, at most one command, off confirmed by N consecutive ``status`` runs, one deadline), and speaks the
agents' standard stdin protocol (the FenceAgentAPI): one ``key=value`` per line, ``action=`` last.

* ``connect``: ``action=metadata`` (once per agent and process) - the options given must be parameters the agent
  declares, its required ones must be given (a parameter or the one it ``obsoletes``), and it must offer ``status``
  and ``off``. A typo in an option name is an error here, not a silently ignored line in the agent.
* ``power_state``: ``action=status``; exit 0 is on, 2 is off (the API's codes), anything else an error. A failed
  status is followed once by ``action=monitor`` to tell an unreachable device from one that answers but fails.
* ``chassis_control``: ``action=off`` / ``action=on``. ``reboot`` is never sent (a reset is never a fence); agents
  have no soft off, so ``shutdown`` is refused.

Each agent run has its own deadline (``agent_timeout`` and what is left of the run's), after which its whole process
group is killed. Output is captured, cut to its last lines, and every secret value given is replaced by ``********``
before it reaches a message.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import xml.etree.ElementTree as ET

from ._deadline import Deadline
from ._errors import BmcAuthError, BmcError, BmcTimeout, BmcUnreachable, InvalidInput, check_range
from ._power import OFF, ON

AGENT_NAME = re.compile(r"^fence_[a-z0-9_]+$")
SEARCH_PATH = ("/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin")
# Exit codes of action=status in the FenceAgentAPI.
STATUS_ON, STATUS_OFF = 0, 2
ACTIONS = {"off": "off", "on": "on"}  # requested action -> agent action; no reboot, no soft off
# Options the backend sets itself.
RESERVED = ("action", "option")
MASK = "********"
OUTPUT_TAIL = 1500
# Agent messages that mean "these credentials are not accepted" (fencing.py's EC_LOGIN_DENIED text and ipmitool's).
_AUTH_MARKERS = ("unable to login", "login denied", "unauthorized", "authentication", "incorrect password")

_METADATA: dict = {}  # agent path -> AgentMetadata, one metadata run per agent and process


class AgentMetadata:
    """The parameters and actions an agent declares in its metadata XML."""

    def __init__(self, parameters: dict, actions: frozenset):
        self.parameters = parameters  # name -> {"required": bool, "deprecated": bool, "obsoletes": str | None}
        self.actions = actions

    @classmethod
    def parse(cls, text: str, agent: str) -> "AgentMetadata":
        try:
            root = ET.fromstring(text)
        except ET.ParseError as error:
            raise BmcError("%s: its metadata is not XML (%s)" % (agent, error)) from error
        parameters = {}
        for element in root.iter("parameter"):
            name = element.get("name")
            if name:
                parameters[name] = {
                    "required": element.get("required") == "1",
                    "deprecated": element.get("deprecated") == "1",
                    "obsoletes": element.get("obsoletes"),
                }
        actions = frozenset(a.get("name") for a in root.iter("action") if a.get("name"))
        return cls(parameters, actions)

    def problems(self, given) -> list:
        """What is wrong with the option names ``given`` for this agent (empty: nothing)."""
        given = set(given)
        found = ["unknown option %r" % name for name in sorted(given - set(self.parameters))]
        for name, parameter in sorted(self.parameters.items()):
            if name in RESERVED or not parameter["required"] or parameter["deprecated"]:
                continue
            if name not in given and parameter["obsoletes"] not in given:
                found.append("required option %r is missing" % name)
        found.extend("the agent does not offer action=%s" % action
                     for action in ("status", "off") if action not in self.actions)
        return found


def agent_input(options: dict, action: str) -> bytes:
    """The stdin of one agent run: ``key=value`` lines, ``action`` last (so options cannot override it)."""
    lines = []
    for key, value in list(options.items()) + [("action", action)]:
        text = value_text(value)
        if "\n" in text or "\r" in text or "=" in key or not key:
            raise InvalidInput("fence agent option %r: names cannot be empty or hold '=', values cannot hold newlines"
                               % key)
        lines.append("%s=%s\n" % (key, text))
    try:
        return "".join(lines).encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidInput("fence agent options must be valid text: %s" % error) from error


def value_text(value) -> str:
    """Agents read booleans as flags: ``lanplus=1``; ``False`` leaves the flag out of effect (``0``)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def scrub(text: str, secrets) -> str:
    """``text`` with every secret value masked, longest first (so a secret inside another is masked whole)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= OUTPUT_TAIL else "..." + text[-OUTPUT_TAIL:]


def find_agent(agent: str, search_path=SEARCH_PATH) -> str:
    if os.path.isabs(agent):
        path = agent
    elif AGENT_NAME.match(agent):
        path = next((os.path.join(d, agent) for d in search_path if os.access(os.path.join(d, agent), os.X_OK)), "")
    else:
        raise InvalidInput("agent must be a fence agent's name (fence_...) or an absolute path, not %r" % agent)
    if not path or not os.access(path, os.X_OK):
        raise InvalidInput("fence agent %s is not installed (package fence-agents, or give its path)" % agent)
    return path


class AgentRun:
    """What one agent run returned."""

    def __init__(self, returncode: int, output: str):
        self.returncode = returncode
        self.output = output


class FenceAgentClient:
    """One fence device (one agent and its options); each agent run under the caller's ``Deadline``."""

    def __init__(self, agent: str, options: dict, secrets: dict | None = None, agent_timeout: float = 30.0,
                 search_path=SEARCH_PATH):
        check_range("agent_timeout_s", agent_timeout, 0, 600, exclusive_minimum=True, unit="seconds")
        options = dict(options or {})
        secrets = dict(secrets or {})
        twice = sorted(set(options) & set(secrets))
        if twice:
            raise InvalidInput("fence agent options given both as options and as secrets: %s" % ", ".join(twice))
        reserved = sorted((set(options) | set(secrets)) & set(RESERVED))
        if reserved:
            raise InvalidInput("fence agent options set by the module, not by you: %s" % ", ".join(reserved))
        self.path = find_agent(agent, search_path)
        self.agent = os.path.basename(self.path)
        self.options = dict(options, **secrets)
        self._secrets = [value_text(v) for v in secrets.values()]
        self.agent_timeout = agent_timeout
        self._monitored = None
        self.target = "%s(%s)" % (self.agent, options.get("ip") or options.get("ipaddr") or options.get("plug") or "")

    def connect(self, deadline: Deadline) -> None:
        metadata = _METADATA.get(self.path)
        if metadata is None:
            run = self._run({}, "metadata", deadline)
            if run.returncode != 0:
                raise BmcError("%s: action=metadata failed (exit %d): %s" % (self.target, run.returncode, run.output))
            metadata = _METADATA[self.path] = AgentMetadata.parse(run.output, self.agent)
        problems = metadata.problems(self.options)
        if problems:
            raise InvalidInput("%s: %s" % (self.target, "; ".join(problems)))

    def power_state(self, deadline: Deadline) -> str:
        run = self._run(self.options, "status", deadline)
        if run.returncode == STATUS_ON:
            return ON
        if run.returncode == STATUS_OFF:
            return OFF
        raise self._failure("action=status", run, deadline)

    def chassis_control(self, action: str, deadline: Deadline) -> None:
        if action not in ACTIONS:
            raise InvalidInput("fence agents have no %r action here (only %s; there is no soft off)"
                               % (action, ", ".join(sorted(ACTIONS))))
        run = self._run(self.options, ACTIONS[action], deadline)
        if run.returncode != 0:
            raise self._failure("action=%s" % ACTIONS[action], run, deadline)

    def monitor(self, deadline: Deadline) -> AgentRun:
        return self._run(self.options, "monitor", deadline)

    def _failure(self, what: str, run: AgentRun, deadline: Deadline) -> BmcError:
        """The error for a failed run; a device that fails ``monitor`` too is unreachable (asked once per client)."""
        message = "%s: %s failed (exit %d): %s" % (self.target, what, run.returncode, run.output or "(no output)")
        if any(marker in run.output.lower() for marker in _AUTH_MARKERS):
            return BmcAuthError(message)
        if self._monitored is None and deadline.remaining() > 0:
            try:
                self._monitored = self.monitor(deadline).returncode == 0
            except BmcTimeout:
                self._monitored = False
        if self._monitored is False:
            return BmcUnreachable(message + " (and action=monitor fails: the device does not answer)")
        return BmcError(message)

    def _run(self, options: dict, action: str, deadline: Deadline) -> AgentRun:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise BmcTimeout("%s: the %g s timeout ran out before action=%s" % (self.target, deadline.seconds, action))
        limit = min(self.agent_timeout, remaining)
        process = subprocess.Popen([self.path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True, env=agent_environment())
        try:
            output = process.communicate(agent_input(options, action), timeout=limit)[0]
        except subprocess.TimeoutExpired as error:
            kill_group(process)
            raise BmcTimeout("%s: action=%s did not finish within %g s (the agent was killed)"
                             % (self.target, action, limit)) from error
        text = output.decode("utf-8", "replace")
        return AgentRun(process.returncode, text if action == "metadata" else tail(scrub(text, self._secrets)))


def agent_environment() -> dict:
    """The agents' environment: C locale (their messages are matched above), no Python warnings in the output."""
    return dict(os.environ, LC_ALL="C", LANG="C", PYTHONWARNINGS="ignore")


def kill_group(process: subprocess.Popen) -> None:
    """Kill an agent and what it started (ipmitool, snmpget ...): its own process group, made for it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.communicate()
