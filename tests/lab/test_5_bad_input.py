"""Bad input through the CLI: a clear message, exit status 1 (2 for usage errors), and nothing changed."""

import pytest

from conftest import HOSTS, lab_cli
from lab import config, net, power


def lab_state():
    """What bad input could have changed: the lab record (faults, guests), power states, links."""
    with open(config.STATE_FILE, encoding='utf-8') as f:
        record = f.read()
    links = {name: link['flags'] for name, link in net.links().items() if name.startswith('kvmha-')}
    return record, [power.state(h) for h in HOSTS], links


@pytest.mark.parametrize('args, message', [
    (['power', 'off', 'h7'], "unknown host 'h7'"),
    (['power', 'off', 'host1'], "unknown host 'host1'"),
    (['fault', 'partition-mgmt', 'h9'], "unknown host 'h9'"),
    (['fault', 'unplug', 'h1'], "unknown fault 'unplug'"),
    (['fault', 'partition-mgmt'], 'partition-mgmt hN'),
    (['fault', 'store-outage', 'h1'], 'cluster-wide'),
    (['fault', 'clock-skew', 'h1'], 'needs a whole number'),
    (['fault', 'clock-skew', 'h1', 'soon'], 'needs a whole number'),
    (['fault', 'partition', 'h1', '5'], 'takes no argument'),
    (['heal', 'h1', 'unplug'], "unknown fault 'unplug'"),
    (['heal', 'h8'], "unknown host 'h8'"),
    (['ssh', 'h0', 'true'], "unknown host 'h0'"),
    (['up', '--hosts', '4'], 'run `lab down` first'),
    (['up', '--hosts', '10'], '--hosts must be 1..9'),
    (['up', '--ipmi-sim', 'h5'], 'no such host h5'),
])
def test_bad_input_is_refused_and_changes_nothing(lab, args, message):
    before = lab_state()
    rc, out, err = lab_cli(*args)
    assert rc == 1 and message in err, (rc, out, err)
    assert lab_state() == before


def test_unknown_power_action_is_a_usage_error(lab):
    rc, _out, err = lab_cli('power', 'explode', 'h1')
    assert rc == 2 and 'invalid choice' in err


def test_not_root_is_refused(lab):
    before = lab_state()
    for args in (['status'], ['power', 'off', 'h1'], ['fault', 'partition', 'h1'], ['down']):
        rc, _out, err = lab_cli(*args, user='65534')
        assert rc == 1 and 'needs root' in err, err
    assert lab_state() == before


def test_missing_packages_are_named_and_nothing_changes(lab):
    before = lab_state()
    rc, _out, err = lab_cli('up', env={'PATH': '/nonexistent'})
    assert rc == 1 and 'missing Debian packages' in err and 'iproute2' in err and 'nasm' in err, err
    assert lab_state() == before


def test_good_input_still_works(lab):
    assert lab_cli('power', 'status', 'h1')[:2] == (0, 'h1: on\n')
