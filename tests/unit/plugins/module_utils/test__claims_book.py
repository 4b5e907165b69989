# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a ClaimBook writes on the store, and the small helpers of _claims, where mutation testing
(docs/TESTING.md) found them unguarded: bounded reasons, no empty reason, four generations kept, housekeeping
that never fails an evacuation, and the texts an operator reads."""

from __future__ import annotations

import os

import pytest

from ansible_collections.kvmha.cluster.plugins.module_utils import _claims
from ansible_collections.kvmha.cluster.plugins.module_utils._claims import ClaimBook, Decision, claims_dir, normalise_uuid
from ansible_collections.kvmha.cluster.plugins.module_utils._errors import InvalidInput, StoreError

VM = "0b5f6c1e-0d5a-4f7e-8d0c-5d1a2b3c4d5e"


def book(tmp_path, owner="evacuator-1"):
    return ClaimBook(str(tmp_path), owner, "h1", "h1/boot-a", ttl=300.0)


def claimed(claims):
    return claims.acquire(VM, "db1", "h2", claims.inspect(VM, reachable=[]))


def test_a_claim_carries_no_reason_until_it_fails_and_then_a_bounded_one(tmp_path):
    claims = book(tmp_path)
    claim = claimed(claims)
    assert claim.data == {"failed_host": "h1", "incident": "h1/boot-a", "vm": VM, "vm_name": "db1", "target": "h2",
                          "state": "claimed"}
    failed = claims.mark_failed(claim, "x" * 600)
    assert failed.released and failed.data["state"] == "failed" and failed.data["reason"] == "x" * 512
    assert claims._data(VM, "db1", "h2", "failed", "y" * 600)["reason"] == "y" * 512  # pylint: disable=protected-access
    assert "reason" not in claims._data(VM, "db1", "h2", "claimed", "")  # pylint: disable=protected-access


def test_four_generations_of_a_claim_are_kept(tmp_path):
    claims = book(tmp_path)
    claim = claimed(claims)
    for attempt in range(6):
        claim = claims.mark_failed(claim, "attempt %d failed" % attempt)  # released: the next run takes it over
        decision = claims.inspect(VM, reachable=[])
        assert decision.action == "takeover"
        claim = claims.acquire(VM, "db1", "h2", decision)
    kept = [name for name in os.listdir(os.path.join(claims_dir(str(tmp_path)), VM)) if name.endswith(".json")]
    assert len(kept) == 4 and claim.generation == 13


@pytest.mark.parametrize("error", [StoreError("the store is read-only"), OSError(30, "Read-only file system")])
def test_housekeeping_that_fails_never_fails_the_claim(tmp_path, monkeypatch, error):
    claims = book(tmp_path)

    def prune(*args, **kwargs):
        raise error

    monkeypatch.setattr(claims.docs, "prune", prune)
    assert claimed(claims).data["state"] == "claimed"


def test_a_decision_shows_its_action_and_reason():
    assert repr(Decision("skip", "claimed by evacuator-2")) == "Decision('skip', 'claimed by evacuator-2')"


def test_a_bad_uuid_is_named_in_the_error_bounded():
    with pytest.raises(InvalidInput) as err:
        normalise_uuid("not-a-uuid")
    assert str(err.value) == "'not-a-uuid' is not a UUID"
    with pytest.raises(InvalidInput) as err:
        normalise_uuid("z" * 100)
    assert str(err.value) == "%r is not a UUID" % ("z" * 80)


def test_times_are_shown_in_utc_or_as_never():
    assert _claims._when(None) == "never"  # pylint: disable=protected-access
    assert _claims._when(0) == "1970-01-01T00:00:00Z"  # pylint: disable=protected-access
    assert _claims._when(1764756900.0) == "2025-12-03T10:15:00Z"  # pylint: disable=protected-access
