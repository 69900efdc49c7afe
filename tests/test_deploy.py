"""Static checks of deploy/, the Procfile and the root .dockerignore (no Docker, no
cluster, no network: loopback only for the probe script).

- every YAML under deploy/ parses; the Kubernetes manifests validate offline against
  the bundled Kubernetes schemas (kubernetes-validate, strict: unknown fields fail);
  the KEDA objects (CRDs, not in those schemas) are checked field by field;
- the manifests agree with each other (names, selectors, ports, secret paths) and the
  ConfigMap / compose environments resolve through StreamConfig;
- KEDA's maxReplicaCount equals HIERTCN_PARTITIONS;
- compose: kafka (KRaft, pinned), topics (one-shot, before workers), worker (scalable);
- Dockerfile: pinned base, non-root USER, HEALTHCHECK, every ${ARG} stage resolves;
- Procfile: each command's module and subcommand exist and accept its options;
- alert rules: every hiertcn_* metric and label they use exists in stream/worker/metrics.py.
"""

from __future__ import annotations

import http.server
import os
import re
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from stream.config import ENV, SECRET_FILE_ENV, StreamConfig

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
# The oldest Kubernetes these manifests target: persistentVolumeClaimRetentionPolicy
# is GA from 1.32.
K8S_VERSION = "1.32.0"
NAMESPACE = "hiertcn"
KNOWN_ENV = set(ENV.values()) | set(SECRET_FILE_ENV.values())
# Not HIERTCN settings, but read by libraries in the worker process.
LIBRARY_ENV = {"OMP_NUM_THREADS"}

YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def k8s_objects() -> list[tuple[Path, dict]]:
    return [(p, d) for p in sorted(K8S.glob("*.yaml")) for d in load_all(p)]


def one(kind: str, api_prefix: str = "") -> dict:
    found = [d for _, d in k8s_objects()
             if d["kind"] == kind and d["apiVersion"].startswith(api_prefix)]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def configmap() -> dict:
    return one("ConfigMap")["data"]


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


# ---------------------------------------------------------------- YAML and schemas

def test_deploy_has_the_expected_files():
    for name in ("Dockerfile", "README.md", "compose.yaml", "alerts.yaml", "healthcheck.py",
                 "k8s/namespace.yaml", "k8s/configmap.yaml", "k8s/secret.example.yaml",
                 "k8s/statefulset.yaml", "k8s/service.yaml", "k8s/pdb.yaml",
                 "k8s/keda-scaledobject.yaml"):
        assert (DEPLOY / name).is_file(), name
    assert (ROOT / "Procfile").is_file() and (ROOT / ".dockerignore").is_file()


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_parses(path):
    docs = load_all(path)
    assert docs and all(isinstance(d, dict) for d in docs)


def test_kubernetes_manifests_validate_offline():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    checked = set()
    for path, doc in k8s_objects():
        if doc["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: test_keda_* below
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            where = ".".join(str(p) for p in err.path)
            pytest.fail(f"{path.name}: {doc['kind']} {where}: {err.message}")
        checked.add(doc["kind"])
    assert {"Namespace", "ConfigMap", "Secret", "StatefulSet", "Service",
            "PodDisruptionBudget"} <= checked


def test_every_object_lives_in_the_namespace():
    for path, doc in k8s_objects():
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] == NAMESPACE
        else:
            assert doc["metadata"].get("namespace") == NAMESPACE, path.name


# ---------------------------------------------------------------- the workers

def test_configmap_holds_known_settings_that_resolve():
    data = configmap()
    assert set(data) <= KNOWN_ENV, f"unknown variables: {set(data) - KNOWN_ENV}"
    assert ENV["sasl_password"] not in data, "the password belongs in the Secret"
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values are strings"
    env = {k: v for k, v in data.items() if k != SECRET_FILE_ENV["sasl_password"]}
    config = StreamConfig.resolve(env={**env, ENV["sasl_password"]: "placeholder"})
    assert config.export_dir == Path("/app/artifacts/export")
    assert config.datadir == Path("/data") and config.web_host == "0.0.0.0"


def test_statefulset_fits_service_secret_and_configmap():
    sts, svc, pdb = one("StatefulSet"), one("Service"), one("PodDisruptionBudget")
    secret, data = one("Secret"), configmap()
    spec, pod = sts["spec"], sts["spec"]["template"]["spec"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    # headless Service of the StatefulSet, selecting its pods, on the web port
    assert spec["serviceName"] == svc["metadata"]["name"]
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"].items() <= labels.items()
    assert [p["port"] for p in svc["spec"]["ports"]] == [int(data["HIERTCN_WEB_PORT"])]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()

    (c,) = pod["containers"]
    assert c["args"] == ["worker"]
    assert [p["containerPort"] for p in c["ports"]] == [int(data["HIERTCN_WEB_PORT"])]
    assert {s["configMapRef"]["name"] for s in c["envFrom"]} == {one("ConfigMap")["metadata"]["name"]}
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready/"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health/"
    assert pod["terminationGracePeriodSeconds"] >= 30
    assert pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's USER
    # RocksDB on a per-pod PVC at HIERTCN_DATADIR
    (claim,) = spec["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == data["HIERTCN_DATADIR"]
    # the password file HIERTCN_SASL_PASSWORD_FILE names comes from the Secret
    volumes = {v["name"]: v for v in pod["volumes"]}
    (secret_vol,) = [v for v in volumes.values() if "secret" in v]
    assert secret_vol["secret"]["secretName"] == secret["metadata"]["name"]
    items = {i["path"]: i["key"] for i in secret_vol["secret"]["items"]}
    mount_dir = mounts[secret_vol["name"]]
    file_path = data[SECRET_FILE_ENV["sasl_password"]]
    assert Path(file_path).parent == Path(mount_dir)
    assert items[Path(file_path).name] in secret["stringData"]
    # requests <= limits, both given
    req, lim = c["resources"]["requests"], c["resources"]["limits"]
    assert set(req) == set(lim) == {"cpu", "memory"}
    for key in req:
        assert quantity(req[key]) <= quantity(lim[key]), key


def quantity(q: str | int) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
             "k": 1e3, "M": 1e6, "G": 1e9}
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(q))
    assert m, q
    return float(m.group(1)) * units.get(m.group(2), 1)


# ---------------------------------------------------------------- KEDA (CRDs)

def test_keda_scaledobject_fields():
    so = one("ScaledObject", "keda.sh/")
    data, sts = configmap(), one("StatefulSet")
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    assert so["metadata"]["name"] and so["metadata"]["namespace"] == NAMESPACE
    ref = so["spec"]["scaleTargetRef"]
    assert ref["name"] == sts["metadata"]["name"]
    assert ref["kind"] == "StatefulSet" and ref["apiVersion"] == "apps/v1"
    assert 1 <= so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"]
    trigger = so["spec"]["triggers"][0]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert {"bootstrapServers", "consumerGroup", "topic", "lagThreshold"} <= set(meta)
    assert all(isinstance(v, str) for v in meta.values()), "KEDA metadata values are strings"
    assert int(meta["lagThreshold"]) > 0
    assert meta["consumerGroup"] == data["HIERTCN_APP_ID"] == "hiertcn-worker"
    assert meta["topic"] == data["HIERTCN_CLICKS_TOPIC"] == "clicks"
    assert meta["bootstrapServers"] == data["KAFKA_BOOTSTRAP_SERVERS"]
    # credentials: the TriggerAuthentication it names, reading keys the Secret has
    auth = one("TriggerAuthentication", "keda.sh/")
    assert auth["apiVersion"] == "keda.sh/v1alpha1"
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    secret = one("Secret")
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]
    assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} == \
        {"sasl", "username", "password", "tls"}


def test_max_replicas_equals_partitions():
    so = one("ScaledObject", "keda.sh/")
    partitions = int(configmap()["HIERTCN_PARTITIONS"])
    assert so["spec"]["maxReplicaCount"] == partitions == 8
    assert int(worker_env()["HIERTCN_PARTITIONS"]) == partitions


# ---------------------------------------------------------------- compose

def worker_env() -> dict:
    return {k: str(v) for k, v in compose()["services"]["worker"]["environment"].items()}


def test_compose_services():
    services = compose()["services"]
    assert {"kafka", "topics", "worker"} <= set(services)
    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:3.9.1"
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}  # KRaft
    assert not any("ZOOKEEPER" in k for k in env)
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
    assert env["CLUSTER_ID"] and not env["CLUSTER_ID"].startswith("-")
    assert "healthcheck" in kafka

    topics = services["topics"]
    assert topics["command"] == ["topics"]
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"

    worker = services["worker"]
    assert "container_name" not in worker, "--scale needs generated container names"
    for port in worker.get("ports", []):
        host = str(port).rsplit(":", 1)[0] if ":" in str(port) else ""
        host_port = host.rsplit(":", 1)[-1] if host else ""
        assert host_port == "" or "-" in host_port, f"fixed host port {port} blocks --scale"
    deps = worker["depends_on"]
    assert deps["topics"]["condition"] == "service_completed_successfully"
    assert deps["kafka"]["condition"] == "service_healthy"
    assert "/ready/" in " ".join(worker["healthcheck"]["test"])
    # /data: an anonymous volume (one per replica), never a named or bind one
    data_dir = worker_env()["HIERTCN_DATADIR"]
    assert data_dir in worker["volumes"]
    assert not any(str(v).split(":")[1:2] == [data_dir] for v in worker["volumes"])
    # every image service builds the one Dockerfile
    for name in ("topics", "worker"):
        build = services[name]["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == \
            (DEPLOY / "Dockerfile").resolve()


def test_compose_worker_env_resolves():
    env = worker_env()
    assert set(env) <= KNOWN_ENV | LIBRARY_ENV, set(env) - KNOWN_ENV - LIBRARY_ENV
    config = StreamConfig.resolve(env=env)
    assert config.bootstrap_servers == "kafka:9092"
    kafka_env = compose()["services"]["kafka"]["environment"]
    assert "kafka:9092" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    assert kafka_env["KAFKA_NUM_PARTITIONS"] == env["HIERTCN_PARTITIONS"]


# ---------------------------------------------------------------- Dockerfile

def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(
        line for line in (DEPLOY / "Dockerfile").read_text().splitlines()
        if not line.lstrip().startswith("#")))
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_base_user_healthcheck_entrypoint():
    lines = dockerfile()
    global_args = {}
    for word, rest in lines:
        if word == "FROM":
            break
        if word == "ARG":
            name, _, default = rest.partition("=")
            global_args[name] = default
    stages, froms = set(), []
    for word, rest in lines:
        if word == "FROM":
            image, *alias = rest.split()
            froms.append(image)
            if alias:
                stages.add(alias[-1])
    # the base image: pinned, never latest
    base = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], froms[0])
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base
    # every ${ARG}-chosen stage exists for each documented value
    for choice, values in (("VARIANT", ("cpu", "gpu")), ("MODEL_EXPORT", ("mounted", "baked"))):
        assert global_args[choice] == values[0]
        pattern = next(f for f in froms if "${" + choice + "}" in f)
        for v in values:
            assert pattern.replace("${" + choice + "}", v) in stages, (choice, v)
    # final stage: non-root user, volume, port, healthcheck, worker entrypoint
    final = lines[max(i for i, (w, _) in enumerate(lines) if w == "FROM"):]
    words = dict(final)
    user = words["USER"].split(":")[0]
    assert user not in ("root", "0", ""), "runs as root"
    assert "/data" in words["VOLUME"]
    assert words["EXPOSE"] == "6066"
    assert "/health/" in words["HEALTHCHECK"] and "CMD" in words["HEALTHCHECK"]
    assert words["ENTRYPOINT"] == '["python", "-m", "stream.cli"]'
    assert words["CMD"] == '["worker"]'
    env = " ".join(r for w, r in lines if w == "ENV")
    assert "HIERTCN_EXPORT_DIR=/app/artifacts/export" in env and "HIERTCN_DATADIR=/data" in env
    assert "HIERTCN_WEB_HOST=0.0.0.0" in env
    # the gpu variant installs the extra pyproject.toml defines
    runs = " ".join(r for w, r in lines if w == "RUN")
    assert "'.[gpu]'" in runs


def test_dockerfile_copies_existing_paths():
    for word, rest in dockerfile():
        if word != "COPY":
            continue
        sources = [s for s in rest.split()[:-1] if not s.startswith("--")]
        for src in sources:
            if src.startswith("artifacts/"):
                continue  # made by `python -m hiertcn export`; MODEL_EXPORT=baked only
            if "[" in src:
                continue  # optional glob (README.m[d])
            assert (ROOT / src).exists(), src


def test_dockerignore_keeps_the_context_small():
    rules = [r.strip() for r in (ROOT / ".dockerignore").read_text().splitlines()
             if r.strip() and not r.startswith("#")]
    for path in (".git", ".venv", ".kafka", "runs", "artifacts"):
        assert path in rules, path
    assert "!artifacts/export" in rules  # the baked variant needs it


# ---------------------------------------------------------------- Procfile

def procfile() -> dict[str, str]:
    out = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            out[name.strip()] = command.strip()
    return out


def test_procfile_processes():
    procs = procfile()
    assert {"worker", "replay", "train"} <= set(procs)
    assert procs["worker"] == "python -m stream.cli worker"  # = the image's ENTRYPOINT + CMD


@pytest.mark.parametrize("command", [c.strip() for cmd in procfile().values()
                                     for c in cmd.split("&&")])
def test_procfile_command_exists(command):
    """`python -m MODULE [SUBCOMMAND] --help` exits 0 and lists every option used."""
    argv = shlex.split(command)
    assert argv[:2] == ["python", "-m"], command
    module, rest = argv[2], argv[3:]
    sub = [rest[0]] if rest and not rest[0].startswith("-") else []
    result = subprocess.run([sys.executable, "-m", module, *sub, "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=180,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    for option in (a.split("=")[0] for a in rest if a.startswith("--")):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", result.stdout), \
            f"{module} {' '.join(sub)}: no option {option}"


# ---------------------------------------------------------------- probe script

class _Pages(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = {"/health/": 200, "/ready/": 503}.get(self.path, 404)
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def test_healthcheck_script_follows_the_status():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {**os.environ, "HIERTCN_WEB_PORT": str(server.server_address[1])}
        script = str(DEPLOY / "healthcheck.py")
        run = lambda path: subprocess.run([sys.executable, script, path], env=env,
                                          capture_output=True, timeout=30).returncode
        assert run("/health/") == 0
        assert run("/ready/") == 1  # 503: not ready
    finally:
        server.shutdown()
        server.server_close()
    env["HIERTCN_WEB_PORT"] = str(server.server_address[1])  # nothing listens now
    assert subprocess.run([sys.executable, script, "/health/"], env=env,
                          capture_output=True, timeout=30).returncode == 1


# ---------------------------------------------------------------- alert rules

def exposed_metrics() -> dict[str, set[str]]:
    """Every sample name stream/worker/metrics.py exposes -> the label names it carries."""
    from prometheus_client.metrics import MetricWrapperBase

    from stream.worker import metrics

    suffixes = {"counter": ("_total", "_created"), "gauge": ("",),
                "histogram": ("_bucket", "_sum", "_count", "_created"),
                "summary": ("", "_sum", "_count", "_created"), "info": ("_info",)}
    out = {}
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            labels = set(obj._labelnames)
            for suffix in suffixes[obj._type]:
                extra = {"le"} if suffix == "_bucket" else set()
                out[obj._name + suffix] = labels | extra
    if "hiertcn_model_info" in out:
        out["hiertcn_model_info"] |= {"version"}  # Info keys become labels
    return out


def alert_rules() -> list[dict]:
    doc = yaml.safe_load((DEPLOY / "alerts.yaml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_alert_rules_cover_the_issue():
    names = {r["alert"] for r in alert_rules()}
    assert {"HierTCNConsumerLagGrowing", "HierTCNDeadLetterRate", "HierTCNWorkerNotReady",
            "HierTCNNoRecommendations"} <= names
    readme = (DEPLOY / "README.md").read_text()
    for rule in alert_rules():
        assert {"expr", "for", "labels", "annotations"} <= set(rule), rule["alert"]
        assert rule["labels"]["severity"] in ("info", "warning", "critical")
        assert f"### {rule['alert']}\n" in readme, f"no runbook entry for {rule['alert']}"
        assert rule["annotations"]["runbook"].endswith("#" + rule["alert"].lower())


def test_alert_rules_use_existing_metrics_and_labels():
    exposed = exposed_metrics()
    used = 0
    for rule in alert_rules():
        for name, matchers in re.findall(r"\b(hiertcn_\w+)(\{[^}]*\})?", rule["expr"]):
            assert name in exposed, f"{rule['alert']}: {name} is not in stream/worker/metrics.py"
            labels = set(re.findall(r"(\w+)\s*=~?", matchers))
            assert labels <= exposed[name], f"{rule['alert']}: {name} has no {labels - exposed[name]}"
            used += 1
        for group in re.findall(r"\bby \(([^)]*)\)", rule["expr"]):
            for label in (x.strip() for x in group.split(",")):
                assert label in {"le", "pod", "instance", "job"} or \
                    any(label in ls for n, ls in exposed.items() if n in rule["expr"]), label
    assert used >= 5


def test_alert_expressions_parse():
    promql_parser = pytest.importorskip("promql_parser")
    for rule in alert_rules():
        promql_parser.parse(rule["expr"])
