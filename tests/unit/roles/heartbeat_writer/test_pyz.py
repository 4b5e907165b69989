# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kvmha-heartbeat.pyz, the one file the role installs: the same bytes from every build (a second deploy copies
nothing and reloads no writer), exactly the files the role lists, and both programs run from it as their units run
them."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import time
import zipfile

import pytest
import yaml

from ansible_collections.kvmha.cluster.tests._shipped import ARTIFACT, BUILD, build_pyz

ROOT = pathlib.Path(__file__).resolve().parents[4]
ROLE = ROOT / "roles" / "heartbeat_writer"
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else shutil.which("python3")


@pytest.fixture(scope="module")
def pyz(tmp_path_factory):
    return build_pyz(tmp_path_factory.mktemp("pyz"))


def test_two_builds_are_the_same_bytes_whenever_and_wherever_they_run(tmp_path, monkeypatch, pyz):
    first = pyz.read_bytes()
    for source in BUILD.members().values():  # the sources' own dates and modes do not matter
        copy = tmp_path / "src" / source.relative_to(ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, copy)
        os.utime(copy, (time.time() - 86400, time.time() - 86400))
        copy.chmod(0o600)
    monkeypatch.setattr(BUILD, "ROLE", tmp_path / "src" / "roles" / "heartbeat_writer")
    monkeypatch.setattr(BUILD, "FILES", tmp_path / "src" / "roles" / "heartbeat_writer" / "files")
    monkeypatch.setattr(BUILD, "MODULE_UTILS", tmp_path / "src" / "plugins" / "module_utils")
    (tmp_path / "src" / "roles" / "heartbeat_writer" / "vars").mkdir(parents=True)
    shutil.copy(ROLE / "vars" / "main.yml", tmp_path / "src" / "roles" / "heartbeat_writer" / "vars" / "main.yml")
    (tmp_path / "again").mkdir()
    assert build_pyz(tmp_path / "again").read_bytes() == first


def test_the_archive_holds_exactly_the_listed_files_unchanged_in_a_fixed_form(pyz):
    lists = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    module_utils = lists["heartbeat_writer__module_utils"] + lists["heartbeat_writer__guard_module_utils"]
    expected = {"__main__.py": ROLE / "files" / "pyz_main.py", "kvmha/__init__.py": ROLE / "files" / "package_init.py",
                "kvmha/writer.py": ROLE / "files" / "writer.py", "kvmha/boot_guard.py": ROLE / "files" / "boot_guard.py"}
    expected.update({"kvmha/" + name: ROOT / "plugins" / "module_utils" / name for name in module_utils})
    with zipfile.ZipFile(pyz) as archive:
        infos = archive.infolist()
        assert [info.filename for info in infos] == sorted(expected)
        for info in infos:
            assert archive.read(info) == expected[info.filename].read_bytes(), info.filename
            assert (info.date_time, info.compress_type, info.external_attr >> 16, info.create_system, info.extra, info.comment) == (
                (1980, 1, 1, 0, 0, 0), zipfile.ZIP_STORED, 0o100644, 3, b"", b""), info.filename


def test_the_writer_checks_a_configuration_from_the_archive_as_the_role_validates_it(tmp_path, pyz):
    store = tmp_path / "store"
    store.mkdir()
    config = tmp_path / "heartbeat.json"
    config.write_text('{"host": "h1", "store": "%s"}' % store)
    done = subprocess.run([PYTHON, "-I", "-B", str(pyz), "--config", str(config), "--check-config"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "configuration OK: host h1" in done.stdout, done.stdout + done.stderr
    config.write_text('{"host": "h1", "store": "relative"}')
    done = subprocess.run([PYTHON, "-I", "-B", str(pyz), "--config", str(config), "--check-config"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "invalid configuration" in done.stderr


def test_boot_guard_is_the_archives_other_program(pyz):
    done = subprocess.run([PYTHON, "-I", "-B", str(pyz), "boot-guard", "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.startswith("usage: kvmha-boot-guard") and "--store-timeout" in done.stdout
    done = subprocess.run([PYTHON, "-I", "-B", str(pyz), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.startswith("usage: kvmha-heartbeat") and "--check-config" in done.stdout


def test_the_role_builds_on_the_controller_and_installs_the_one_archive():
    """The role runs this very build code, and every unit and check it installs names the archive."""
    tasks = (ROLE / "tasks" / "main.yml").read_text() + (ROLE / "tasks" / "install.yml").read_text()
    assert "{{ role_path }}/build/build_pyz.py" in tasks
    assert 'dest: "{{ heartbeat_writer_install_dir }}/%s"' % ARTIFACT in tasks
    assert "kvmha-heartbeat.pyz --config %s --check-config" in tasks
    for unit in ("kvmha-heartbeat.service.j2", "kvmha-boot-guard.service.j2"):
        assert "{{ heartbeat_writer_install_dir }}/%s" % ARTIFACT in (ROLE / "templates" / unit).read_text(), unit
