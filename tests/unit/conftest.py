# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit test settings shared by every test module."""

import os

from hypothesis import settings

# No test asserts how fast an example runs: hypothesis's per-example deadline would be such an assertion, and the
# units run beside other stages on two shared cores.
settings.register_profile("kvmha", deadline=None)
# Mutation testing (scripts/mutation.sh) runs the tests once per mutant: the same examples every time, so that a
# mutant's fate does not depend on the draw, and no example database shared between mutants.
settings.register_profile("kvmha-mutation", deadline=None, derandomize=True, database=None)
settings.load_profile(os.environ.get("KVMHA_HYPOTHESIS_PROFILE", "kvmha"))
