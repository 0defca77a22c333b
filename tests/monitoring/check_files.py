"""tests/monitoring/check_files.py — the data files of monitoring/ and deploy/ parse and hang together.

Usage: check_files.py <repository root>. Exits non-zero with the reason on the first problem.
- monitoring/grafana/tessera.json is JSON; every panel has a query, and every tessera_* family it queries
  is one that monitoring/metrics.cpp defines (so a renamed family cannot leave a dead panel).
- monitoring/prometheus/*.yml and deploy/**/*.yaml are YAML; the rules have the alerts the docs promise.
- docs/metrics.md documents every family that metrics.cpp defines.
"""
import json
import pathlib
import re
import sys

import yaml

root = pathlib.Path(sys.argv[1])
src = (root / "monitoring/metrics.cpp").read_text()
families = set(re.findall(r'"(tessera_[a-z0-9_]+)"', src))
assert len(families) >= 20, f"too few families found in metrics.cpp: {sorted(families)}"


def base_family(name):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in families:
            return name[: -len(suffix)]
    return name


dash = json.loads((root / "monitoring/grafana/tessera.json").read_text())
assert dash["panels"], "the dashboard has no panels"
used = set()
for panel in dash["panels"]:
    assert panel.get("targets"), f"panel {panel.get('title')} has no query"
    for t in panel["targets"]:
        for name in re.findall(r"\b(tessera_[a-z0-9_]+)", t["expr"]):
            fam = base_family(name)
            assert fam in families, f"panel '{panel['title']}' queries unknown metric {name}"
            used.add(fam)
for must in ("tessera_time_to_first_token_seconds", "tessera_inter_token_latency_seconds",
             "tessera_e2e_request_latency_seconds", "tessera_prefill_padding_tokens", "tessera_rank_step_seconds",
             "tessera_allreduce_seconds", "tessera_kv_cache_usage_perc", "tessera_num_requests_waiting"):
    assert must in used, f"the dashboard does not show {must}"

rules = yaml.safe_load((root / "monitoring/prometheus/rules.yml").read_text())
alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
for must in ("TesseraNotReady", "TesseraHighQueueTime"):
    assert must in alerts, f"rules.yml lacks {must}"
for g in rules["groups"]:
    for r in g["rules"]:
        for name in re.findall(r"\b(tessera_[a-z0-9_]+)", r["expr"]):
            assert base_family(name) in families, f"rule {r.get('alert') or r.get('record')} uses unknown {name}"
yaml.safe_load((root / "monitoring/prometheus/prometheus.yml").read_text())

manifests = sorted((root / "deploy").rglob("*.yaml"))
assert manifests, "no manifests under deploy/"
kinds = []
for path in manifests:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and "kind" in doc:
            kinds.append(doc["kind"])
for must in ("MPIJob", "LeaderWorkerSet"):
    assert must in kinds, f"deploy/kubernetes lacks a {must}"
k8s = "\n".join(p.read_text() for p in (root / "deploy/kubernetes").glob("*.yaml"))
for must in ("path: /ready", "path: /health", "prometheus.io/scrape"):
    assert must in k8s, f"the Kubernetes manifests lack '{must}'"

doc = (root / "docs/metrics.md").read_text()
missing = sorted(f for f in families if f"`{f}`" not in doc)
assert not missing, f"docs/metrics.md does not document {missing}"
print(f"ok: {len(families)} families, {len(dash['panels'])} panels, {len(alerts)} alerts, {len(manifests)} manifests")
