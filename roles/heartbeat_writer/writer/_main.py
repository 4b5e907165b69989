# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The command line: logging, signals, ``--check-config``, the writer's run."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from ._errors import KvmhaError
from ._workers import LOG
from ._config import ConfigError, load_config
from ._daemon import HANDLED_SIGNALS, Writer


class _JournalFormatter(logging.Formatter):
    """Prefixes each line with its syslog priority (``<3>``) so journald files it at the right level."""

    LEVELS = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}

    def format(self, record):
        return "<%d>%s" % (self.LEVELS.get(record.levelno, 6), super().format(record))


def setup_logging(verbose: bool, logger: logging.Logger = LOG):
    """Log to stderr; under systemd (journald) with syslog priorities, else with times and level names."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def main(argv=None, archive_digest=None) -> int:
    """The writer; ``archive_digest`` is the sha256 of the archive it was started from (pyz_main.py)."""
    parser = argparse.ArgumentParser(prog="kvmha-heartbeat", description="kvmha heartbeat writer")
    parser.add_argument("--config", required=True, help="JSON configuration file")
    parser.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    # Signals that arrive before the writer exists are remembered and handled once it does; they were blocked
    # across a reload's exec, so unblock them only now (and before any thread or child inherits the mask).
    pending = []
    for signum in HANDLED_SIGNALS:
        signal.signal(signum, lambda number, _frame: pending.append(number))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
    setup_logging(args.verbose)
    try:
        conf = load_config(args.config)
    except ConfigError as err:
        LOG.error("invalid configuration: %s", err)
        return 2
    if args.check_config:
        sys.stdout.write("configuration OK: host %s, store %s, interval %.1f s, self-fence %s\n" % (
            conf["host"], conf["store"], conf["interval"], "armed (%s)" % conf["self_fence"]["action"] if conf["self_fence"]["armed"] else "off"))
        return 0
    try:
        writer = Writer(conf, archive_digest)
    except (OSError, KvmhaError) as err:
        LOG.error("cannot start: %s", getattr(err, "strerror", None) or err)
        return 1
    signal.signal(signal.SIGTERM, writer.request_stop)
    signal.signal(signal.SIGINT, writer.request_stop)
    signal.signal(signal.SIGHUP, writer.request_reexec)
    for signum in pending:
        (writer.request_reexec if signum == signal.SIGHUP else writer.request_stop)(signum)
    return writer.run()
