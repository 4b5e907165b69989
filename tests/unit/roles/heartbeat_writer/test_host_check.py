# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""files/host_check.py, the deploy's one look at a host, run as the preflight runs it (``python3 -I -c``), with
stand-ins for systemctl, dpkg-query and rpm on PATH: what it reports decides which tasks of the deploy run."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[4] / "roles" / "heartbeat_writer" / "files" / "host_check.py"
SYSTEMCTL = """#!/bin/sh
[ "$1" = show ] || exit 1
printf 'Id=a.service\\nActiveState=active\\nUnitFileState=enabled\\n\\nUnitFileState=disabled\\nId=b.service\\nActiveState=failed\\n'
"""
DPKG_QUERY = """#!/bin/sh
echo "python3-libvirt ii "
echo "held hi "
echo "removed rc "
exit 1
"""
RPM = """#!/bin/sh
[ "$3" = python3-libvirt ]
"""


def tool(directory: pathlib.Path, name: str, text: str):
    (directory / name).write_text(text)
    (directory / name).chmod(0o755)


def look(tmp_path, bins, **request):
    request = dict({"store": str(tmp_path), "paths": [], "state": str(tmp_path / "state.json"), "units": [], "packages": []}, **request)
    done = subprocess.run([sys.executable, "-I", "-c", SCRIPT.read_text(), json.dumps(request)], capture_output=True, text=True,
                          env={"PATH": str(bins)}, check=True)
    return json.loads(done.stdout)


@pytest.fixture
def bins(tmp_path):
    directory = tmp_path / "bin"
    directory.mkdir()
    return directory


def test_files_directories_and_the_writers_runtime_state_are_described(tmp_path, bins):
    (tmp_path / "a.pyz").write_bytes(b"archive")
    (tmp_path / "a.pyz").chmod(0o640)
    (tmp_path / "link").symlink_to(tmp_path)
    (tmp_path / "state.json").write_text(json.dumps({"seq": 3, "archive": "ab"}))
    found = look(tmp_path, bins, paths=[str(tmp_path / "a.pyz"), str(tmp_path), str(tmp_path / "link"), str(tmp_path / "none")])
    owner = {"uid": os.getuid(), "gid": os.getgid()}
    assert found["paths"] == {
        str(tmp_path / "a.pyz"): dict(owner, type="file", mode="0640", sha256=hashlib.sha256(b"archive").hexdigest()),
        str(tmp_path): dict(owner, type="directory", mode="%04o" % (tmp_path.stat().st_mode & 0o7777)),
        str(tmp_path / "link"): dict(owner, type="other", mode="0777"),
        str(tmp_path / "none"): None}
    assert found["state"] == {"seq": 3, "archive": "ab"} and found["store"] is True
    (tmp_path / "state.json").write_text("{")
    assert look(tmp_path, bins)["state"] == {}, "an unreadable state names no archive: the writer is reloaded"
    (tmp_path / "state.json").unlink()
    assert look(tmp_path, bins)["state"] is None
    assert look(tmp_path, bins, store=str(tmp_path / "link"))["store"] is False


def test_units_come_from_one_systemctl_show_or_not_at_all(tmp_path, bins):
    assert look(tmp_path, bins, units=["a.service", "b.service"])["units"] == {}  # no systemctl
    tool(bins, "systemctl", SYSTEMCTL)
    assert look(tmp_path, bins, units=["a.service", "b.service"])["units"] == {
        "a.service": {"enabled": True, "active": True}, "b.service": {"enabled": False, "active": False}}
    assert look(tmp_path, bins, units=["a.service", "c.service"])["units"] == {}, "a unit not shown: nothing known"


def test_missing_packages_by_dpkg_or_rpm_or_unknown(tmp_path, bins):
    packages = ["python3-libvirt", "held", "removed", "absent"]
    assert look(tmp_path, bins, packages=packages)["packages"] is None
    assert look(tmp_path, bins, packages=[])["packages"] == []
    tool(bins, "rpm", RPM)
    tool(bins, "dnf", "#!/bin/sh\nexit 1\n")
    assert look(tmp_path, bins, packages=packages)["packages"] == ["held", "removed", "absent"]
    tool(bins, "dpkg-query", DPKG_QUERY)
    tool(bins, "apt-get", "#!/bin/sh\nexit 1\n")
    assert look(tmp_path, bins, packages=packages)["packages"] == ["removed", "absent"]


def test_the_container_only_when_asked_and_known(tmp_path, bins):
    assert look(tmp_path, bins, container=True)["container"] is None  # no systemd-detect-virt
    tool(bins, "systemd-detect-virt", '#!/bin/sh\n[ "$1" = --container ] && echo systemd-nspawn\n')
    assert look(tmp_path, bins)["container"] is None
    assert look(tmp_path, bins, container=True)["container"] == "systemd-nspawn"
    tool(bins, "systemd-detect-virt", "#!/bin/sh\necho none\nexit 1\n")
    assert look(tmp_path, bins, container=True)["container"] == "none"
