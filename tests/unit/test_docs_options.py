# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every module option the documentation names exists in that module's argument spec (an alias, deprecated or not,
counts): a renamed option cannot leave the docs telling operators to use the old name.

Options are named in docs/*.md in three ways, and all three are checked:
- an inline command, `ipmi_power state=off confirm=2` (the module's name, then option=value pairs);
- a bare `option=value` in a paragraph that names a module, or in a section whose heading names one;
- a YAML task in a code block, `kvmha.cluster.<module>:` followed by its options.
"""

from __future__ import annotations

import importlib
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py") if not p.stem.startswith("_"))

_SPAN = re.compile(r"`([^`\n]+)`")
_PAIR = re.compile(r"^([a-z][a-z0-9_]*)=\S")
_HEADING = re.compile(r"^#{1,6} ")
_TASK = re.compile(r"^(\s*)(?:- )?(?:kvmha\.cluster\.)([a-z_]+):\s*$")


def option_names(module: str) -> set:
    """Every name the module's argument spec accepts: options and their aliases (deprecated ones included)."""
    mod = importlib.import_module("ansible_collections.kvmha.cluster.plugins.modules." + module)
    spec = getattr(mod, "ARGUMENT_SPEC", None)
    if spec is None:
        spec = mod.argument_spec()
    names = set()
    for name, option in spec.items():
        names.add(name)
        names.update(option.get("aliases") or [])
        names.update(alias["name"] for alias in option.get("deprecated_aliases") or [])
    return names


def module_in(text: str) -> list:
    """The modules a piece of text names, as whole words (with or without the collection prefix)."""
    return [m for m in MODULES if re.search(r"(?<![\w.-])(?:kvmha\.cluster\.)?%s(?![\w-])" % re.escape(m), text)]


def paragraphs(text: str):
    """(section heading, paragraph) pairs: blank lines, headings, list items and table rows end a paragraph."""
    heading, block = "", []
    for line in text.splitlines() + [""]:
        starts_new = not line.strip() or _HEADING.match(line) or line.lstrip().startswith(("- ", "* ", "|"))
        if starts_new and block:
            yield heading, "\n".join(block)
            block = []
        if _HEADING.match(line):
            heading = line
        elif line.strip():
            block.append(line)


def named_options(text: str) -> list:
    """(module, option, where) for every option the markdown ``text`` names."""
    found = []
    in_code = False
    task = None  # (indent, module) of the YAML task being read in a code block
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_code, task = not in_code, None
            continue
        if not in_code:
            continue
        match = _TASK.match(line)
        if match and match.group(2) in MODULES:
            task = (len(match.group(1)) + (2 if line.lstrip().startswith("- ") else 0), match.group(2))
            continue
        if task is not None and line.strip():
            indent = len(line) - len(line.lstrip())
            key = re.match(r"^\s*([a-z][a-z0-9_]*):", line)
            if indent <= task[0]:
                task = None
            elif key and indent == task[0] + 2:
                found.append((task[1], key.group(1), line.strip()))
    for heading, paragraph in paragraphs(_without_code_blocks(text)):
        for span in _SPAN.findall(paragraph):
            words = span.split()
            command = words[0].replace("kvmha.cluster.", "")
            if command in MODULES and len(words) > 1 and all(_PAIR.match(w) for w in words[1:]):
                found += [(command, _PAIR.match(w).group(1), span) for w in words[1:]]
            elif len(words) == 1 and _PAIR.match(span) and not span.startswith("kvmha_"):
                for module in module_in(paragraph) or module_in(heading):
                    found.append((module, _PAIR.match(span).group(1), span))
    return found


def _without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def test_the_docs_name_module_options():
    """The check below has something to check: today's docs name options in inline commands and bare pairs."""
    names = [(m, o) for doc in DOCS for m, o, _where in named_options(doc.read_text(encoding="utf-8"))]
    assert ("ipmi_power", "state") in names and ("kvm_heartbeat", "detail") in names


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_option_named_in_the_docs_exists(doc):
    unknown = [(module, option, where) for module, option, where in named_options(doc.read_text(encoding="utf-8"))
               if option not in option_names(module)]
    assert unknown == [], "%s names options its modules do not have: %s" % (doc.name, unknown)


SAMPLE = """## Heartbeat check (kvm_heartbeat)

The reader runs `kvm_heartbeat state=check watch=5` on the observer.

- process: `detail=full` costs more than `detail=everything_and_more`.

## Inventory

Mount with `actimeo=1`.

```yaml
- name: Fence
  kvmha.cluster.ipmi_power:
    address: 10.0.0.1
    state: "off"
    no_such_option: 3
  delegate_to: localhost
```
"""


def test_the_check_finds_each_way_of_naming_an_option():
    assert named_options(SAMPLE) == [
        ("ipmi_power", "address", "address: 10.0.0.1"), ("ipmi_power", "state", 'state: "off"'),
        ("ipmi_power", "no_such_option", "no_such_option: 3"),
        ("kvm_heartbeat", "state", "kvm_heartbeat state=check watch=5"),
        ("kvm_heartbeat", "watch", "kvm_heartbeat state=check watch=5"),
        ("kvm_heartbeat", "detail", "detail=full"), ("kvm_heartbeat", "detail", "detail=everything_and_more"),
    ]


def test_an_option_a_module_does_not_have_is_found():
    unknown = [(m, o) for m, o, _where in named_options(SAMPLE) if o not in option_names(m)]
    assert unknown == [("ipmi_power", "no_such_option")]


def test_aliases_count_as_options():
    assert {"address", "bmc_address", "username", "user"} <= option_names("ipmi_power")
