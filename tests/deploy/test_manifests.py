"""tests/deploy/test_manifests.py — deploy/kubernetes/ against the controllers that run it, the binary it starts
and the Prometheus rules that watch it.

There is no Kubernetes cluster here, so nothing is applied. Instead:
- every pod template, Service, ConfigMap and PVC deserializes into the official client's models with no field
  lost (a misspelt key would be), and the MPIJob / LeaderWorkerSet fields are the ones their controllers define;
- what the controllers add is recomputed from their rules (kubeflow/mpi-operator pkg/controller/
  mpi_job_controller.go, kubernetes-sigs/lws pkg/controllers/ and pkg/utils/pod/pod_utils.go): pod names, host
  names, labels, the hostfile, the environment, the names of the objects they own;
- the rank-0 container's shell script runs for real with stand-ins for mpirun, hostname and the sshd check, fed
  what the controller would give it: the hosts it waits for and hands to mpirun must be the worker pods' DNS names,
  and the `tessera serve` command it builds must pass `tessera serve --print-config` of the binary under test
  with the manifest's own cluster.yaml (so every flag, every key and every value exists and is valid);
- SIGTERM to that script reaches rank 0 at once; the workers' preStop hook waits for a `tessera` process;
- grace periods, the Open MPI kill timeout and drain_timeout_s fit together; probe and scrape paths are routes the
  server answers (a real `tessera serve`, when TESSERA_DEFAULT_MODEL is set);
- `promtool check rules` and `promtool test rules` (monitoring/prometheus/rules_test.yml), and the alerts select
  on labels that both a PodMonitor and annotation-based scraping give the rank-0 pods.

Environment (set by ctest): TESSERA_BIN (required), TESSERA_DEFAULT_MODEL (optional), PROMTOOL (optional; else
promtool on PATH, else those tests skip).
"""
import copy
import os
import pathlib
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time

import pytest
import requests
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy/kubernetes"
BIN = os.environ.get("TESSERA_BIN", "")
SMOL = os.environ.get("TESSERA_DEFAULT_MODEL", "")
PROMTOOL = os.environ.get("PROMTOOL") or shutil.which("promtool") or ""

# --- what the controllers do ----------------------------------------------------------------------------------
# kubeflow/mpi-operator v2 (v0.8), pkg/controller/mpi_job_controller.go and pkg/apis/kubeflow/v2beta1/.
MPI_CONFIG_MOUNT = "/etc/mpi"  # configMountPath; the hostfile is hostfileName = "hostfile" in it


def mpi_worker_name(job, i):  # workerName()
    return f"{job}-worker-{i}"


def mpi_hostfile(job, namespace, workers, slots, cluster_domain=""):
    """newConfigMap(): one '<worker>.<job>.<namespace>.svc[.<clusterDomain>] slots=N' line per worker (OpenMPI)."""
    domain = f".{cluster_domain}" if cluster_domain else ""
    return "".join(f"{mpi_worker_name(job, i)}.{job}.{namespace}.svc{domain} slots={slots}\n" for i in range(workers))


def mpi_default_labels(job, role):  # defaultLabels()
    return {"training.kubeflow.org/operator-name": "mpi-operator", "training.kubeflow.org/job-name": job,
            "training.kubeflow.org/job-role": role}


def mpi_owned_names(job, workers):
    """What the operator creates per MPIJob: the headless Service (newJobService: named after the job), the
    ConfigMap (configSuffix), the ssh Secret (sshAuthSecretSuffix), the launcher Job (launcherSuffix), the worker
    pods. getOrCreate* fail the whole sync when one of these exists and is not the job's own."""
    names = {("Service", job), ("ConfigMap", f"{job}-config"), ("Secret", f"{job}-ssh"), ("Job", f"{job}-launcher")}
    return names | {("Pod", mpi_worker_name(job, i)) for i in range(workers)}


def mpi_launcher_env(slots):  # launcherEnvVars, ompiEnvVars, the slots variable (newLauncherPodTemplate)
    return {"K_MPI_JOB_ROLE": "launcher", "OMPI_MCA_orte_keep_fqdn_hostnames": "true",
            "OMPI_MCA_orte_default_hostfile": f"{MPI_CONFIG_MOUNT}/hostfile",
            "OMPI_MCA_plm_rsh_args": "-o ConnectionAttempts=10", "OMPI_MCA_orte_set_default_slots": str(slots),
            "NVIDIA_VISIBLE_DEVICES": "", "NVIDIA_DRIVER_CAPABILITIES": ""}


# kubernetes-sigs/lws: api/leaderworkerset/v1/leaderworkerset_types.go (label keys), pkg/controllers/
# leaderworkerset_controller.go (leader StatefulSet named after the set, template labels worker-index 0),
# pkg/controllers/pod_controller.go (a worker StatefulSet per leader, named after the leader pod, ordinals from 1),
# pkg/webhooks/pod_webhook.go + pkg/utils/pod/pod_utils.go (group/worker index labels, LWS_* variables).
LWS = "leaderworkerset.sigs.k8s.io/"


def lws_leader_name(lws, group):  # pod <ordinal> of the leader StatefulSet <lws>
    return f"{lws}-{group}"


def lws_worker_name(lws, group, i):  # pod <i> (1 .. size-1) of the worker StatefulSet <lws>-<group>
    return f"{lws_leader_name(lws, group)}-{i}"


def lws_subdomain(lws, group, policy="Shared"):  # the headless Service: shared, or one per replica
    return lws if policy == "Shared" else lws_leader_name(lws, group)


def lws_env(lws, group, namespace, size, worker_index, policy="Shared"):  # AddLWSVariables()
    return {"LWS_LEADER_ADDRESS": f"{lws}-{group}.{lws_subdomain(lws, group, policy)}.{namespace}",
            "LWS_GROUP_SIZE": str(size), "LWS_WORKER_INDEX": str(worker_index)}


def lws_leader_labels(lws, group):
    return {LWS + "name": lws, LWS + "worker-index": "0", LWS + "group-index": str(group),
            LWS + "group-key": "0123abcd", LWS + "template-revision-hash": "5d4c3b2a"}


def lws_worker_labels(lws, group, i):
    return {LWS + "name": lws, LWS + "worker-index": str(i), LWS + "group-index": str(group),
            LWS + "group-key": "0123abcd", LWS + "template-revision-hash": "5d4c3b2a"}


def lws_owned_names(lws, replicas):
    """The headless Service (CreateHeadlessServiceIfNotExists: named after the set, or after each leader with
    UniquePerReplica; an existing Service of that name is silently kept, and then the pods' DNS names do not
    resolve), the leader StatefulSet, one worker StatefulSet per group, the pods."""
    names = {("Service", lws), ("StatefulSet", lws)}
    for g in range(replicas):
        names |= {("Service", lws_leader_name(lws, g)), ("StatefulSet", lws_leader_name(lws, g)),
                  ("Pod", lws_leader_name(lws, g))}
    return names


# --- the manifests ----------------------------------------------------------------------------------------------
def load(name):
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def one(docs, kind):
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


MPI_DOCS = load("mpijob.yaml")
LWS_DOCS = load("leaderworkerset.yaml")
PODMONITOR = one(load("podmonitor.yaml"), "PodMonitor")
MPIJOB = one(MPI_DOCS, "MPIJob")
LWSET = one(LWS_DOCS, "LeaderWorkerSet")
JOB = MPIJOB["metadata"]["name"]
N_WORKERS = MPIJOB["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"]
SLOTS = MPIJOB["spec"].get("slotsPerWorker", 1)
LWS_NAME = LWSET["metadata"]["name"]
LWS_SIZE = LWSET["spec"]["leaderWorkerTemplate"]["size"]
LWS_REPLICAS = LWSET["spec"].get("replicas", 1)
LWS_POLICY = (LWSET["spec"].get("networkConfig") or {}).get("subdomainPolicy", "Shared")


class Pod:
    """One pod template with the labels its pods end up with (the template's plus the controller's)."""

    def __init__(self, file, role, template, labels, docs):
        self.file, self.role, self.template, self.labels, self.docs = file, role, template, labels, docs
        self.spec = template["spec"]
        self.main = self.spec["containers"][0]  # the container the controllers treat as the main one

    def __repr__(self):
        return f"{self.file}:{self.role}"


def template_labels(template):
    return dict(template.get("metadata", {}).get("labels", {}))


def pods():
    """Every pod the two manifests make (two LeaderWorkerSet groups even where replicas is 1)."""
    mpi = MPIJOB["spec"]["mpiReplicaSpecs"]
    launcher, worker = mpi["Launcher"]["template"], mpi["Worker"]["template"]
    lwt = LWSET["spec"]["leaderWorkerTemplate"]
    leader, lworker = lwt.get("leaderTemplate") or lwt["workerTemplate"], lwt["workerTemplate"]
    meta = template_labels
    return [
        Pod("mpijob.yaml", "rank0", launcher, meta(launcher) | mpi_default_labels(JOB, "launcher"), MPI_DOCS),
        *[Pod("mpijob.yaml", "worker", worker,
              meta(worker) | mpi_default_labels(JOB, "worker") | {"training.kubeflow.org/replica-index": str(i)},
              MPI_DOCS) for i in range(N_WORKERS)],
        *[Pod("leaderworkerset.yaml", "rank0", leader, meta(leader) | lws_leader_labels(LWS_NAME, g), LWS_DOCS)
          for g in range(max(LWS_REPLICAS, 2))],
        *[Pod("leaderworkerset.yaml", "worker", lworker, meta(lworker) | lws_worker_labels(LWS_NAME, g, i), LWS_DOCS)
          for g in range(max(LWS_REPLICAS, 2)) for i in range(1, LWS_SIZE)],
    ]


PODS = pods()
TEMPLATES = {}  # one Pod per distinct template, for the per-template checks
for _p in PODS:
    TEMPLATES.setdefault(id(_p.template), _p)
TEMPLATES = list(TEMPLATES.values())
RANK0 = [p for p in TEMPLATES if p.role == "rank0"]
WORKERS = [p for p in TEMPLATES if p.role == "worker"]


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def selected(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def cluster_yaml(docs, pod):
    """The ConfigMap behind the rank-0 pod's /etc/tessera mount, and its cluster.yaml."""
    vols = {v["name"]: v for v in pod.spec["volumes"]}
    mount = next(m for m in pod.main["volumeMounts"] if "configMap" in vols[m["name"]])
    cm_name = vols[mount["name"]]["configMap"]["name"]
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == cm_name)
    return mount["mountPath"], cm["data"]["cluster.yaml"]


@pytest.fixture(scope="session")
def tessera_bin():
    if not BIN:
        pytest.fail("TESSERA_BIN is not set: ctest sets it to the tessera binary under test")
    return BIN


@pytest.fixture(scope="session")
def k8s_client():
    try:
        from kubernetes.client import ApiClient
    except ImportError:
        pytest.fail("the kubernetes package is missing from this python: pip install -r tests/python/requirements.txt "
                    "(scripts/setup-python.sh)")
    return ApiClient()


def print_config(tessera_bin, tmp_path, text, args=()):
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(text)
    r = subprocess.run([tessera_bin, "serve", "--config", str(cfg), *args, "--print-config"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, f"tessera serve --print-config refused it: {r.stderr.strip()}"
    return yaml.safe_load(r.stdout)


# --- the objects deserialize, with nothing lost -------------------------------------------------------------------
def lost_fields(original, roundtrip, path=""):
    """Keys of `original` that a model round trip dropped or changed (unknown or misspelt fields, wrong types)."""
    if isinstance(original, dict):
        if not isinstance(roundtrip, dict):
            return [f"{path}: {original!r} became {roundtrip!r}"]
        out = []
        for k, v in original.items():
            if k not in roundtrip:
                out.append(f"{path}.{k}: not a field of the model")
            else:
                out += lost_fields(v, roundtrip[k], f"{path}.{k}")
        return out
    if isinstance(original, list):
        if not isinstance(roundtrip, list) or len(original) != len(roundtrip):
            return [f"{path}: {original!r} became {roundtrip!r}"]
        return [x for i, (a, b) in enumerate(zip(original, roundtrip)) for x in lost_fields(a, b, f"{path}[{i}]")]
    return [] if original == roundtrip else [f"{path}: {original!r} became {roundtrip!r}"]


def roundtrip(client, data, model):
    obj = client._ApiClient__deserialize(copy.deepcopy(data), model)
    return client.sanitize_for_serialization(obj)


@pytest.mark.parametrize("pod", TEMPLATES, ids=repr)
def test_pod_template_deserializes_with_nothing_lost(k8s_client, pod):
    lost = lost_fields(pod.template, roundtrip(k8s_client, pod.template, "V1PodTemplateSpec"))
    assert not lost, f"{pod}: " + "; ".join(lost)


@pytest.mark.parametrize("doc", [d for d in MPI_DOCS + LWS_DOCS if d["kind"] in ("Service", "ConfigMap",
                                                                                    "PersistentVolumeClaim")],
                         ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_core_objects_deserialize_with_nothing_lost(k8s_client, doc):
    model = {"Service": "V1Service", "ConfigMap": "V1ConfigMap", "PersistentVolumeClaim": "V1PersistentVolumeClaim"}
    assert doc["apiVersion"] == "v1"
    lost = lost_fields(doc, roundtrip(k8s_client, doc, model[doc["kind"]]))
    assert not lost, "; ".join(lost)


def test_mpijob_fields_are_the_operators():
    # kubeflow.org/v2beta1 types.go (MPIJobSpec, RunPolicy, ReplicaSpec) and validation.go (ValidateMPIJob).
    assert MPIJOB["apiVersion"] == "kubeflow.org/v2beta1"
    spec = MPIJOB["spec"]
    assert set(spec) <= {"slotsPerWorker", "runLauncherAsWorker", "runPolicy", "mpiReplicaSpecs", "sshAuthMountPath",
                         "launcherCreationPolicy", "mpiImplementation"}
    assert spec.get("launcherCreationPolicy", "AtStartup") in ("AtStartup", "WaitForWorkersReady")
    assert spec.get("mpiImplementation", "OpenMPI") == "OpenMPI"  # the hostfile format and mpirun flags assume it
    assert not spec.get("runLauncherAsWorker", False)  # the launcher is added to the hostfile here, as rank 0
    assert isinstance(SLOTS, int) and SLOTS >= 0
    run = spec.get("runPolicy", {})
    assert set(run) <= {"cleanPodPolicy", "ttlSecondsAfterFinished", "activeDeadlineSeconds", "backoffLimit",
                        "schedulingPolicy", "suspend", "managedBy"}
    assert run.get("cleanPodPolicy", "None") in ("None", "Running", "All")
    assert set(spec["mpiReplicaSpecs"]) == {"Launcher", "Worker"}
    for kind, rs in spec["mpiReplicaSpecs"].items():
        assert set(rs) <= {"replicas", "template", "restartPolicy"}, kind
        assert rs.get("restartPolicy", "OnFailure" if kind == "Launcher" else "Never") in ("Never", "OnFailure"), kind
        assert rs["template"]["spec"]["containers"], kind
        assert "restartPolicy" not in rs["template"]["spec"], f"{kind}: the replica spec's restartPolicy overrides it"
    assert spec["mpiReplicaSpecs"]["Launcher"]["replicas"] == 1
    assert N_WORKERS >= 1
    # validateMPIJobName: the last worker's host name must be a DNS-1035 label.
    assert re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", mpi_worker_name(JOB, N_WORKERS - 1))


def test_leaderworkerset_fields_are_the_controllers():
    # leaderworkerset.x-k8s.io/v1 leaderworkerset_types.go and the webhook's validation.
    assert LWSET["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
    spec = LWSET["spec"]
    assert set(spec) <= {"replicas", "leaderWorkerTemplate", "rolloutStrategy", "startupPolicy", "networkConfig"}
    # LeaderReady would create the workers only once the leader is ready, and the leader waits for the workers.
    assert spec.get("startupPolicy", "LeaderCreated") == "LeaderCreated"
    assert LWS_POLICY in ("Shared", "UniquePerReplica")
    lwt = spec["leaderWorkerTemplate"]
    assert set(lwt) <= {"leaderTemplate", "workerTemplate", "size", "restartPolicy", "subGroupPolicy",
                        "volumeClaimTemplates", "persistentVolumeClaimRetentionPolicy"}
    # a rank that dies takes the whole cluster down: the group must restart as one
    assert lwt.get("restartPolicy") in ("RecreateGroupOnPodRestart", "RecreateGroupAfterStart")
    assert LWS_SIZE >= 2 and LWS_REPLICAS >= 0
    for name in (lws_worker_name(LWS_NAME, LWS_REPLICAS - 1, LWS_SIZE - 1), LWS_NAME):
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name), name


def test_podmonitor_fields():
    # prometheus-operator pkg/apis/monitoring/v1/podmonitor_types.go
    assert PODMONITOR["apiVersion"] == "monitoring.coreos.com/v1"
    spec = PODMONITOR["spec"]
    assert set(spec) <= {"jobLabel", "podTargetLabels", "podMetricsEndpoints", "selector", "namespaceSelector",
                         "sampleLimit", "targetLimit", "labelLimit", "attachMetadata", "scrapeProtocols"}
    assert set(spec["selector"]) <= {"matchLabels", "matchExpressions"}
    for ep in spec["podMetricsEndpoints"]:
        assert set(ep) <= {"port", "portNumber", "path", "scheme", "interval", "scrapeTimeout", "params",
                           "honorLabels", "honorTimestamps", "relabelings", "metricRelabelings", "enableHttp2",
                           "followRedirects", "filterRunning", "basicAuth", "authorization", "tlsConfig"}


# --- names, references, selectors -----------------------------------------------------------------------------
@pytest.mark.parametrize("docs, owned", [(MPI_DOCS, mpi_owned_names(JOB, N_WORKERS)),
                                         (LWS_DOCS, lws_owned_names(LWS_NAME, max(LWS_REPLICAS, 2)))],
                         ids=["mpijob.yaml", "leaderworkerset.yaml"])
def test_no_object_takes_a_name_the_controller_owns(docs, owned):
    for d in docs:
        assert (d["kind"], d["metadata"]["name"]) not in owned, (
            f"{d['kind']}/{d['metadata']['name']} is a name the controller creates itself")


def test_the_files_can_share_a_namespace():
    seen = {}
    for f in ("mpijob.yaml", "leaderworkerset.yaml", "podmonitor.yaml"):
        for d in load(f):
            key = (d["kind"], d["metadata"]["name"])
            assert key not in seen, f"{key} is defined in {seen[key]} and {f}"
            seen[key] = f
    owned = mpi_owned_names(JOB, N_WORKERS) | lws_owned_names(LWS_NAME, max(LWS_REPLICAS, 2))
    assert not set(seen) & owned
    assert not mpi_owned_names(JOB, N_WORKERS) & lws_owned_names(LWS_NAME, max(LWS_REPLICAS, 2))


@pytest.mark.parametrize("docs", [MPI_DOCS, LWS_DOCS], ids=["mpijob.yaml", "leaderworkerset.yaml"])
def test_services_select_only_the_rank0_pods(docs):
    services = [d for d in docs if d["kind"] == "Service"]
    assert services, "no Service for client traffic"
    mine = [p for p in PODS if p.docs is docs]
    for svc in services:
        assert svc["spec"].get("clusterIP") != "None", "a client Service must not be headless"
        sel = svc["spec"]["selector"]
        hits = [p for p in mine if selected(sel, p.labels)]
        assert hits and all(p.role == "rank0" for p in hits), f"{svc['metadata']['name']} selects {hits}"
        ports = {p["name"]: p["containerPort"] for p in mine[0].main["ports"]}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in ports, f"targetPort {port['targetPort']} is no port of the rank-0 container"


@pytest.mark.parametrize("docs", [MPI_DOCS, LWS_DOCS], ids=["mpijob.yaml", "leaderworkerset.yaml"])
def test_configmaps_and_claims_are_defined_in_the_same_file(docs):
    defined = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for pod in {id(p.template): p for p in PODS if p.docs is docs}.values():
        vols = {v["name"]: v for v in pod.spec["volumes"]}
        for c in pod.spec["containers"] + pod.spec.get("initContainers", []):
            for m in c.get("volumeMounts", []):
                assert m["name"] in vols, f"{pod}: mount {m['name']} has no volume"
        for v in vols.values():
            if "configMap" in v:
                assert ("ConfigMap", v["configMap"]["name"]) in defined, f"{pod}: ConfigMap {v['configMap']['name']}"
            if "persistentVolumeClaim" in v:
                claim = v["persistentVolumeClaim"]["claimName"]
                assert ("PersistentVolumeClaim", claim) in defined, f"{pod}: PVC {claim}"


def test_the_only_secret_is_the_lws_ssh_key_and_its_file_says_how_to_make_it():
    # The MPI Operator makes and mounts the ssh key itself (getOrCreateSSHAuthSecret, setupSSHOnPod).
    for p in PODS:
        secrets = {v["secret"]["secretName"] for v in p.spec["volumes"] if "secret" in v}
        if p.docs is MPI_DOCS:
            assert not secrets, f"{p}: the operator mounts its own ssh Secret at sshAuthMountPath"
        else:
            assert len(secrets) == 1, p
            name = secrets.pop()
            assert f"kubectl create secret generic {name} --type=kubernetes.io/ssh-auth" in (
                K8S / "leaderworkerset.yaml").read_text()


def test_images_are_the_projects():
    version = re.search(r"project\(tessera VERSION ([0-9.]+)", (ROOT / "CMakeLists.txt").read_text()).group(1)
    for p in TEMPLATES:
        for c in p.spec["containers"] + p.spec.get("initContainers", []):
            assert re.fullmatch(rf"ghcr\.io/tessera-project/tessera:{re.escape(version)}-(cpu|cuda)", c["image"]), (
                f"{p}: image {c['image']}")


# --- the configuration ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("docs", [MPI_DOCS, LWS_DOCS], ids=["mpijob.yaml", "leaderworkerset.yaml"])
def test_cluster_yaml_parses_and_every_key_exists(tessera_bin, tmp_path, docs):
    rank0 = next(p for p in RANK0 if p.docs is docs)
    _, text = cluster_yaml(docs, rank0)
    raw = yaml.safe_load(text)
    assert "drain_timeout_s" in raw.get("server", {}), "server.drain_timeout_s must be set explicitly"
    cfg = print_config(tessera_bin, tmp_path, text)
    assert cfg["server"]["host"] == "0.0.0.0", "the coordinator must accept connections from other pods"
    assert cfg["model"]["path"].startswith("/models/"), "the model comes from the PVC mounted at /models"


def served_config(pod, tessera_bin, tmp_path):
    """The effective configuration of the cluster that `pod` belongs to (its file's cluster.yaml)."""
    rank0 = next(p for p in RANK0 if p.docs is pod.docs)
    return print_config(tessera_bin, tmp_path, cluster_yaml(pod.docs, rank0)[1])


@pytest.mark.parametrize("pod", TEMPLATES, ids=repr)
def test_grace_period_outlasts_the_drain_and_mpiruns_kill_sequence(tessera_bin, tmp_path, pod):
    drain = served_config(pod, tessera_bin, tmp_path)["server"]["drain_timeout_s"]
    # Every pod that runs mpirun or an orted sets the timeout, and mpirun passes it on.
    t = env_of(pod.main).get("OMPI_MCA_odls_base_sigkill_timeout")
    assert t is not None, f"{pod}: OMPI_MCA_odls_base_sigkill_timeout is not set (Open MPI's default is 1 s)"
    t = int(t)
    assert t >= drain + 15, f"{pod}: odls_base_sigkill_timeout {t} < drain_timeout_s {drain} + 15"
    # mpirun, on SIGTERM: SIGCONT to the ranks, SIGTERM t s later, SIGKILL t s after that (Open MPI 4.1 odls).
    grace = pod.spec.get("terminationGracePeriodSeconds", 30)
    assert grace > 2 * t and grace > drain + t, f"{pod}: terminationGracePeriodSeconds {grace}, kill timeout {t}"


# --- probes and hooks -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("pod", RANK0, ids=repr)
def test_rank0_probes(tessera_bin, tmp_path, pod):
    cfg = served_config(pod, tessera_bin, tmp_path)
    c = pod.main
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for kind, path in (("startupProbe", "/health"), ("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        probe = c.get(kind)
        assert probe and probe["httpGet"]["path"] == path, f"{pod}: {kind} must GET {path}"
        port = probe["httpGet"]["port"]
        assert ports.get(port, port) == cfg["server"]["port"], f"{pod}: {kind} port {port}"
        if cfg["server"]["api_key"]:
            assert path in cfg["server"]["public_routes"], f"{pod}: {path} needs the API key"
    # The startup budget covers the sshd wait and a model load of 10 minutes; liveness only starts after it.
    s = c["startupProbe"]
    budget = s.get("periodSeconds", 10) * s.get("failureThreshold", 3)
    assert budget >= int(env_of(c)["TESSERA_SSHD_WAIT_S"]) + 600, f"{pod}: startup budget {budget} s"
    assert c["livenessProbe"].get("failureThreshold", 3) * c["livenessProbe"].get("periodSeconds", 10) >= 20
    # A preStop hook here would hold the pod's SIGTERM back from the shell that hands it to rank 0.
    assert "preStop" not in c.get("lifecycle", {}), f"{pod}: no preStop on the pod that runs rank 0"
    ann = pod.template["metadata"].get("annotations", {})
    if ann.get("prometheus.io/scrape") == "true":
        assert int(ann["prometheus.io/port"]) == cfg["server"]["port"]


@pytest.mark.parametrize("pod", WORKERS, ids=repr)
def test_worker_runs_sshd_and_waits_for_its_rank(pod):
    c = pod.main
    cmd = " ".join(c.get("command", []) + c.get("args", []))
    assert re.search(r"(^|\s|exec )/usr/sbin/sshd -De\b", cmd), f"{pod}: the worker must run sshd in the foreground"
    assert {"name": "ssh", "containerPort": 22} in c["ports"]
    assert c["readinessProbe"]["tcpSocket"]["port"] in ("ssh", 22), f"{pod}: Ready must mean sshd answers"
    hook = c["lifecycle"]["preStop"]["exec"]["command"]
    assert "tessera" in " ".join(hook), f"{pod}: preStop must wait for the rank"
    assert "nvidia.com/gpu" in c["resources"]["limits"], f"{pod}: one GPU per worker rank"


@pytest.fixture(scope="session")
def private_pid_namespace():
    try:
        ok = subprocess.run(["unshare", "--fork", "--pid", "--mount-proc", "true"], capture_output=True,
                            timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        pytest.skip("unshare --pid --mount-proc is not available: the preStop hook is run only in a PID namespace "
                    "of its own (elsewhere it would see this machine's other tessera processes)")


def run_prestop_hook(hook, fake_rank=None):
    """Runs the hook in a PID namespace of its own, with a process named tessera for 2 s when fake_rank is given;
    returns how long the hook took, in ms."""
    start = f"{shlex.quote(str(fake_rank))} 2 & sleep 0.3; " if fake_rank else ""
    sh = start + 't0=$(date +%s%N); "$@"; echo $(( ($(date +%s%N) - t0) / 1000000 ))'
    r = subprocess.run(["unshare", "--fork", "--pid", "--mount-proc", "sh", "-c", sh, "sh", *hook],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split()[-1])


@pytest.mark.parametrize("pod", WORKERS, ids=repr)
def test_worker_prestop_hook_returns_when_the_rank_exits(private_pid_namespace, tmp_path, pod):
    hook = pod.main["lifecycle"]["preStop"]["exec"]["command"]
    fake = tmp_path / "tessera"  # a process whose name is tessera
    shutil.copy(shutil.which("sleep"), fake)
    ms = run_prestop_hook(hook, fake)
    assert 1200 <= ms <= 6000, f"{pod}: with a rank running 1.7 s more, preStop returned after {ms} ms"
    ms = run_prestop_hook(hook)
    assert ms <= 1000, f"{pod}: with no rank, preStop returned after {ms} ms"


# --- the rank-0 script, run with the controllers' inputs -----------------------------------------------------
STUB_MPIRUN = r"""#!/bin/bash
# Records what it was asked to run; with STUB_RANK0 set, runs that as its only child (like mpirun's local rank 0).
printf '%s\0' "$@" > "$STUB_OUT/mpirun.argv"
while (($#)); do [[ $1 == --hostfile ]] && cp "$2" "$STUB_OUT/hostfile"; shift; done
trap 'echo TERM >> "$STUB_OUT/mpirun.signals"' TERM
if [[ -n ${STUB_RANK0:-} ]]; then "$STUB_RANK0"; exit; fi
exit 0
"""
STUB_TIMEOUT = r"""#!/bin/bash
# The sshd check: records the host (the last argument); fails the first STUB_FAILS checks of each host.
h=${!#}
echo "$h" >> "$STUB_OUT/checked"
n=$(grep -cx -- "$h" "$STUB_OUT/checked")
(( n > ${STUB_FAILS:-0} ))
"""
STUB_RANK0 = r"""#!/bin/bash
trap 'echo "TERM $(date +%s%N)" >> "$STUB_OUT/rank0"; exit "${STUB_RANK0_RC:-0}"' TERM
echo "started $(date +%s%N)" >> "$STUB_OUT/rank0"
while :; do sleep 0.05; done
"""


def rank0_script(pod, tmp_path, hostfile_text=None):
    """The rank-0 container's script, with the operator's /etc/mpi/hostfile and the fixed /tmp/hostfile moved into
    tmp_path (the only edits), and stand-ins for mpirun, hostname, timeout (the sshd check) and sleep on PATH."""
    c = pod.main
    assert c["command"] == ["/bin/bash", "-c"] and len(c["args"]) == 1
    script = c["args"][0]
    assert script.count("/tmp/hostfile") >= 2
    script = script.replace("/tmp/hostfile", str(tmp_path / "hostfile.made"))
    if hostfile_text is not None:
        assert f"{MPI_CONFIG_MOUNT}/hostfile" in script
        (tmp_path / "mpi-hostfile").write_text(hostfile_text)
        script = script.replace(f"{MPI_CONFIG_MOUNT}/hostfile", str(tmp_path / "mpi-hostfile"))
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name, text in (("mpirun", STUB_MPIRUN), ("timeout", STUB_TIMEOUT), ("hostname", 'echo "$STUB_HOSTNAME"\n'),
                       ("sleep", "exit 0\n")):
        (stubs / name).write_text(text if text.startswith("#!") else "#!/bin/bash\n" + text)
        (stubs / name).chmod(0o755)
    rank0 = tmp_path / "rank0" / "tessera"
    rank0.parent.mkdir()
    rank0.write_text(STUB_RANK0)
    rank0.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    env = {"PATH": f"{stubs}:{os.environ['PATH']}", "STUB_OUT": str(out)}
    env |= {k: v for k, v in env_of(c).items() if v is not None}
    return script, env, out, rank0


def mpirun_call(out):
    argv = (out / "mpirun.argv").read_bytes().split(b"\0")[:-1]
    argv = [a.decode() for a in argv]
    prog = next(i for i, a in enumerate(argv) if a.endswith("/tessera"))
    opts, program = argv[:prog], argv[prog:]
    parsed = {"-x": [], "--mca": {}}
    i = 0
    while i < len(opts):
        a = opts[i]
        if a == "--mca":
            parsed["--mca"][opts[i + 1]] = opts[i + 2]
            i += 3
        elif a == "-x":
            parsed["-x"].append(opts[i + 1])
            i += 2
        elif a in ("-np", "--hostfile", "--map-by", "--bind-to"):
            parsed[a] = opts[i + 1]
            i += 2
        else:
            parsed[a] = True
            i += 1
    return parsed, program


CASES = [("mpijob", "default", 0, None), ("mpijob", "serving", 0, "/usr/local/cuda/lib64"),
         ("lws", "default", 0, None), ("lws", "serving", 1, "/usr/local/cuda/lib64")]


def case_inputs(kind, namespace, group, tmp_path):
    """The rank-0 pod as the controller makes it: its script, environment, host name and the workers it must use."""
    if kind == "mpijob":
        pod = next(p for p in RANK0 if p.docs is MPI_DOCS)
        script, env, out, rank0 = rank0_script(pod, tmp_path, mpi_hostfile(JOB, namespace, N_WORKERS, SLOTS))
        env |= mpi_launcher_env(SLOTS) | {"STUB_HOSTNAME": f"{JOB}-launcher"}  # Spec.Hostname = launcherName
        workers = [f"{mpi_worker_name(JOB, i)}.{JOB}.{namespace}.svc" for i in range(N_WORKERS)]
        n_ranks = 1 + N_WORKERS * SLOTS
    else:
        pod = next(p for p in RANK0 if p.docs is LWS_DOCS)
        script, env, out, rank0 = rank0_script(pod, tmp_path)
        env |= lws_env(LWS_NAME, group, namespace, LWS_SIZE, 0, LWS_POLICY)
        env |= {"STUB_HOSTNAME": lws_leader_name(LWS_NAME, group)}  # a StatefulSet pod's host name is its name
        sub = lws_subdomain(LWS_NAME, group, LWS_POLICY)
        workers = [f"{lws_worker_name(LWS_NAME, group, i)}.{sub}.{namespace}" for i in range(1, LWS_SIZE)]
        n_ranks = LWS_SIZE
    return pod, script, env, out, rank0, workers, n_ranks


@pytest.mark.parametrize("kind, namespace, group, ld_path", CASES)
def test_rank0_script_waits_for_the_workers_and_starts_the_cluster_on_them(tessera_bin, tmp_path, kind, namespace,
                                                                          group, ld_path):
    pod, script, env, out, _, workers, n_ranks = case_inputs(kind, namespace, group, tmp_path)
    if ld_path:
        env["LD_LIBRARY_PATH"] = ld_path
    env["STUB_FAILS"] = "2"  # each worker's sshd answers only at the third try
    r = subprocess.run(["/bin/bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    checked = (out / "checked").read_text().split()
    assert checked == [w for w in workers for _ in range(3)], "the sshd checks went to other hosts"
    hostfile = (out / "hostfile").read_text().splitlines()
    assert hostfile == [f"{env['STUB_HOSTNAME']} slots=1"] + [f"{w} slots={SLOTS if kind == 'mpijob' else 1}"
                                                               for w in workers]
    opts, program = mpirun_call(out)
    assert int(opts["-np"]) == n_ranks
    assert opts.get("--map-by") == "slot", "rank 0 must take the first slot: this pod"
    assert opts["--mca"]["odls_base_sigkill_timeout"] == env["OMPI_MCA_odls_base_sigkill_timeout"]
    assert opts["--mca"].get("orte_keep_fqdn_hostnames") == "true", "short names would not resolve"
    assert ("LD_LIBRARY_PATH" in opts["-x"]) == bool(ld_path)
    for name in opts["-x"]:
        assert name in env, f"-x {name}: not set in the container (mpirun warns and forwards nothing)"
    # The command the ranks run, against the binary under test and the manifest's own cluster.yaml.
    assert program[0] == "/opt/tessera/bin/tessera" and program[1] == "serve"
    args = program[2:]
    mount, text = cluster_yaml(pod.docs, pod)
    i = args.index("--config")
    assert args[i + 1] == f"{mount}/cluster.yaml"
    cfg = print_config(tessera_bin, tmp_path, text, args[:i] + args[i + 2:])
    assert cfg["parallel"]["tp"] == n_ranks - 1, "parallel.tp must equal the number of worker ranks"


@pytest.mark.parametrize("kind", ["mpijob", "lws"])
def test_rank0_script_gives_up_when_a_worker_never_answers(tmp_path, kind):
    _, script, env, out, _, workers, _ = case_inputs(kind, "default", 0, tmp_path)
    env |= {"STUB_FAILS": "1000000", "TESSERA_SSHD_WAIT_S": "0"}
    r = subprocess.run(["/bin/bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and f"no sshd answered on {workers[0]}:22" in r.stderr
    assert not (out / "mpirun.argv").exists()


@pytest.mark.parametrize("kind", ["mpijob", "lws"])
def test_sigterm_reaches_rank0_at_once_and_not_through_mpirun(tmp_path, kind):
    _, script, env, out, rank0, _, _ = case_inputs(kind, "default", 0, tmp_path)
    env["STUB_RANK0"] = str(rank0)
    # Rank 0 exits the moment it gets SIGTERM: the script must still return mpirun's status, every time.
    for attempt, status in enumerate([0, 3] * 5):
        for f in ("rank0", "mpirun.signals"):
            (out / f).unlink(missing_ok=True)
        proc = subprocess.Popen(["/bin/bash", "-c", script], env=env | {"STUB_RANK0_RC": str(status)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 20
            while not (out / "rank0").exists() and time.monotonic() < deadline:
                assert proc.poll() is None, proc.stderr.read().decode()
                time.sleep(0.01)
            assert (out / "rank0").exists(), "rank 0 did not start"
            time.sleep(0.05)  # the script sets its SIGTERM trap right after starting mpirun
            t0 = time.time_ns()  # the stub writes date +%s%N: wall-clock time
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        events = dict(line.split() for line in (out / "rank0").read_text().splitlines())
        assert "TERM" in events, f"attempt {attempt}: rank 0 never got SIGTERM"
        assert (int(events["TERM"]) - t0) / 1e9 < 2, f"attempt {attempt}: SIGTERM reached rank 0 late"
        assert rc == status, f"attempt {attempt}: the script exited {rc}, mpirun {status}"
        assert not (out / "mpirun.signals").exists(), "mpirun got SIGTERM: it would hold it back from the ranks"


# --- monitoring -----------------------------------------------------------------------------------------------
def sanitize(label):  # prometheus-operator sanitizeLabelName(); Prometheus' labelmap of __meta_kubernetes_pod_label_*
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def test_podmonitor_scrapes_the_rank0_pods_only():
    spec = PODMONITOR["spec"]
    sel = spec["selector"]["matchLabels"]
    assert not spec["selector"].get("matchExpressions")
    for p in PODS:
        assert selected(sel, p.labels) == (p.role == "rank0"), f"PodMonitor selection of {p}"
    for ep in spec["podMetricsEndpoints"]:
        for p in RANK0:
            assert ep["port"] in {c["name"] for c in p.main["ports"]}, f"{p} has no port {ep['port']}"
            ann = p.template["metadata"].get("annotations", {})
            assert ep.get("path", "/metrics") == ann.get("prometheus.io/path", "/metrics")


def alert_matchers(alert):
    rules = yaml.safe_load((ROOT / "monitoring/prometheus/rules.yml").read_text())
    expr = next(r["expr"] for g in rules["groups"] for r in g["rules"] if r.get("alert") == alert)
    m = re.search(r"up\{([^}]*)\}", expr)
    assert m, f"{alert} does not select on up{{...}}"
    return dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', m.group(1)))


@pytest.mark.parametrize("alert", ["TesseraDown", "TesseraTargetMissing"])
def test_alerts_select_on_labels_every_scraping_style_gives_rank0(alert):
    want = alert_matchers(alert)
    assert want and "job" not in want, f"{alert}: the job label differs between PodMonitor and annotation scraping"
    target_labels = {sanitize(label) for label in PODMONITOR["spec"]["podTargetLabels"]}
    for p in PODS:
        pod_monitor = {sanitize(k): v for k, v in p.labels.items() if sanitize(k) in target_labels}
        labelmap = {sanitize(k): v for k, v in p.labels.items()}  # regex __meta_kubernetes_pod_label_(.+)
        for style, labels in (("PodMonitor", pod_monitor), ("annotations", labelmap)):
            assert selected(want, labels) == (p.role == "rank0"), f"{alert} under {style} scraping, {p}"
    static = yaml.safe_load((ROOT / "monitoring/prometheus/prometheus.yml").read_text())
    job = next(j for j in static["scrape_configs"] if j["job_name"] == "tessera")
    assert all(selected(want, sc.get("labels", {})) for sc in job["static_configs"]), "prometheus.yml's target"


@pytest.fixture(scope="session")
def promtool():
    if not PROMTOOL:
        pytest.skip("promtool not found (Debian: apt-get install prometheus; or set PROMTOOL): rules not checked")
    return PROMTOOL


def test_promtool_checks_and_unit_tests_the_rules(promtool):
    d = ROOT / "monitoring/prometheus"
    for args in (["check", "rules", "rules.yml"], ["test", "rules", "rules_test.yml"],
                 ["check", "config", "prometheus.yml"]):
        r = subprocess.run([promtool, *args], cwd=d, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"promtool {' '.join(args)}:\n{r.stdout}\n{r.stderr}"


# --- the routes, on a real server ------------------------------------------------------------------------------
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scraped_and_probed_paths():
    paths = {}
    for p in TEMPLATES:
        for c in p.spec["containers"]:
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                if "httpGet" in c.get(kind, {}):
                    paths.setdefault(c[kind]["httpGet"]["path"], []).append(f"{p} {kind}")
        ann = p.template["metadata"].get("annotations", {})
        if ann.get("prometheus.io/scrape") == "true":
            paths.setdefault(ann.get("prometheus.io/path", "/metrics"), []).append(f"{p} annotation")
    for ep in PODMONITOR["spec"]["podMetricsEndpoints"]:
        paths.setdefault(ep.get("path", "/metrics"), []).append("PodMonitor")
    return paths


def test_probe_and_scrape_paths_are_routes_the_server_answers(tessera_bin):
    if not SMOL:
        pytest.skip("TESSERA_DEFAULT_MODEL is not set (configure with -DTESSERA_DEFAULT_MODEL=...): no server to ask")
    paths = scraped_and_probed_paths()
    assert {"/health", "/ready", "/metrics"} <= set(paths)
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", TESSERA_LOG_LEVEL="warn")
    proc = subprocess.Popen([tessera_bin, "serve", "--model", SMOL, "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the server did not become ready"
            try:
                if requests.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        for path, users in paths.items():
            r = requests.get(url + path, timeout=10)
            assert r.status_code == 200, f"GET {path} ({', '.join(users)}): {r.status_code} {r.text[:200]}"
        assert "tessera_ready" in requests.get(url + "/metrics", timeout=10).text
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
