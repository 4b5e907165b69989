# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit test settings shared by every test module."""

from hypothesis import settings

# No test asserts how fast an example runs: hypothesis's per-example deadline would be such an assertion, and the
# units run beside other stages on two shared cores.
settings.register_profile("kvmha", deadline=None)
settings.load_profile("kvmha")
