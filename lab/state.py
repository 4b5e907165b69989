"""The lab's own record (lab.json on the lab tmpfs): its shape, guests and active faults.

Power state, links and mounts are always read from the system; this file only holds what cannot be read
back: which hosts and guests the lab was built with, and which faults are active (with what they changed).
Writers hold the global lock (lab.api), so read-modify-write is safe.
"""

import json

from lab import config
from lab.util import read_text, write_text

VERSION = 1


def new(hosts, guests_per_host, ipmi_sim):
    return {'version': VERSION, 'hosts': hosts, 'guests_per_host': guests_per_host, 'ipmi_sim': ipmi_sim,
            'guests': {}, 'faults': {}, 'cluster_faults': {}}


def load():
    """The record, or None when no lab is up (no lab root, or a lab root without a record)."""
    text = read_text(config.STATE_FILE)
    return json.loads(text) if text else None


def save(record):
    write_text(config.STATE_FILE, json.dumps(record, indent=2, sort_keys=True) + '\n')
