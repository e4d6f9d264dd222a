"""Deployment artefacts: the Dockerfile, the Kubernetes manifests under deploy/k8s, and the invariants
that tie them to the worker (its settings, routes, drain deadline and key-file rules).

The manifests are validated against the Kubernetes JSON schemas shipped inside the `kubernetes-validate`
wheel (strict variant: unknown fields are errors), with the network disabled to prove nothing is fetched.
Building the image needs registry access these machines do not have, so the Dockerfile is linted
structurally instead.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import shlex
import socket
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from worker.config import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
OVERLAY = K8S / "overlays" / "host-network"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DOCS = ROOT / "docs" / "deployment.md"

# Oldest Kubernetes minor we support (NetworkPolicy endPort, PDB unhealthyPodEvictionPolicy) and the
# newest whose schemas the validator ships.
OLDEST_K8S = "1.29"
FLUSH_MARGIN_S = 10  # after the drain deadline: end calls, seal, flush, exit
BASE_IMAGE = "python:3.11-slim-bookworm"
SETTING_ENVS = {s.env: s for s in SETTINGS}
SECRET_ENVS = {s.env for s in SETTINGS if s.secret} | {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
# Non-secret settings the ConfigMap may leave unset (documented: unset means the bundled model).
CONFIGMAP_OPTIONAL = {"CONVERSE_MODEL_PATH", "CONVERSE_POD_ID"}  # the pod id: from the pod's name
PLACEHOLDER = "REPLACE_ME"


# -- loading -------------------------------------------------------------------------------------------


def load_all(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def load_one(path: Path) -> dict[str, Any]:
    docs = load_all(path)
    assert len(docs) == 1, f"{path.name}: expected one document"
    return docs[0]


def kustomization(directory: Path) -> dict[str, Any]:
    doc = load_one(directory / "kustomization.yaml")
    assert doc["kind"] == "Kustomization"
    return doc


def base_resources() -> list[dict[str, Any]]:
    return [d for name in kustomization(K8S)["resources"] for d in load_all(K8S / name)]


def find(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]


def strategic_merge(base: Any, patch: Any) -> Any:
    """Enough of kustomize's strategic merge for our patch: maps merge, everything else replaces."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = strategic_merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(patch)


def overlay_deployment() -> dict[str, Any]:
    k = kustomization(OVERLAY)
    assert [(OVERLAY / r).resolve() for r in k["resources"]] == [K8S.resolve()]
    merged = find(base_resources(), "Deployment")
    for p in k["patches"]:
        patch = load_one(OVERLAY / p["path"])
        assert (patch["kind"], patch["metadata"]["name"]) == ("Deployment", merged["metadata"]["name"])
        merged = strategic_merge(merged, patch)
    return merged


@pytest.fixture(scope="module")
def resources() -> list[dict[str, Any]]:
    return base_resources()


@pytest.fixture(scope="module")
def deployment(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return find(resources, "Deployment")


@pytest.fixture(scope="module")
def pod(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def worker(pod: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = [c for c in pod["containers"] if c["name"] == "worker"]
    assert len(containers) == 1
    return containers[0]


@pytest.fixture(scope="module")
def config(resources: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = find(resources, "ConfigMap")["data"]
    return data


@pytest.fixture(scope="module")
def secrets() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in load_all(K8S / "secret.example.yaml")}


def all_containers(pod: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from pod.get("initContainers", [])
    yield from pod["containers"]


def udp_range(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)-(\d+)", text)
    assert m, f"UDP port range {text!r} is not LOW-HIGH"
    low, high = int(m[1]), int(m[2])
    assert 1024 <= low <= high <= 65535
    return low, high


# -- schema validation (offline) ------------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted during offline schema validation")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="module")
def kv() -> Any:
    return pytest.importorskip("kubernetes_validate", reason="dev dependency kubernetes-validate")


def every_manifest() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.parent == OVERLAY and path.name != "kustomization.yaml":
            continue  # a patch, validated below as part of the merged Deployment
        for doc in load_all(path):
            if doc["kind"] != "Kustomization":
                out.append((f"{path.relative_to(K8S)}:{doc['kind']}/{doc['metadata']['name']}", doc))
    out.append(("overlays/host-network:Deployment (merged)", overlay_deployment()))
    return out


def k8s_versions() -> list[str]:
    try:
        from kubernetes_validate.utils import latest_version  # type: ignore[import-untyped]
    except ImportError:
        return [OLDEST_K8S]
    return [OLDEST_K8S, ".".join(latest_version().split(".")[:2])]


@pytest.mark.parametrize("version", k8s_versions())
def test_manifests_validate_against_kubernetes_schemas(kv: Any, offline: None, version: str) -> None:
    manifests = every_manifest()
    assert len(manifests) >= 8
    for name, doc in manifests:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{name} is invalid for Kubernetes {version}: {path}: {exc.message}")


def test_validator_is_not_vacuous(kv: Any, offline: None, deployment: dict[str, Any]) -> None:
    typo = copy.deepcopy(deployment)
    c = typo["spec"]["template"]["spec"]["containers"][0]
    c["readinesProbe"] = c.pop("readinessProbe")
    with pytest.raises(kv.ValidationError):
        kv.validate(typo, OLDEST_K8S, strict=True)
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    with pytest.raises(kv.ValidationError):
        kv.validate(wrong_type, OLDEST_K8S, strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    k = kustomization(K8S)
    listed = set(k["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert "secret.example.yaml" not in listed, "placeholders must never be applied over real secrets"
    assert listed == on_disk - {"secret.example.yaml"}
    images = {i["name"] for i in k["images"]}
    used = {
        c["image"].split(":")[0]
        for c in all_containers(find(base_resources(), "Deployment")["spec"]["template"]["spec"])
    }
    assert used <= images


# -- drain, probes, routes ------------------------------------------------------------------------------


def string_constants(directory: Path) -> set[str]:
    found: set[str] = set()
    for path in directory.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
    return found


def test_probe_paths_are_worker_routes(worker: dict[str, Any]) -> None:
    probed = {worker[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert worker["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert worker["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert probed == {"/healthz", "/readyz"}
    routes = string_constants(ROOT / "worker")
    if not (ROOT / "worker" / "cmd_serve.py").exists() and not probed & routes:
        pytest.skip("`serve` (worker/cli/serve.py) is not in this tree yet")
    assert probed <= routes, f"probe paths not served by the worker: {sorted(probed - routes)}"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker[probe]["httpGet"]["port"] == "http"


def prestop_sleep_s(container: dict[str, Any]) -> int:
    action = container["lifecycle"]["preStop"]
    if "sleep" in action:
        return int(action["sleep"]["seconds"])
    argv = action["exec"]["command"]
    assert Path(argv[0]).name == "sleep" and len(argv) == 2, f"preStop is not a plain sleep: {argv}"
    return int(argv[1])


def test_grace_period_covers_prestop_drain_and_flush(
    pod: dict[str, Any], worker: dict[str, Any], config: dict[str, str]
) -> None:
    drain = int(config["CONVERSE_DRAIN_SECONDS"])
    sleep = prestop_sleep_s(worker)
    grace = pod["terminationGracePeriodSeconds"]
    assert 0 < sleep < drain
    # Kubernetes counts the grace period from the start of preStop; SIGTERM comes after it.
    assert grace > drain + sleep
    assert grace - drain - sleep >= FLUSH_MARGIN_S


def test_probes_do_not_kill_a_draining_or_starting_pod(worker: dict[str, Any]) -> None:
    live, start = worker["livenessProbe"], worker["startupProbe"]
    assert live["httpGet"]["path"] == "/healthz"  # /readyz is 503 while draining: never liveness
    assert start["periodSeconds"] * start["failureThreshold"] >= 120  # model load, larger mounted models


# -- configuration and secrets -----------------------------------------------------------------------


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in parse_dockerfile(DOCKERFILE)[-1].instructions:
        if ins.keyword == "ENV":
            env.update(parse_env(ins.args))
    return env


def converse_envs(pod: dict[str, Any], config: dict[str, str]) -> set[str]:
    names = set(config) | set(dockerfile_env())
    for c in all_containers(pod):
        names |= {e["name"] for e in c.get("env", [])}
    return {n for n in names if n.startswith("CONVERSE_")}


def test_every_converse_variable_is_a_real_setting(pod: dict[str, Any], config: dict[str, str]) -> None:
    unknown = converse_envs(pod, config) - set(SETTING_ENVS)
    assert not unknown, f"not settings in worker/config.py: {sorted(unknown)}"


def test_configmap_holds_every_non_secret_setting_and_no_secret(config: dict[str, str]) -> None:
    non_secret = {s.env for s in SETTINGS if not s.secret}
    missing = non_secret - CONFIGMAP_OPTIONAL - set(config)
    assert not missing, f"settings missing from configmap.yaml: {sorted(missing)}"
    assert not SECRET_ENVS & set(config)
    assert all(k.startswith(("CONVERSE_", "AWS_")) for k in config)
    assert all(isinstance(v, str) for v in config.values())
    for key, value in config.items():
        assert not re.search(r"(?i)(secret|password|token|credential)", key), key
        parts = urlsplit(value) if "://" in value else None
        assert parts is None or parts.password is None, f"{key} carries credentials"
        assert not re.search(r"(?i)(secret|password|access_?key|token)=", value), key


def test_secret_settings_come_from_secrets(
    worker: dict[str, Any], secrets: dict[str, dict[str, Any]]
) -> None:
    env = {e["name"]: e for e in worker["env"]}
    assert SECRET_ENVS <= set(env)
    for name in SECRET_ENVS:
        ref = env[name].get("valueFrom", {}).get("secretKeyRef")
        assert ref is not None and "value" not in env[name], f"{name} must come from a Secret"
        assert ref["key"] in secrets[ref["name"]]["stringData"]
    for source in worker.get("envFrom", []):
        assert set(source) == {"configMapRef"}, "envFrom only for the ConfigMap; secrets key by key"


def test_secret_example_has_only_placeholders(secrets: dict[str, dict[str, Any]]) -> None:
    assert set(secrets) == {"converse-worker-secrets", "converse-worker-kek"}
    for name, doc in secrets.items():
        assert "data" not in doc, f"{name}: base64 data hides what it holds; use stringData placeholders"
        for key, value in doc["stringData"].items():
            assert PLACEHOLDER in value, f"{name}.{key} is not a placeholder"
            assert not re.search(r"[A-Za-z0-9+/=_-]{24,}", value.replace(PLACEHOLDER, "")), key
    # One KEK, one audit signing key and one token issuer key shared by every replica.
    kek_keys = set(secrets["converse-worker-kek"]["stringData"])
    assert kek_keys == {"kek.json", "audit-signing.key", "issuer.key"}
    assert urlsplit(secrets["converse-worker-secrets"]["stringData"]["CONVERSE_DATABASE_URL"]).scheme == (
        "postgresql"
    )


def test_asr_threads_match_the_cpu_limit(worker: dict[str, Any], config: dict[str, str]) -> None:
    res = worker["resources"]
    assert res["requests"]["cpu"] == res["limits"]["cpu"] == "2"
    assert res["requests"]["memory"] == res["limits"]["memory"] == "4Gi"
    assert int(config["CONVERSE_ASR_THREADS"]) == int(res["limits"]["cpu"])


# -- pod security and the key file ---------------------------------------------------------------------


def test_pod_runs_non_root_and_locked_down(pod: dict[str, Any]) -> None:
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] == dockerfile_uid() != 0
    assert psc["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    assert all("hostPath" not in v for v in pod["volumes"])
    for c in all_containers(pod):
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True and sc.get("runAsUser", psc["runAsUser"]) != 0, c["name"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert sc["seccompProfile"]["type"] == "RuntimeDefault", c["name"]
        assert not sc.get("privileged"), c["name"]
        assert not any(p.get("hostPort") for p in c.get("ports", [])), c["name"]


def mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


def test_writable_paths_are_emptydirs(
    pod: dict[str, Any], worker: dict[str, Any], config: dict[str, str]
) -> None:
    volumes = {v["name"]: v for v in pod["volumes"]}
    m = mounts(worker)
    assert "emptyDir" in volumes[m["/tmp"]["name"]]
    data_dir = Path(config["CONVERSE_DATA_DIR"])
    holders = [p for p in m if data_dir == Path(p) or Path(p) in data_dir.parents]
    assert holders, "CONVERSE_DATA_DIR is not on a mounted volume (the root filesystem is read-only)"
    assert "emptyDir" in volumes[m[holders[0]]["name"]]
    assert all("sizeLimit" in v["emptyDir"] for v in volumes.values() if "emptyDir" in v)


def test_kek_reaches_the_worker_owner_only(
    pod: dict[str, Any], worker: dict[str, Any], config: dict[str, str]
) -> None:
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret_volumes = {n for n, v in volumes.items() if "secret" in v}
    (kek_secret,) = secret_volumes
    assert volumes[kek_secret]["secret"]["defaultMode"] == 0o400
    assert volumes[kek_secret]["secret"]["secretName"] == "converse-worker-kek"
    # The worker refuses a key file with group/other bits, and fsGroup turns the Secret's 0400 into
    # 0440 (kubernetes#57923); Secret files are also symlinks, which the worker opens with O_NOFOLLOW.
    # So an init container copies it to an owner-only regular file on a memory emptyDir.
    kek_file = Path(config["CONVERSE_KEK_FILE"])
    assert not any(m["name"] == kek_secret for m in worker["volumeMounts"])
    wm = mounts(worker)[str(kek_file.parent)]
    assert wm["readOnly"] is True, "a missing KEK must not be silently re-created by the worker"
    assert volumes[wm["name"]]["emptyDir"]["medium"] == "Memory"
    (init,) = [c for c in pod["initContainers"] if any(m["name"] == kek_secret for m in c["volumeMounts"])]
    argv = init["command"]
    # install -m 0600 -t <kek dir> <secret files...>: the KEK and the signing keys land beside each other.
    assert argv[:5] == ["install", "-m", "0600", "-t", str(kek_file.parent)]
    sources = [Path(a) for a in argv[5:]]
    assert {p.name for p in sources} == {kek_file.name, "audit-signing.key", "issuer.key"}
    for source in sources:
        assert mounts(init)[str(source.parent)]["name"] == kek_secret
    assert mounts(init)[str(kek_file.parent)]["name"] == wm["name"]


# -- Service, PDB, NetworkPolicy -------------------------------------------------------------------------


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_selectors_and_ports_agree(
    resources: list[dict[str, Any]],
    deployment: dict[str, Any],
    worker: dict[str, Any],
    config: dict[str, str],
) -> None:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], labels)
    assert deployment["spec"]["replicas"] == 2
    svc = find(resources, "Service")
    assert selects(svc["spec"]["selector"], labels)
    assert selects(find(resources, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], labels)
    assert selects(find(resources, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"], labels)
    ports = {p["name"]: p for p in worker["ports"]}
    assert ports["http"]["containerPort"] == int(config["CONVERSE_HTTP_PORT"])
    assert {p["targetPort"] for p in svc["spec"]["ports"]} == {"http"}
    assert config["CONVERSE_HTTP_HOST"] in ("0.0.0.0", "::")  # noqa: S104 (a pod must listen on its IP)
    # A call lives in one pod; affinity must outlast the longest call.
    assert svc["spec"]["sessionAffinity"] == "ClientIP"
    timeout = svc["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"]
    assert timeout > int(config["CONVERSE_MAX_CALL_SECONDS"])


def policy_ports(rules: list[dict[str, Any]]) -> set[tuple[str, int, int]]:
    out = set()
    for rule in rules:
        for p in rule.get("ports", []):
            out.add((p["protocol"], p["port"], p.get("endPort", p["port"])))
    return out


def test_networkpolicy_opens_http_and_udp_and_only_needed_egress(
    resources: list[dict[str, Any]], config: dict[str, str], secrets: dict[str, dict[str, Any]]
) -> None:
    spec = find(resources, "NetworkPolicy")["spec"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    low, high = udp_range(config["CONVERSE_UDP_PORTS"])
    assert high - low + 1 > int(config["CONVERSE_MAX_CALLS"])  # one port per call per local address
    http = int(config["CONVERSE_HTTP_PORT"])
    assert policy_ports(spec["ingress"]) == {("TCP", http, http), ("UDP", low, high)}
    db = urlsplit(secrets["converse-worker-secrets"]["stringData"]["CONVERSE_DATABASE_URL"]).port or 5432
    s3 = urlsplit(urlsplit(config["CONVERSE_OBJECT_STORE_URL"]).query.removeprefix("endpoint="))
    assert urlsplit(config["CONVERSE_OBJECT_STORE_URL"]).scheme == "s3"
    s3_port = s3.port or (443 if s3.scheme == "https" else 80)
    assert policy_ports(spec["egress"]) == {
        ("UDP", 53, 53),
        ("TCP", 53, 53),
        ("TCP", db, db),
        ("TCP", s3_port, s3_port),
    }


def test_host_network_overlay() -> None:
    merged = overlay_deployment()
    spec = merged["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    (term,) = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["labelSelector"]["matchLabels"], merged["spec"]["template"]["metadata"]["labels"])
    assert merged["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0  # a surge pod would need a spare node


# -- Dockerfile ---------------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def parse_dockerfile(path: Path) -> list[Stage]:
    """Dockerfile -> stages of (KEYWORD, arguments), with comments dropped and continuations joined."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments (and the syntax directive); also skipped inside continuations
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends inside a line continuation"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append(Instruction(keyword, args.strip()))
    return stages


def parse_env(args: str) -> dict[str, str]:
    words = shlex.split(args)
    assert all("=" in w for w in words), f"use ENV KEY=VALUE: {args}"
    return dict(w.split("=", 1) for w in words)


def instructions(stage: Stage, keyword: str) -> list[Instruction]:
    return [i for i in stage.instructions if i.keyword == keyword]


def dockerfile_uid() -> int:
    (user,) = instructions(parse_dockerfile(DOCKERFILE)[-1], "USER")
    uid = user.args.split(":")[0]
    assert uid.isdigit(), "USER must be numeric so runAsNonRoot can verify it"
    return int(uid)


def test_dockerfile_is_multi_stage_on_a_pinned_slim_base() -> None:
    stages = parse_dockerfile(DOCKERFILE)
    assert len(stages) >= 2
    assert all(s.base == BASE_IMAGE or s.base.startswith(BASE_IMAGE + "@sha256:") for s in stages)
    builder = stages[0]
    assert builder.name == "builder"
    assert any("pip wheel" in i.args for i in instructions(builder, "RUN"))
    final = stages[-1]
    assert final.name is None
    assert any("from=builder" in i.args and "--no-index" in i.args for i in instructions(final, "RUN"))
    assert not instructions(final, "ADD")


def test_dockerfile_builds_every_package_of_the_project() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        include = tomllib.load(f)["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [p.rstrip("*") for p in include]
    copied = {shlex.split(i.args)[0] for i in instructions(parse_dockerfile(DOCKERFILE)[0], "COPY")}
    assert set(packages) | {"pyproject.toml"} <= copied
    ignore = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    assert next(line for line in ignore if line and not line.startswith("#")) == "*"
    assert {f"!{p}/" for p in packages} | {"!pyproject.toml"} <= set(ignore)


def test_dockerfile_runs_non_root_with_the_worker_entrypoint() -> None:
    final = parse_dockerfile(DOCKERFILE)[-1]
    order = [i.keyword for i in final.instructions]
    assert dockerfile_uid() == 10001
    assert order.index("USER") < order.index("ENTRYPOINT")
    assert order.index("USER") > max(i for i, k in enumerate(order) if k == "RUN")
    assert json.loads(instructions(final, "ENTRYPOINT")[0].args) == ["converse-worker"]
    assert json.loads(instructions(final, "CMD")[0].args) == ["serve"]
    assert [i.args for i in instructions(final, "STOPSIGNAL")] == ["SIGTERM"]
    (health,) = instructions(final, "HEALTHCHECK")
    options, _, command = health.args.partition(" CMD ")
    assert all(o.startswith("--") for o in options.split())
    argv = json.loads(command)  # exec form: no shell needed in the probe
    assert argv[:2] == ["python", "-c"] and "/healthz" in argv[2]
    compile(argv[2], "HEALTHCHECK", "exec")


def test_dockerfile_env_and_ports() -> None:
    final = parse_dockerfile(DOCKERFILE)[-1]
    env = dockerfile_env()
    assert env["CONVERSE_HTTP_HOST"] == "0.0.0.0"  # noqa: S104 (a container must listen on its interface)
    assert env["CONVERSE_DATA_DIR"] == "/var/lib/converse"
    for name in env:
        assert name not in SECRET_ENVS, f"secret {name} baked into the image"
        assert not re.search(r"(?i)(token|secret|password|credential|access_key|database_url)", name), name
        if name.startswith("CONVERSE_"):
            assert not SETTING_ENVS[name].secret
    exposed = {w for i in instructions(final, "EXPOSE") for w in i.args.split()}
    low, high = udp_range(env["CONVERSE_UDP_PORTS"])
    assert exposed == {f"{env['CONVERSE_HTTP_PORT']}/tcp", f"{low}-{high}/udp"}


def test_deployment_docs_cover_the_essentials() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for needle in (
        "docker build",
        "kubectl apply -k deploy/k8s",
        "CONVERSE_MODEL_PATH",
        "CONVERSE_DATABASE_URL",
        "postgresql://",
        "CONVERSE_OBJECT_STORE_URL",
        "s3://",
        "CONVERSE_DRAIN_SECONDS",
        "terminationGracePeriodSeconds",
        "hostNetwork",
        "CONVERSE_UDP_PORTS",
    ):
        assert needle in text, f"docs/deployment.md does not mention {needle}"
