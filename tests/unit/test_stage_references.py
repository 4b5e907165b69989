# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every test stage a file names exists: an aliases file or a preflight message that sends a reader to a renamed
stage sends them nowhere."""

from __future__ import annotations

import os
import re

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
STAGES = os.path.join(ROOT, "scripts", "test-stages")
SEARCHED = ("README.md", "Makefile", "docs", "scripts", "tests/integration", "tests/writer", "tests/unit", "extensions")
REFERENCE = re.compile(r"test-stages/([0-9]{2}-[a-z0-9-]+)\.sh")


def _files():
    for entry in SEARCHED:
        path = os.path.join(ROOT, entry)
        if os.path.isfile(path):
            yield path
        for top, dirs, names in os.walk(path):
            dirs[:] = [d for d in dirs if d not in ("__pycache__", "output")]
            for name in names:
                yield os.path.join(top, name)


def _references():
    found = {}
    for path in _files():
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (UnicodeDecodeError, OSError):
            continue  # binary fixtures
        for stage in REFERENCE.findall(text):
            found.setdefault(stage, []).append(os.path.relpath(path, ROOT))
    return found


def test_every_named_stage_exists():
    references = _references()
    assert references, "the search found no stage reference at all: the pattern or the paths are wrong"
    missing = {stage: paths for stage, paths in references.items() if not os.path.exists(os.path.join(STAGES, stage + ".sh"))}
    assert not missing, "stages named but not in scripts/test-stages: %s" % missing
