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
    SECRET_WORDS,
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
