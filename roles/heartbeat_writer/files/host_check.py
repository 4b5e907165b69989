# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The deploy's one look at a host (tasks/preflight.py runs it with ``python3 -I -c``), before anything changes there:
the interpreter the units name (3.9 or later), the store, and what is installed already, so that the deploy runs a
module only for what differs (docs/ARCHITECTURE.md, item 21). Reads only. Its one argument is a JSON object:

    store     the store path: must be a directory, not a link to one
    paths     files and directories: each one's type, mode, owner and (files) sha256, or null when missing
    state     the writer's runtime state (state.json): the sha256 of the archive the writer runs ("archive")
    units     systemd units: enabled and active ({} when systemctl cannot tell)
    packages  package names: those not installed (null when neither dpkg nor rpm can tell)
    container true to ask what container the host is: systemd-detect-virt's name for it ("none" when it is not
              one), null when not asked or systemd-detect-virt is missing

and it prints one JSON object with those keys. A hung NFS store hangs whatever looks at it: the task has a deadline.
"""

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys

if sys.version_info < (3, 9):
    sys.exit("heartbeat_writer: %s is Python %d.%d; the writer needs 3.9 or later" % ((sys.executable,) + sys.version_info[:2]))


def describe(path):
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return None
    kind = "file" if stat.S_ISREG(found.st_mode) else "directory" if stat.S_ISDIR(found.st_mode) else "other"
    described = {"type": kind, "mode": "%04o" % stat.S_IMODE(found.st_mode), "uid": found.st_uid, "gid": found.st_gid}
    if kind == "file":
        with open(path, "rb") as handle:
            described["sha256"] = hashlib.sha256(handle.read()).hexdigest()
    return described


def runtime_state(path):
    try:
        with open(path, "rb") as handle:
            state = json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: as if it named no archive, so the writer is reloaded
    return state if isinstance(state, dict) else {}


def units(names):
    """``{unit: {"enabled": bool, "active": bool}}`` from one ``systemctl show``, or {}."""
    if not names or not shutil.which("systemctl"):
        return {}
    shown = subprocess.run(["systemctl", "show", "--property=Id,ActiveState,UnitFileState"] + names,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True, check=False)
    properties, found = {}, {}
    for line in shown.stdout.splitlines() + [""]:
        if "=" in line:
            key, value = line.split("=", 1)
            properties[key] = value
        elif properties.get("Id") in names:
            found[properties["Id"]] = {"enabled": properties.get("UnitFileState") == "enabled",
                                       "active": properties.get("ActiveState") == "active"}
            properties = {}
    return found if shown.returncode == 0 and len(found) == len(names) else {}


def missing_packages(names):
    """The packages of ``names`` that are not installed, by dpkg or rpm (whichever manages the host), or None."""
    if not names:
        return []
    if shutil.which("apt-get") and shutil.which("dpkg-query"):
        shown = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\\n"] + names,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True, check=False)
        installed = {fields[0] for fields in map(str.split, shown.stdout.splitlines()) if len(fields) > 1 and fields[1][1:2] == "i"}
        return [name for name in names if name not in installed]
    if shutil.which("rpm") and (shutil.which("dnf") or shutil.which("yum") or shutil.which("zypper")):
        return [name for name in names if subprocess.run(["rpm", "-q", "--whatprovides", name], stdout=subprocess.DEVNULL,
                                                         stderr=subprocess.DEVNULL, check=False).returncode != 0]
    return None


def container(asked):
    if not asked or not shutil.which("systemd-detect-virt"):
        return None
    shown = subprocess.run(["systemd-detect-virt", "--container"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           universal_newlines=True, check=False)  # exits 1 with "none" outside a container
    return shown.stdout.strip() or None


def main(request):
    store = request["store"]
    print(json.dumps({
        "store": os.path.isdir(store) and not os.path.islink(store),
        "paths": {path: describe(path) for path in request["paths"]},
        "state": runtime_state(request["state"]),
        "units": units(request["units"]),
        "packages": missing_packages(request["packages"]),
        "container": container(request.get("container")),
    }, sort_keys=True))


main(json.loads(sys.argv[1]))
