# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""call_in_own_process: the value or the error comes back whole, and nothing the call did or left running reaches the
caller's process - no state, no output, no thread, no child."""

from __future__ import annotations

import os
import resource
import threading
import time

import pytest

from ansible_collections.kvmha.cluster.plugins.module_utils._errors import BmcTimeout, DeadlineExceeded, KvmhaError
from ansible_collections.kvmha.cluster.plugins.module_utils._own_process import call_in_own_process

STATE = {"touched": False}


def assert_no_child_left():
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_the_value_comes_back():
    assert call_in_own_process(lambda: {"powerstate": {"before": "on", "after": "off"}, "n": [1, 2]}, 10, "a call") \
        == {"powerstate": {"before": "on", "after": "off"}, "n": [1, 2]}
    assert_no_child_left()


def test_an_error_comes_back_with_its_kind_message_and_partial_result():
    def fails():
        raise BmcTimeout("127.0.0.1:623: login did not finish", result={"powerstate": {"before": "unknown"}})
    with pytest.raises(KvmhaError) as raised:
        call_in_own_process(fails, 10, "a call")
    assert raised.value.kind == "timeout" and raised.value.msg == "127.0.0.1:623: login did not finish"
    assert raised.value.result == {"powerstate": {"before": "unknown"}}


def test_an_unexpected_exception_is_the_calls_error_not_a_crash():
    with pytest.raises(KvmhaError) as raised:
        call_in_own_process(lambda: {}["missing"], 10, "fence device x")
    assert raised.value.kind == "error" and raised.value.msg == "fence device x failed: KeyError: 'missing'"


def test_a_value_that_cannot_cross_is_an_error():
    with pytest.raises(KvmhaError) as raised:
        call_in_own_process(object, 10, "a call")
    assert raised.value.msg.startswith("a call returned what cannot be handed back: ")


def test_a_call_that_does_not_return_is_ended_at_its_deadline():
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as raised:
        call_in_own_process(lambda: time.sleep(60), 0.3, "a hung call")
    assert time.monotonic() - started < 30  # hang bound: the 60 s sleep was not waited for
    assert raised.value.kind == "timeout" and "its process was ended" in raised.value.msg
    assert_no_child_left()


def test_what_the_call_changes_or_leaves_running_stays_in_its_process(tmp_path):
    """A thread the call starts and abandons (pyghmi's given-up login) dies with the child: it never writes."""
    trace = tmp_path / "trace"

    def leaves_a_thread():
        STATE["touched"] = True

        def later():
            time.sleep(0.5)
            trace.write_text("the abandoned thread ran on")
        threading.Thread(target=later, daemon=True).start()
        return "done"
    threads = threading.active_count()
    assert call_in_own_process(leaves_a_thread, 10, "a call") == "done"
    time.sleep(1.0)
    assert not trace.exists() and STATE["touched"] is False and threading.active_count() == threads


def test_the_childs_output_does_not_reach_the_callers_stdout(capfd):
    """A module's stdout is its JSON result: pyghmi prints to stdout on some errors."""
    def noisy():
        print("noise", flush=True)
        os.write(1, b"more noise\n")
        return 1
    assert call_in_own_process(noisy, 10, "a call") == 1
    assert "noise" not in capfd.readouterr().out


def test_a_caller_holding_more_than_1024_files_is_served():
    """select() refuses descriptors past FD_SETSIZE (1024); a worker of a large run may hold that many."""
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1400 if limits[1] == resource.RLIM_INFINITY else max(limits[1], 1400)
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
    held = []
    try:
        while len(held) < 1100:
            held.append(os.dup(0))
        assert call_in_own_process(lambda: "served", 10, "a call") == "served"
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)
