"""Status end to end (issue 16) on the lab: kvmha.cluster.status on a healthy cluster and on one whose host crashed
and was fenced and recovered by the watchdog - read from the lab's real store and the watchdog's own journal."""

import json
import os
import subprocess

from cluster import REPO

ANSIBLE_PLAYBOOK = os.path.join(REPO, ".venv", "bin", "ansible-playbook")


def status(cluster, tmp_path, journal_dir, fmt="text"):
    """Run the status playbook as an operator would; returns (process, the JSON document it wrote)."""
    dest = tmp_path / ("status-%s.json" % fmt)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), KVMHA_JOURNAL_DIR=str(journal_dir))
    env.pop("KVMHA_METRICS_FILE", None)
    cmd = [ANSIBLE_PLAYBOOK, "-i", cluster.lab.inventory_path(), os.path.join(REPO, "playbooks", "status.yml"),
           "-e", json.dumps({"kvmha_status_format": fmt, "kvmha_status_dest": str(dest)})]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False)
    proc.output = proc.stdout + proc.stderr
    document = json.loads(dest.read_text()) if dest.exists() else None
    return proc, document


def ha_homes(cluster):
    """{guest: home host} of the lab's HA guests."""
    return {name: guest["host"] for name, guest in cluster.lab.status()["guests"].items() if guest.get("ha", True)}


def lab_cluster_of(document):
    (lab,) = [c for c in document["clusters"] if c.get("cluster") == "lab"]
    return lab


def test_status_of_a_healthy_cluster(cluster, tmp_path):
    """Every host alive with its capacity, every HA guest running on its home host, no lease held."""
    proc, document = status(cluster, tmp_path, tmp_path / "journal")
    assert proc.returncode == 0, proc.output[-6000:]
    lab = lab_cluster_of(document)
    assert {r["host"]: r["state"] for r in lab["hosts"]} == {h: "alive" for h in cluster.hosts}, proc.output[-6000:]
    assert all(r["capacity"] is not None and r["error"] == "" for r in lab["hosts"])
    running = {vm["name"]: vm["host"] for vm in lab["vms"] if vm["state"] == "running"}
    assert running == ha_homes(cluster), lab["vms"]
    assert lab["summary"]["vms_not_running"] == 0 and lab["warning"] == ""
    assert "cluster lab: %d hosts - %d alive" % (len(cluster.hosts), len(cluster.hosts)) in proc.output


def test_status_after_a_host_crashed_and_was_recovered(cluster, tmp_path):
    """h2 crashes; the watchdog fences it and restarts its guests. Status then shows h2 fenced since that run, by that
    run, with the verdict and rule of its incident record from the watchdog's journal, and h2's guests running
    elsewhere; the other hosts alive."""
    homes = ha_homes(cluster)
    run = cluster.during_watch(lambda: cluster.lab.power("h2", "crash"), watch_s=40)
    assert run.rc == 0 and run.fenced() == {"h2"}, run.explain()
    verdict = run.incidents["h2"]["verdict"]

    proc, document = status(cluster, tmp_path, run.journal_dir)
    assert proc.returncode == 0, proc.output[-6000:]
    rows = {r["host"]: r for r in lab_cluster_of(document)["hosts"]}
    assert rows["h2"]["state"] == "fenced" and rows["h2"]["state_text"].startswith("fenced since "), rows["h2"]
    assert rows["h2"]["fenced"]["owner"].startswith("watchdog/"), rows["h2"]
    assert rows["h2"]["last_verdict"]["verdict"] == verdict and rows["h2"]["last_verdict"]["rule"], rows["h2"]
    assert rows["h2"]["heartbeat"] in ("stale", "missing") and rows["h2"]["capacity"] is None, rows["h2"]
    assert all(rows[h]["state"] == "alive" for h in cluster.hosts if h != "h2"), rows
    vms = {vm["name"]: vm for vm in lab_cluster_of(document)["vms"]}
    for guest in (g for g, home in homes.items() if home == "h2"):
        assert vms[guest]["state"] == "running" and vms[guest]["host"] != "h2", vms[guest]
    assert "fenced since" in proc.output and "%s %s" % (verdict, rows["h2"]["last_verdict"]["rule"]) in proc.output

    as_json, _document = status(cluster, tmp_path, run.journal_dir, fmt="json")
    assert as_json.returncode == 0 and '"clusters"' in as_json.output and "HOST  HEARTBEAT" not in as_json.output
