# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Preconditions of tests: a skip on a developer's machine, a failure in CI.

A test that needs something the machine lacks (a binding, a binary, a file system that is not a mount) may skip
where a developer runs it. In CI (``CI=true``) the machine is set up by scripts/setup.sh from bindep.txt, so a
missing precondition there is a broken setup, and a skip would silently drop the tests that should have caught a
bug: it fails instead, saying what is missing. tests/unit and tests/writer route every skip through here (their
conftest turns any other skip into the same failure under CI).
"""

from __future__ import annotations

import importlib
import os
import warnings

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require(condition, why: str) -> None:
    """Go on when ``condition`` holds; otherwise skip, or fail under CI=true, with ``why`` as the message."""
    if condition:
        return
    if in_ci():
        pytest.fail(_ci_message(why), pytrace=False)
    pytest.skip(why, allow_module_level=True)


def require_module(name: str, why: str):
    """Import ``name`` for a test module, or ``require`` it: skip the module locally, fail it under CI=true."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        require(False, "%s (import %s: %s)" % (why, name, err))
        raise  # not reached: require() raised


def optional(condition, why: str) -> bool:
    """For one optional check inside a test (e.g. ``systemd-analyze verify``): whether to run it. Locally a missing
    tool drops the check with a warning in pytest's summary; under CI=true it fails the test."""
    if condition:
        return True
    if in_ci():
        pytest.fail(_ci_message(why), pytrace=False)
    warnings.warn("check not run: %s" % why, stacklevel=2)
    return False


def _ci_message(why: str) -> str:
    return ("CI=true and a test precondition is missing: %s (a skip here would hide the test; fix the machine's "
            "setup, see scripts/setup.sh and bindep.txt)" % why)


def fail_skip_in_ci(report) -> None:
    """For conftest hooks: under CI=true, turn a skipped test or module (importorskip) into a failure."""
    if not (in_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = "CI=true: skipped tests are failures in CI, and this one skipped: %s" % reason
