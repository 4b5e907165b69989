# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The outlets of a simulated APC Switched Rack PDU, served under net-snmp's snmpd through its pass_persist protocol.

snmpd (Debian's net-snmp) is the SNMP agent - it parses the packets, checks communities and v3 users, answers
sysObjectID - and hands every request under the APC enterprise subtree (.1.3.6.1.4.1.318) to this script, one
request at a time on stdin. The script models the PowerNet-MIB rPDU outlet tables fence_apc_snmp reads and writes:

* rPDUOutletControlOutletCommand .1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.N - SET 1 (immediateOn) or 2 (immediateOff);
  a GET returns the outlet's state, as on the device,
* rPDUOutletStatusOutletName .1.3.6.1.4.1.318.1.1.12.3.5.1.1.2.N,
* rPDUOutletStatusOutletState .1.3.6.1.4.1.318.1.1.12.3.5.1.1.4.N - 1 on, 2 off.

The outlets live in a file, one ``name state`` line per outlet (outlet N on line N), read at every request and
replaced atomically at every SET, so a test can set and read them without SNMP. Usage: python pdu_outlets.py FILE
"""

from __future__ import annotations

import os
import sys

CONTROL = ".1.3.6.1.4.1.318.1.1.12.3.3.1.1.4"
NAME = ".1.3.6.1.4.1.318.1.1.12.3.5.1.1.2"
STATE = ".1.3.6.1.4.1.318.1.1.12.3.5.1.1.4"
STATE_CODE = {"on": 1, "off": 2}
COMMANDS = {"1": "on", "2": "off"}  # immediateOn, immediateOff


def read_outlets(path: str) -> list:
    with open(path, encoding="utf-8") as f:
        return [line.split() for line in f if line.strip()]


def write_outlets(path: str, outlets: list) -> None:
    with open(path + ".new", "w", encoding="utf-8") as f:
        f.writelines("%s %s\n" % (name, state) for name, state in outlets)
    os.replace(path + ".new", path)


def variables(outlets: list) -> list:
    """Every (oid, type, value) served, in lexicographic OID order (the order GETNEXT walks)."""
    found = []
    for column, value in ((CONTROL, lambda o: STATE_CODE[o[1]]), (NAME, lambda o: o[0]),
                          (STATE, lambda o: STATE_CODE[o[1]])):
        found.extend(("%s.%d" % (column, n), "string" if column == NAME else "integer", value(outlet))
                     for n, outlet in enumerate(outlets, 1))
    return sorted(found, key=lambda v: oid_key(v[0]))


def oid_key(oid: str) -> tuple:
    return tuple(int(part) for part in oid.strip(".").split("."))


def get(outlets: list, oid: str):
    return next((v for v in variables(outlets) if v[0] == oid), None)


def get_next(outlets: list, oid: str):
    return next((v for v in variables(outlets) if oid_key(v[0]) > oid_key(oid)), None)


def set_outlet(path: str, oid: str, typed_value: str) -> str:
    """The pass_persist answer to a SET: DONE, or the SNMP error it stands for."""
    outlets = read_outlets(path)
    column, index = oid.rpartition(".")[::2]
    if column != CONTROL or not index.isdigit() or not 1 <= int(index) <= len(outlets):
        return "not-writable"
    kind, value = typed_value.partition(" ")[::2]
    if kind != "integer":
        return "wrong-type"
    if value not in COMMANDS:
        return "wrong-value"
    outlets[int(index) - 1][1] = COMMANDS[value]
    write_outlets(path, outlets)
    return "DONE"


def answer(variable) -> str:
    return "NONE" if variable is None else "%s\n%s\n%s" % variable


def serve(path: str, requests, reply) -> None:
    for line in requests:
        command = line.strip()
        if command == "PING":
            reply("PONG")
        elif command == "get":
            reply(answer(get(read_outlets(path), next(requests).strip())))
        elif command == "getnext":
            reply(answer(get_next(read_outlets(path), next(requests).strip())))
        elif command == "set":
            oid = next(requests).strip()
            reply(set_outlet(path, oid, next(requests).strip()))
        elif not command:  # snmpd closes the pipe, or sends an empty line, to end the script
            return


def main() -> None:
    def reply(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    serve(sys.argv[1], iter(sys.stdin.readline, ""), reply)


if __name__ == "__main__":
    main()
