#!/usr/bin/env bash
# Packaging: what users install and what an execution environment is built from, with no network.
#   1. `ansible-galaxy collection build` into a temporary directory; the tarball holds collection content only
#      (no lab, e2e or lab tests, benchmarks, molecule extensions, scripts, venv, caches) and everything it must;
#   2. the tarball installs into a clean collections path (throwaway ANSIBLE_HOME and ansible.cfg, so neither the
#      checkout nor a copy molecule or ansible-lint left behind can shadow it), `collection verify --offline`
#      agrees, `ansible-doc -l kvmha.cluster` lists every module, and every module, callback and role renders its
#      documentation from there without a warning; every playbook passes --syntax-check by its FQCN;
#   3. ansible-builder reads the installed collection's meta/execution-environment.yml (introspect) and
#      `ansible-builder create` on examples/execution-environment.yml writes a complete build context: Containerfile,
#      the pinned Python requirements, bindep with libvirt-devel for rpm, and the tarball itself.
# About 20 s. Writes only under a temporary directory, removed on exit.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
cd "$KVMHA_ROOT"

WORK=$(mktemp -d /tmp/kvmha-packaging.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "packaging: $*" >&2; exit 1; }
step() { printf '\033[1m[packaging]\033[0m %s\n' "$*"; }

version=$(python -c 'import yaml; print(yaml.safe_load(open("galaxy.yml"))["version"])')
tarball=$WORK/dist/kvmha-cluster-$version.tar.gz

# ------------------------------------------------------------------------------------------------ 1. build
step "build kvmha-cluster-$version.tar.gz"
ansible-galaxy collection build --output-path "$WORK/dist" . > "$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; fail "build failed"; }
[ -f "$tarball" ] || fail "no $tarball"

tar -tzf "$tarball" > "$WORK/members"
python - "$WORK/members" "$tarball" << 'EOF'
import os
import sys

members = [m.rstrip("/") for m in open(sys.argv[1]).read().split()]
# Never in the collection: the lab and what needs it, development tooling, caches, build output.
FORBIDDEN_DIRS = ("lab", "tests/e2e", "tests/lab", "tests/output", "benchmarks", "extensions", "scripts", ".venv",
                  ".cache", ".collections", ".ci", ".git", ".hypothesis", ".pytest_cache", ".ansible", "dist")
FORBIDDEN_FILES = ("Makefile", "pytest.ini", "ansible.cfg", "requirements.txt", "constraints.txt", ".gitignore",
                   "changelogs/.plugin-cache.yaml")
bad = [m for m in members
       if any(m == d or m.startswith(d + "/") for d in FORBIDDEN_DIRS) or m in FORBIDDEN_FILES
       or "/__pycache__" in "/" + m or m.endswith((".pyc", ".tar.gz", ".tmp"))]
if bad:
    sys.exit("packaging: the tarball holds what is not collection content:\n  " + "\n  ".join(sorted(bad)[:40]))
REQUIRED = ["MANIFEST.json", "FILES.json", "README.md", "CHANGELOG.rst", "bindep.txt", "meta/runtime.yml",
            "meta/execution-environment.yml", "meta/ee-requirements.txt", "plugins/callback/journal.py",
            "changelogs/changelog.yaml", "docs/OPERATIONS.md", "docs/AWX.md", "docs/SAFETY.md",
            "examples/execution-environment.yml", "examples/awx/watchdog.yml", "examples/prometheus/kvmha-alerts.yml"]
REQUIRED += ["playbooks/%s.yml" % p for p in ("watchdog", "deploy", "maintenance", "unfence", "fence_readiness", "confirm_off")]
for role in ("heartbeat_writer", "watchdog_service"):
    REQUIRED += ["roles/%s/meta/argument_specs.yml" % role, "roles/%s/tasks/main.yml" % role]
# The writer's build runs from the installed collection at each deploy (roles/heartbeat_writer/tasks/main.yml).
REQUIRED += ["roles/heartbeat_writer/build/build_pyz.py", "roles/heartbeat_writer/files/pyz_main.py"]
REQUIRED += ["plugins/modules/" + name for name in sorted(os.listdir("plugins/modules")) if name.endswith(".py")]
missing = [r for r in REQUIRED if r not in members]
if missing:
    sys.exit("packaging: missing from the tarball: " + ", ".join(missing))
print("packaging: %d members, %d KiB, collection content only" % (len(members), os.path.getsize(sys.argv[2]) // 1024))
EOF

# ------------------------------------------------------------------------------------------------ 2. install
step "install into a clean collections path"
export ANSIBLE_HOME=$WORK/ansible-home
export ANSIBLE_COLLECTIONS_PATH=$WORK/collections
export ANSIBLE_CONFIG=$WORK/ansible.cfg
export ANSIBLE_NOCOLOR=1
printf '[defaults]\ncollections_path = %s\n' "$ANSIBLE_COLLECTIONS_PATH" > "$ANSIBLE_CONFIG"
mkdir -p "$ANSIBLE_HOME" "$ANSIBLE_COLLECTIONS_PATH"
cd "$WORK"   # nothing of the checkout (ansible.cfg, .collections) is in sight from here
ansible-galaxy collection install "$tarball" -p "$ANSIBLE_COLLECTIONS_PATH" > install.log 2>&1 || { cat install.log; fail "install failed"; }
installed=$ANSIBLE_COLLECTIONS_PATH/ansible_collections/kvmha/cluster
if [ ! -f "$installed/MANIFEST.json" ] || [ -L "$installed" ]; then fail "not installed as a real directory at $installed"; fi
ansible-galaxy collection verify --offline kvmha.cluster > verify.log 2>&1 || { cat verify.log; fail "collection verify --offline failed"; }

# ansible-doc, from the installed copy only. Any warning is a failure (a plugin that does not load is a warning).
doc() {
    local out=$WORK/doc.out err=$WORK/doc.err
    ansible-doc "$@" > "$out" 2> "$err" || { cat "$err"; fail "ansible-doc $* failed"; }
    if grep -qi 'warning' "$err"; then cat "$err"; fail "ansible-doc $* warned"; fi
    cat "$out"
}
step "ansible-doc -l kvmha.cluster"
doc -l kvmha.cluster > modules.txt
mapfile -t modules < <(sed -n 's/^\(kvmha\.cluster\.[a-z_]*\) .*/\1/p' modules.txt | sort)
mapfile -t expected < <(find "$installed/plugins/modules" -maxdepth 1 -name '*.py' -printf 'kvmha.cluster.%f\n' | sed 's|\.py$||' | sort)
[ "${modules[*]}" = "${expected[*]}" ] || { cat modules.txt; fail "ansible-doc -l lists ${modules[*]} instead of ${expected[*]}"; }
mapfile -t callbacks < <(doc -t callback -l kvmha.cluster | sed -n 's/^\(kvmha\.cluster\.[a-z_]*\) .*/\1/p' | sort)
mapfile -t roles < <(doc -t role -l kvmha.cluster | sed -n 's/^\(kvmha\.cluster\.[a-z_]*\):$/\1/p' | sort)
[ "${callbacks[*]}" = "kvmha.cluster.journal" ] || fail "callbacks listed: '${callbacks[*]}'"
[ "${roles[*]}" = "kvmha.cluster.heartbeat_writer kvmha.cluster.watchdog_service" ] || fail "roles listed: '${roles[*]}'"
step "ansible-doc of $(( ${#modules[@]} + ${#callbacks[@]} + ${#roles[@]} )) plugins and roles"
# --json: one document per plugin, each with its doc (ansible-doc omits a plugin it cannot load).
doc --json -t module "${modules[@]}" > module-docs.json
doc --json -t callback "${callbacks[@]}" > callback-docs.json
doc --json -t role "${roles[@]}" > role-docs.json
python - module-docs.json callback-docs.json role-docs.json "${modules[@]}" "${callbacks[@]}" "${roles[@]}" << 'EOF'
import json
import sys

docs = {}
for path in sys.argv[1:4]:
    docs.update(json.load(open(path)))
names = sys.argv[4:]
empty = [n for n in names if not docs.get(n) or not (docs[n].get("doc") or docs[n].get("entry_points"))]
if empty:
    sys.exit("packaging: no documentation for " + ", ".join(empty))
print("packaging: documentation of %s" % ", ".join(n.split(".")[-1] for n in names))
EOF
# The text renderer too, as a user reads it (it fails on markup the JSON dump lets through).
doc -t module "${modules[@]}" > /dev/null
doc -t callback "${callbacks[@]}" > /dev/null
doc -t role "${roles[@]}" > /dev/null

step "playbooks of the installed collection: syntax check by FQCN"
mapfile -t playbooks < <(find "$installed/playbooks" -maxdepth 1 -name '*.yml' -printf 'kvmha.cluster.%f\n' | sed 's|\.yml$||' | sort)
ansible-playbook -i localhost, --syntax-check "${playbooks[@]}" > syntax.log 2>&1 || { cat syntax.log; fail "syntax check failed"; }

# ------------------------------------------------------------------------------------------------ 3. execution environment
step "ansible-builder introspect of the installed collection"
ansible-builder introspect --sanitize "$ANSIBLE_COLLECTIONS_PATH" > introspect.txt 2>&1 || { cat introspect.txt; fail "introspect failed"; }
for want in 'pyghmi==' 'libvirt-python==' 'jmespath==' 'libvirt-devel \[platform:rpm compile\]'; do
    grep -q "$want" introspect.txt || { cat introspect.txt; fail "introspection of the collection misses $want"; }
done

step "ansible-builder create on examples/execution-environment.yml"
mkdir -p ee
cp "$KVMHA_ROOT/examples/execution-environment.yml" ee/
ansible-builder create -f ee/execution-environment.yml -c ee/context --output-filename Containerfile > ee/create.log 2>&1 \
    || { cat ee/create.log; fail "ansible-builder create failed"; }
python - "$KVMHA_ROOT" "$version" << 'EOF'
import os
import re
import sys

import yaml

root, version = sys.argv[1], sys.argv[2]
ctx = "ee/context"
problems = []


def read(path):
    full = os.path.join(ctx, path)
    if not os.path.isfile(full):
        problems.append("no %s in the build context" % path)
        return ""
    with open(full, encoding="utf-8") as f:
        return f.read()


containerfile = read("Containerfile")
if 'ARG EE_BASE_IMAGE="registry.example.invalid/ee-minimal-rhel9:latest"' not in containerfile or "FROM $EE_BASE_IMAGE" not in containerfile:
    problems.append("the Containerfile does not start from the example's base image")
if "ansible-galaxy collection install" not in containerfile or "requirements.yml" not in containerfile:
    problems.append("the Containerfile does not install the collections of _build/requirements.yml")
pins = {line.strip() for line in read("_build/requirements.txt").splitlines() if line.strip() and not line.startswith("#")}
with open(os.path.join(root, "meta", "ee-requirements.txt"), encoding="utf-8") as f:
    collection_pins = {line.strip() for line in f if line.strip() and not line.startswith("#")}
with open(os.path.join(root, "requirements.txt"), encoding="utf-8") as f:
    tested_pins = {line.strip() for line in f if line.strip() and not line.startswith("#")}
for name in ("pyghmi", "libvirt-python", "jmespath"):
    if not any(p.startswith(name + "==") for p in pins):
        problems.append("_build/requirements.txt lacks %s" % name)
if collection_pins != pins:
    problems.append("the example pins %s, meta/ee-requirements.txt %s" % (sorted(pins), sorted(collection_pins)))
if not collection_pins <= tested_pins:
    problems.append("meta/ee-requirements.txt %s differs from the tested pins of requirements.txt" % sorted(collection_pins - tested_pins))
bindep = read("_build/bindep.txt")
if not re.search(r"^libvirt-devel \[platform:rpm[^\]]*\]", bindep, re.M):
    problems.append("_build/bindep.txt has no libvirt-devel for rpm")
galaxy = yaml.safe_load(read("_build/requirements.yml") or "{}") or {}
names = [c.get("name") for c in galaxy.get("collections", [])]
tarball = "collections/kvmha-cluster-%s.tar.gz" % version
if names != [tarball]:
    problems.append("_build/requirements.yml installs %s, expected %s (galaxy.yml version %s)" % (names, tarball, version))
if not os.path.isfile(os.path.join(ctx, "_build", tarball)):
    problems.append("the tarball was not copied to _build/%s" % tarball)
if problems:
    sys.exit("packaging: build context:\n  " + "\n  ".join(problems))
print("packaging: build context complete (Containerfile, %s, bindep, %s)" % (", ".join(sorted(pins)), tarball))
EOF
step "done"
