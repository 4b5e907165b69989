# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Entry point of the kvmha boot guard: runs ``kvmha.boot_guard`` from the directory this file is installed in.

Run as ``python3 -I -B <install_dir>/kvmha-boot-guard.py --config <writer config>`` by kvmha-boot-guard.service.
"""

import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.exit(importlib.import_module("kvmha.boot_guard").main())
