# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one file the role ships (files/writer.py) is the assembly of the writer's parts (writer/*.py)."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[4]


@pytest.fixture(scope="module")
def build():
    spec = importlib.util.spec_from_file_location("build_writer", ROOT / "scripts" / "build_writer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_writer_is_the_assembly_of_its_parts(build):
    assert build.assemble() == (ROOT / "roles" / "heartbeat_writer" / "files" / "writer.py").read_text(), (
        "roles/heartbeat_writer/files/writer.py is out of date: run python scripts/build_writer.py")


def test_every_part_is_assembled(build):
    parts = {p.stem for p in (ROOT / "roles" / "heartbeat_writer" / "writer").glob("_*.py") if p.name != "__init__.py"}
    text = build.assemble()
    assert parts and all("(writer/%s.py)" % part in text for part in parts)


def test_domain_xml_is_inlined_not_shipped_beside(build):
    """The writer reads domain XML with the collection's own _domainxml.py, inlined: still one file, no import of it."""
    text = build.assemble()
    assert "(plugins/module_utils/_domainxml.py)" in text and "_domainxml" not in text.replace("(plugins/module_utils/_domainxml.py)", "")
    assert "ansible_collections" not in text


@pytest.mark.parametrize("part, change, message", [
    ("_capacity", "\ndef store_write():\n    pass\n", "defined in both"),
    ("_capacity", "\nimport os\n", "at the top of a part"),
    ("_workers", "\n", None),
])
def test_the_assembler_refuses_what_one_namespace_cannot_hold(build, monkeypatch, tmp_path, part, change, message):
    parts = tmp_path / "writer"
    parts.mkdir()
    for source in (ROOT / "roles" / "heartbeat_writer" / "writer").glob("*.py"):
        (parts / source.name).write_text(source.read_text())
    (parts / (part + ".py")).write_text((parts / (part + ".py")).read_text() + change)
    monkeypatch.setattr(build, "PARTS_DIR", parts)
    if message is None:
        assert "writer/_workers.py" in build.assemble()
        return
    with pytest.raises(build.BuildError, match=message):
        build.assemble()


def test_a_name_from_a_later_part_is_refused(build, monkeypatch, tmp_path):
    parts = tmp_path / "writer"
    parts.mkdir()
    for source in (ROOT / "roles" / "heartbeat_writer" / "writer").glob("*.py"):
        text = source.read_text()
        if source.name == "_workers.py":
            text = text.replace("import time\n", "import time\n\nfrom ._main import main\n", 1)
        (parts / source.name).write_text(text)
    monkeypatch.setattr(build, "PARTS_DIR", parts)
    with pytest.raises(build.BuildError, match="comes later"):
        build.assemble()
