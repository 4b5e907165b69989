#!/usr/bin/env python
# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Mutation testing of the safety core with cosmic-ray (run through scripts/mutation.sh, `make mutation`).

For each target of tests/mutation/targets.ini: a cosmic-ray session over the target's file, mutants outside its
scope skipped, each remaining mutant run against the target's tests in a private copy of the checkout (the copy
is mutated, never the working tree others edit). Then a report per target and the gate:
  - no survivor in a ``strict`` function (interlocks, storm guard) unless proven equivalent;
  - every survivor listed in tests/mutation/equivalent.txt with the reason it cannot change behaviour;
  - at least ``min_score`` % of the scope's mutants killed.
Exit 0 when every target passes, 1 when one does not, 2 on a usage or setup error.
"""

from __future__ import annotations

import argparse
import ast
import configparser
import glob
import hashlib
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = os.path.join(ROOT, "tests", "mutation", "targets.ini")
EQUIVALENT = os.path.join(ROOT, "tests", "mutation", "equivalent.txt")
# The pytest run for one mutant: file order (a mutant's fate must not depend on the shuffle), one process. The
# example tests first, then the hypothesis ones (marked by hypothesis itself): most mutants die in the first second.
# pytest's 5 (nothing collected in a phase) is a pass.
PYTEST = "-m pytest -x -q -p no:randomly -p no:xdist -p no:cacheprovider"
SHARD = "another job's share"  # the output that marks a mutant left to another job
PHASE = "{python} %s -m '{marks}' {tests}; rc=$?; [ $rc -eq 0 ] || [ $rc -eq 5 ]" % PYTEST


def load_targets(names, quick: bool) -> list:
    parser = configparser.ConfigParser()
    parser.read(TARGETS, encoding="utf-8")
    unknown = sorted(set(names) - set(parser.sections()))
    if unknown:
        raise SystemExit("mutation: no target named %s in %s" % (", ".join(unknown), TARGETS))
    targets = []
    for name in names or parser.sections():
        section = parser[name]
        target = {
            "name": name,
            "section": name,  # equivalent.txt names the section, whichever run (full or quick) met the mutant
            "file": section["file"],
            "scope": section.get("scope", "").split(),
            "strict": section.get("strict", "").split(),
            "tests": section["tests"].split(),
            "min_score": float(section["min_score"]),
            "timeout": float(section["timeout"]),
        }
        if quick:  # only the strict functions: the interlocks and the storm guard, a shorter run
            if not target["strict"]:
                continue
            target["scope"] = target["strict"]
            target["name"] += "-quick"  # its own session and log: a quick run never overwrites a full one
        targets.append(target)
    return targets


# ----------------------------------------------------------------------------------------- where a line belongs


def definitions(path: str) -> dict:
    """{dotted name: (first line, last line)} of the file's functions, classes, methods and top-level assignments."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    spans = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                spans[name] = (first, child.end_lineno)
                visit(child, name + ".")
            elif not prefix and isinstance(child, (ast.Assign, ast.AnnAssign)):
                targets = child.targets if isinstance(child, ast.Assign) else [child.target]
                for target in targets:
                    for node_name in ast.walk(target):
                        if isinstance(node_name, ast.Name):
                            spans[node_name.id] = (child.lineno, child.end_lineno)

    visit(tree, "")
    return spans


def owner(spans: dict, line: int) -> str:
    """The innermost definition containing ``line`` (module level: ``<module>``)."""
    inside = [(last - first, name) for name, (first, last) in spans.items() if first <= line <= last]
    return min(inside)[1] if inside else "<module>"


def in_scope(name: str, scope: list) -> bool:
    return not scope or any(name == s or name.startswith(s + ".") for s in scope)


def line_ranges(spans: dict, scope: list) -> list:
    missing = [name for name in scope if name not in spans]
    if missing:
        raise SystemExit("mutation: scope names %s not defined in the file" % ", ".join(missing))
    return ["%d-%d" % spans[name] for name in scope]


# ----------------------------------------------------------------------------------------- equivalent mutants


def load_equivalents() -> dict:
    """{(target, definition, operator, column, source line): reason} from tests/mutation/equivalent.txt."""
    known = {}
    with open(EQUIVALENT, encoding="utf-8") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            fields = [part.strip() for part in raw.rstrip("\n").split(" | ")]
            if len(fields) != 6 or not fields[5]:
                raise SystemExit("mutation: %s:%d: want 'target | definition | operator | column | line | why'"
                                 % (EQUIVALENT, number))
            target, definition, operator, column, line, why = fields
            known[(target, definition, operator, int(column), line)] = why
    return known


# ----------------------------------------------------------------------------------------- one target


def cosmic_config(target: dict, work: str, tree: str, spans: dict) -> str:
    tests = " ".join(shlex.quote(t) for t in target["tests"])
    phases = [PHASE.format(python=shlex.quote(sys.executable), marks=marks, tests=tests)
              for marks in ("not hypothesis", "hypothesis")]
    command = "sh -c %s" % shlex.quote(" && ".join("{ %s; }" % phase for phase in phases))
    lines = [
        "[cosmic-ray]",
        "module-path = %s" % json.dumps(target["file"]),
        "timeout = %s" % target["timeout"],
        "excluded-modules = []",
        "test-command = %s" % json.dumps(command),
        "",
        "[cosmic-ray.distributor]",
        'name = "local"',
    ]
    if target["scope"]:
        ranges = ", ".join(json.dumps(r) for r in line_ranges(spans, target["scope"]))
        lines += ["", "[cosmic-ray.filters.line-filter]", "lines = { %s = [%s] }" % (json.dumps(target["file"]), ranges)]
    path = os.path.join(work, target["name"] + ".toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def start(command: list, cwd: str, log, tree: str):
    """A cosmic-ray command in ``tree``: the tests it runs import that copy (and ansible finds it there)."""
    log.write("$ %s\n" % " ".join(command))
    log.flush()
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(tree, ".collections"), KVMHA_ROOT=tree)
    return subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)


def run(command: list, cwd: str, log, tree: str) -> None:
    returncode = start(command, cwd, log, tree).wait()
    if returncode != 0:
        raise SystemExit("mutation: %s failed (rc=%d), see %s" % (command[0], returncode, log.name))


def fingerprint(target: dict, tree: str) -> dict:
    """What a session's results depend on: the mutated file ("code": the whole file, as cosmic-ray numbers each
    operator's occurrences across it) and the tests run ("tests")."""
    def digest(paths, extra):
        sha = hashlib.sha256(json.dumps(extra).encode())
        for path in paths:
            with open(os.path.join(tree, path), "rb") as f:
                sha.update(f.read())
        return sha.hexdigest()
    return {"code": digest([target["file"]], target["scope"]), "tests": digest(target["tests"], target["tests"])}


def reuse(session: str, target: dict, tree: str, mode: str) -> bool:
    """Whether the last session can go on. ``resume``: same code and tests, only the mutants not run yet.
    ``survivors``: same code, only the mutants that survived are run again (tests were added: a killed mutant
    stays killed; a test that was weakened needs a full run)."""
    stamp = session + ".fingerprint"
    if mode == "fresh" or not os.path.exists(stamp) or not os.path.exists(session):
        return False
    with open(stamp, encoding="utf-8") as f:
        previous = json.load(f)
    now = fingerprint(target, tree)
    if previous["code"] != now["code"] or (mode == "resume" and previous["tests"] != now["tests"]):
        print("mutation: %s: the code or tests changed since the last session: starting afresh" % target["name"])
        return False
    leftovers = sorted(glob.glob(session + ".shard*"))
    if leftovers:  # the shares of an interrupted run with several jobs
        gather(session, leftovers)
    if mode == "survivors":
        with sqlite3.connect(session) as db:  # cosmic-ray 8.7's schema: results are rows of work_results
            db.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED'")
    return True


def make_tree(source: str, work: str, name: str) -> str:
    """The target's own copy of the code, laid out so that the tests import it (and ansible finds it)."""
    tree = os.path.join(work, name + ".tree")
    shutil.rmtree(tree, ignore_errors=True)
    shutil.copytree(source, tree, symlinks=True, ignore=shutil.ignore_patterns(".collections"))
    os.makedirs(os.path.join(tree, ".collections", "ansible_collections", "kvmha"))
    os.symlink("../../..", os.path.join(tree, ".collections", "ansible_collections", "kvmha", "cluster"))
    return tree


def shard(session: str, jobs: int) -> list:
    """Split the session's pending mutants over ``jobs`` copies of it (each skips the others' share)."""
    from cosmic_ray.work_db import WorkDB, use_db  # pylint: disable=import-outside-toplevel
    from cosmic_ray.work_item import WorkerOutcome, WorkResult  # pylint: disable=import-outside-toplevel

    shards = []
    for index in range(jobs):
        path = "%s.shard%d" % (session, index)
        shutil.copyfile(session, path)
        with use_db(path, WorkDB.Mode.open) as db:
            # cosmic-ray lists pending items in random order: sort them, or the shares would overlap and leave gaps.
            pending = sorted(item.job_id for item in db.pending_work_items)
            others = [job_id for n, job_id in enumerate(pending) if n % jobs != index]
            if others:
                db.set_multiple_results(others, WorkResult(output=SHARD, worker_outcome=WorkerOutcome.SKIPPED))
        shards.append(path)
    return shards


def gather(session: str, shards: list) -> None:
    """Copy the shards' results back into the session, then drop the shards."""
    from cosmic_ray.work_db import WorkDB, use_db  # pylint: disable=import-outside-toplevel

    with use_db(session, WorkDB.Mode.open) as db:
        for path in shards:
            with use_db(path, WorkDB.Mode.open) as part:
                for item, result in part.completed_work_items:
                    if result.output != SHARD:
                        db.set_result(item.job_id, result)
            os.unlink(path)


def execute(target: dict, work: str, tree: str, mode: str, jobs: int) -> list:
    """Run the target's session in the copy (``jobs`` copies side by side); return the (work item, result) pairs."""
    spans = definitions(os.path.join(tree, target["file"]))
    config = cosmic_config(target, work, tree, spans)
    session = os.path.join(work, target["name"] + ".sqlite")
    bindir = os.path.dirname(sys.executable)
    with open(os.path.join(work, target["name"] + ".log"), "a", encoding="utf-8") as log:
        # The tests must pass on the unmutated code, or every mutant would look killed.
        run([os.path.join(bindir, "cosmic-ray"), "baseline", config], tree, log, tree)
        if not reuse(session, target, tree, mode):
            run([os.path.join(bindir, "cosmic-ray"), "init", "--force", config, session], tree, log, tree)
            if target["scope"]:
                run([os.path.join(bindir, "cr-filter-lines"), "--config", config, session], tree, log, tree)
        with open(session + ".fingerprint", "w", encoding="utf-8") as f:
            json.dump(fingerprint(target, tree), f)
        shards = shard(session, jobs)
        trees = [tree] + [make_tree(tree, work, "%s.%d" % (target["name"], n)) for n in range(1, jobs)]
        workers = [start([os.path.join(bindir, "cosmic-ray"), "exec", config, part], where, log, where)
                   for part, where in zip(shards, trees)]
        failed = [w.args[0] for w in workers if w.wait() != 0]
        gather(session, shards)
        if failed:
            raise SystemExit("mutation: cosmic-ray exec failed, see %s" % log.name)
    dump = subprocess.run([os.path.join(bindir, "cosmic-ray"), "dump", session], cwd=tree, capture_output=True,
                          text=True, check=True).stdout
    return [json.loads(line) for line in dump.splitlines() if line.strip()]


def classify(target: dict, pairs: list, source: list, spans: dict, equivalents: dict) -> dict:
    """Count the outcomes of the mutants in scope and list the survivors with their diffs."""
    report = {"name": target["name"], "file": target["file"], "total": 0, "killed": 0, "survived": [],
              "equivalent": [], "pending": 0, "strict_total": 0, "strict_killed": 0}
    for item, result in pairs:
        mutation = item["mutations"][0]
        line, column = mutation["start_pos"]
        definition = owner(spans, line)
        if not in_scope(definition, target["scope"]):
            continue
        report["total"] += 1
        strict = any(definition == s or definition.startswith(s + ".") for s in target["strict"])
        report["strict_total"] += strict
        if result is None or result["worker_outcome"] == "skipped":  # not run (yet): never counted as killed
            report["pending"] += 1
            continue
        if result["test_outcome"] != "survived":
            report["killed"] += 1  # killed, timed out or incompetent (the mutant does not even import)
            report["strict_killed"] += strict
            continue
        text = source[line - 1].strip()
        key = (target["section"], definition, mutation["operator_name"], column, text)
        entry = {"definition": definition, "line": line, "column": column, "operator": mutation["operator_name"],
                 "source": text, "diff": result.get("diff") or "", "strict": strict}
        if key in equivalents:
            entry["why"] = equivalents[key]
            report["equivalent"].append(entry)
        else:
            report["survived"].append(entry)
    report["score"] = 100.0 * report["killed"] / report["total"] if report["total"] else 100.0
    return report


def verdict(report: dict, target: dict) -> list:
    problems = []
    if report["total"] == 0:
        problems.append("no mutant in scope: the scope or the file is wrong")
    if report["pending"]:
        problems.append("%d mutant(s) not run" % report["pending"])
    strict = [s for s in report["survived"] if s["strict"]]
    if strict:
        problems.append("%d survivor(s) in strict functions" % len(strict))
    if len(report["survived"]) > len(strict):
        problems.append("%d survivor(s) neither killed nor explained" % (len(report["survived"]) - len(strict)))
    if report["score"] < target["min_score"]:
        problems.append("score %.1f %% below %.0f %%" % (report["score"], target["min_score"]))
    return problems


def render(reports: list, took: float) -> str:
    out = ["# Mutation testing report (cosmic-ray)", "", "Run took %.0f s." % took, "",
           "| target | file | mutants | killed | equivalent | survived | score | strict: mutants, killed, equivalent |",
           "|---|---|---|---|---|---|---|---|"]
    for r in reports:
        strict_equivalent = sum(1 for e in r["equivalent"] if e["strict"])
        out.append("| %s | %s | %d | %d | %d | %d | %.1f %% | %d, %d, %d |" % (
            r["name"], r["file"], r["total"], r["killed"], len(r["equivalent"]), len(r["survived"]), r["score"],
            r["strict_total"], r["strict_killed"], strict_equivalent))
    for r in reports:
        for title, entries in (("Survivors", r["survived"]), ("Equivalent (explained)", r["equivalent"])):
            if not entries:
                continue
            out += ["", "## %s: %s" % (r["name"], title)]
            for s in entries:
                out += ["", "- `%s` line %d col %d, %s%s: `%s`" % (s["definition"], s["line"], s["column"], s["operator"],
                                                                   " (strict)" if s["strict"] else "", s["source"])]
                if s.get("why"):
                    out.append("  why equivalent: %s" % s["why"])
                out += ["", "```diff", s["diff"].strip(), "```"]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("targets", nargs="*", help="target names of tests/mutation/targets.ini (default: all)")
    parser.add_argument("--quick", action="store_true", help="only the strict functions of each target")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", dest="mode", action="store_const", const="resume",
                      help="continue an interrupted run (same code and tests): only the mutants not run yet")
    mode.add_argument("--survivors", dest="mode", action="store_const", const="survivors",
                      help="after adding tests, run only the last run's survivors again (same code)")
    parser.set_defaults(mode="fresh")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run side by side (each in its own copy)")
    parser.add_argument("--source", required=True, help="a private copy of the code (never the working tree)")
    parser.add_argument("--work", required=True, help="where sessions, logs and the report go")
    args = parser.parse_args(argv)
    targets = load_targets(args.targets, args.quick)
    equivalents = load_equivalents()
    os.environ["KVMHA_HYPOTHESIS_PROFILE"] = "kvmha-mutation"
    start = time.monotonic()
    reports, failed = [], False
    for target in targets:
        print("mutation: %s (%s, scope: %s)" % (target["name"], target["file"], " ".join(target["scope"]) or "all"),
              flush=True)
        tree = make_tree(args.source, args.work, target["name"])
        try:
            pairs = execute(target, args.work, tree, args.mode, args.jobs)
        except SystemExit as err:  # one target's broken baseline does not hide the others' results
            print(err, flush=True)
            failed = True
            continue
        path = os.path.join(tree, target["file"])
        with open(path, encoding="utf-8") as f:
            source = f.read().splitlines()
        report = classify(target, pairs, source, definitions(path), equivalents)
        reports.append(report)
        problems = verdict(report, target)
        failed = failed or bool(problems)
        print("mutation: %s: %d mutants, %d killed, %d equivalent, %d survived, score %.1f %%%s" % (
            target["name"], report["total"], report["killed"], len(report["equivalent"]), len(report["survived"]),
            report["score"], ("; FAIL: " + "; ".join(problems)) if problems else ""), flush=True)
    text = render(reports, time.monotonic() - start)
    for name, content in (("report.md", text), ("report.json", json.dumps(reports, indent=1))):
        with open(os.path.join(args.work, name), "w", encoding="utf-8") as f:
            f.write(content)
    print("mutation: report in %s" % os.path.join(args.work, "report.md"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
