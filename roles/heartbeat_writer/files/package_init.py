# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The kvmha heartbeat writer and the record format it shares with kvmha.cluster (installed by its heartbeat_writer role)."""
