# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit test settings shared by every test module."""

import importlib
import os
import sys

import pytest
from hypothesis import settings

from ansible_collections.kvmha.cluster.tests._require import fail_skip_in_ci
from ansible_collections.kvmha.cluster.tests._shipped import unpack_pyz

# No test asserts how fast an example runs: hypothesis's per-example deadline would be such an assertion, and the
# units run beside other stages on two shared cores.
settings.register_profile("kvmha", deadline=None)
# Mutation testing (scripts/mutation.sh) runs the tests once per mutant: the same examples every time, so that a
# mutant's fate does not depend on the draw, and no example database shared between mutants.
settings.register_profile("kvmha-mutation", deadline=None, derandomize=True, database=None)
settings.load_profile(os.environ.get("KVMHA_HYPOTHESIS_PROFILE", "kvmha"))


# Under CI=true no test may skip (tests/_require.py): a skip there hides a broken setup, e.g. a libvirt binding that
# no longer imports and takes every libvirt test with it.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):  # pylint: disable=unused-argument
    report = yield
    fail_skip_in_ci(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):  # pylint: disable=unused-argument
    report = yield
    fail_skip_in_ci(report)
    return report


# The heartbeat writer as the role installs it: the package ``kvmha`` of kvmha-heartbeat.pyz (built by the role's
# own build code, tests/_shipped.py), unpacked and imported. Its own tests use it, and so do tests that want a store
# written by the real writer.
@pytest.fixture(scope="session")
def writer(tmp_path_factory):
    base = unpack_pyz(tmp_path_factory.mktemp("writer_pkg"))
    sys.path.insert(0, str(base))
    try:
        yield importlib.import_module("kvmha.writer")
    finally:
        sys.path.remove(str(base))
