"""End-to-end scenarios on the embedded lab (root only): one lab for the whole session, reset before each test.

Run through scripts/test-stages/70-e2e.sh, which brings the lab up and always takes it down. Nothing here asserts
a duration; every wait is a bounded poll, and each scenario prints its measured time to recovery.
"""

import os

import pytest

from cluster import Cluster

HOSTS = int(os.environ.get("KVMHA_E2E_HOSTS", "5"))
GUESTS_PER_HOST = 2


def pytest_configure(config):  # noqa: ARG001 - pytest hook signature
    if os.geteuid() != 0:
        pytest.exit("tests/e2e must run as root (it drives the lab)", returncode=2)


@pytest.fixture(scope="session")
def lab_cluster(tmp_path_factory):
    cluster = Cluster(HOSTS, GUESTS_PER_HOST, str(tmp_path_factory.mktemp("e2e")))
    cluster.up()
    return cluster


@pytest.fixture
def cluster(lab_cluster):
    """A healthy cluster: every fault healed, every host alive, every guest once on its home host."""
    lab_cluster.reset()
    yield lab_cluster
    lab_cluster.lab.heal()


def report_rto(run, host):
    print("\nRTO %s: %s s (last heartbeat -> last VM running)" % (host, run.rto(host)))
