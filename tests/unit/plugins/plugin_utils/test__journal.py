# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The journal's pure parts: which keys are secrets however they are spelt, and which handler reads a result."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kvmha.cluster.plugins.plugin_utils._journal import (
    ANY,
    FAILURES,
    HANDLERS,
    PHASES,
    MAX_ITEM_CAUSES,
    SECRET_WORDS,
    failure_message,
    handler_for,
    is_secret_key,
    scrub,
)

WORDS = st.text(st.characters(min_codepoint=ord("a"), max_codepoint=ord("z")), min_size=1, max_size=8)
PLAIN = WORDS.filter(lambda w: w not in SECRET_WORDS)


def spell(words, style):
    """``words`` as one key: snake_case, kebab-case, SCREAMING_SNAKE, camelCase or PascalCase."""
    if style == "snake":
        return "_".join(words)
    if style == "kebab":
        return "-".join(words)
    if style == "screaming":
        return "_".join(words).upper()
    capitalised = "".join(w.capitalize() for w in words)
    return capitalised if style == "pascal" else words[0] + "".join(w.capitalize() for w in words[1:])


STYLES = st.sampled_from(["snake", "kebab", "screaming", "camel", "pascal"])


@given(st.lists(PLAIN, max_size=3), st.sampled_from(SECRET_WORDS), STYLES)
def test_a_key_ending_in_a_secret_word_is_secret_in_every_spelling(prefix, secret, style):
    key = spell(prefix + [secret], style)
    assert is_secret_key(key), key
    assert scrub({key: "x", "kept": 1}) == {"kept": 1}


@given(st.lists(WORDS, max_size=3), PLAIN, STYLES)
def test_a_key_ending_in_another_word_is_kept(prefix, last, style):
    words = prefix + [last]
    key = spell(words, style)
    # One-letter words in camelCase run together ("K"+"G" reads "KG"): such a key may end in a secret word after all.
    glued = style in ("camel", "pascal") and any("".join(words[i:]) in SECRET_WORDS for i in range(len(words)))
    assert glued or not is_secret_key(key), key


def test_every_handler_exists_and_every_phase_is_known():
    from ansible_collections.kvmha.cluster.plugins.callback.journal import CallbackModule

    for table in (HANDLERS, FAILURES):
        for (phase, module), handler in table.items():
            assert phase == ANY or phase in PHASES, phase
            assert module == ANY or module.isidentifier(), module
    for handler in HANDLERS.values():
        assert callable(getattr(CallbackModule, "_on_" + handler, None)), handler


@pytest.mark.parametrize("phase, module, handler", [
    ("remediate", "kvm_heartbeat", "remediation_check"),  # the specific entry wins over the phase's ANY
    ("remediate", "", "remediation"),
    ("probe", "cluster_lease", "lease"),
    ("", "cluster_lease", "lease"),
    ("", "kvm_heartbeat", ""),
    ("", "", ""),
    ("observe", "", ""),
])
def test_handler_for(phase, module, handler):
    assert handler_for(HANDLERS, phase, module) == handler


# ----------------------------------------------------------------------------------------- failure_message

MESSAGES = st.text(st.characters(min_codepoint=ord("a"), max_codepoint=ord("z")), min_size=1, max_size=20)


def loop_item(label, failed, msg):
    return {"failed": failed, "msg": msg, "item": {"host": label}, "ansible_loop_var": "item", "_ansible_item_label": label}


@given(st.lists(st.tuples(st.booleans(), MESSAGES), max_size=8))
def test_a_failed_loop_names_its_failed_items_causes_and_only_theirs(items):
    result = {"msg": "One or more items failed", "results": [loop_item("h%d" % i, f, m) for i, (f, m) in enumerate(items)]}
    message = failure_message(result, "failed")
    causes = ["h%d: %s" % (i, m) for i, (f, m) in enumerate(items) if f]
    assert message.startswith("One or more items failed")
    for cause in causes[:MAX_ITEM_CAUSES]:
        assert cause in message
    for i, (failed, msg) in enumerate(items):
        if not failed:
            assert "h%d: %s" % (i, msg) not in message
    assert ("and %d more" % (len(causes) - MAX_ITEM_CAUSES) in message) == (len(causes) > MAX_ITEM_CAUSES)


@pytest.mark.parametrize("result, message", [
    ({"msg": "the store is read-only"}, "the store is read-only"),
    ({}, "failed"),
    ({"msg": "two\n  lines"}, "two lines"),
    # a module's own "results" key (not a loop) is not taken for loop items
    ({"msg": "bad", "results": [{"failed": True, "msg": "inner"}]}, "bad"),
    # an item without a label is named by the item itself
    ({"msg": "One or more items failed", "results": [{"failed": True, "msg": "no space", "ansible_loop_var": "host", "host": "h2"}]},
     "One or more items failed: h2: no space"),
    ({"msg": "One or more items failed", "results": [{"failed": True, "ansible_loop_var": "item", "item": {"a": 1}}]},
     'One or more items failed: {"a": 1}: failed'),
    # the same cause of the same item once (an until loop's retries are one item)
    ({"msg": "x", "results": [loop_item("h1", True, "full"), loop_item("h1", True, "full")]}, "x: h1: full"),
])
def test_failure_message(result, message):
    assert failure_message(result, "failed") == message
