# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Build kvmha-heartbeat.pyz, the one file the heartbeat_writer role installs on a hypervisor: a zipapp holding the
package ``kvmha`` (writer.py, boot_guard.py and the collection's module_utils listed in the role's vars/main.yml,
unchanged) and a ``__main__.py`` that runs the writer, or the boot guard with a first argument ``boot-guard``.

Run by the role on the controller (never installed on the hosts), and by the tests, which run what it builds.
The archive is the same bytes for the same sources on any controller and Python: entries sorted, stored (not
compressed: deflate output depends on the zlib build), one fixed date, fixed permissions, no extra fields. So a
second deploy copies nothing and reloads no writer.

    python build_pyz.py <output file>    # prints the archive's sha256, for the deploy to compare with the host's
"""

from __future__ import annotations

import hashlib
import pathlib
import sys
import zipfile

import yaml

ROLE = pathlib.Path(__file__).resolve().parents[1]
MODULE_UTILS = ROLE.parents[1] / "plugins" / "module_utils"
FILES = ROLE / "files"
DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip file can say
MODE = 0o100644  # a regular file, rw-r--r--
UNIX = 3  # "made by" system: Unix, whatever the controller (the mode above is a Unix mode)


def module_utils() -> list:
    """The collection's module_utils that go into ``kvmha/``: the role's two lists in vars/main.yml."""
    lists = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    return lists["heartbeat_writer__module_utils"] + lists["heartbeat_writer__guard_module_utils"]


def members() -> dict:
    """``{name in the archive: source path}``: exactly what the archive holds."""
    found = {"__main__.py": FILES / "pyz_main.py", "kvmha/__init__.py": FILES / "package_init.py",
             "kvmha/writer.py": FILES / "writer.py", "kvmha/boot_guard.py": FILES / "boot_guard.py"}
    found.update({"kvmha/" + name: MODULE_UTILS / name for name in module_utils()})
    return found


def build(output: pathlib.Path) -> pathlib.Path:
    """Write the archive to ``output`` (replaced if there) and return its path."""
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, source in sorted(members().items()):
            info = zipfile.ZipInfo(name, date_time=DATE_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = UNIX
            info.external_attr = MODE << 16
            archive.writestr(info, source.read_bytes())
    return output


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: build_pyz.py <output file>\n")
        return 2
    sys.stdout.write(hashlib.sha256(build(pathlib.Path(args[0])).read_bytes()).hexdigest() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
