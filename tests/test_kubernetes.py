"""deploy/kubernetes: valid manifests for Kubernetes 1.30 to 1.37, consistent with the service.

Each answer set is one the matrix renders anyway (tests/matrix.py), so the renderings are shared.
The manifests are validated offline against both ends of the supported range (kubernetes-validate
ships the schemas), then checked against what the rendered service reads: its settings (parsed
from app/settings.py, no virtual environment needed), its probe paths and ports, its shutdown
timeouts, and its connection budget at the autoscaler's maximum.
"""

import ast
import configparser
import importlib.util
import math
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.conftest import Render
from tests.matrix import COMBINATIONS

KUBERNETES_VERSIONS = ["1.30", "1.37"]
POSTGRESQL_DRIVERS = {"sqlalchemy-asyncpg", "asyncpg", "sqlalchemy-psycopg"}
# The servers' default max_connections, which the defaults must fit with room to spare.
MAX_CONNECTIONS = {"postgresql": 100, "mysql": 151}
# Seconds the API's grace period keeps beyond preStop + SERVER__GRACEFUL_TIMEOUT, for closing
# pools and a trace export to a collector that is down.
SHUTDOWN_MARGIN_SECONDS = 5
HEARTBEAT_PROBE = ["python", "-m", "app.worker_heartbeat"]


def matrix_answers(**wanted: str) -> dict[str, str]:
    """The matrix's answer set that is exactly these answers (so its rendering is shared)."""
    return next(answers for answers in COMBINATIONS if answers == wanted)


# The defaults on PostgreSQL (arq, Redis cache, metrics, tracing, the PgBouncer component); Celery
# on raw asyncpg; MariaDB (no PgBouncer, another connection limit); no database at all.
RENDERED = [
    matrix_answers(db_driver="sqlalchemy-asyncpg"),
    matrix_answers(db_driver="asyncpg", queue="celery"),
    matrix_answers(db_driver="sqlalchemy-asyncmy", queue="celery"),
    matrix_answers(db_driver="none"),
]
SQLITE = next(
    answers for answers in COMBINATIONS if answers.get("db_driver") == "sqlalchemy-aiosqlite"
)


def answer_id(answers: dict[str, str]) -> str:
    return "-".join(answers.values())


class SettingsSource:
    """The environment names and defaults of a rendered app/settings.py, read with ast."""

    def __init__(self, path: Path) -> None:
        tree = ast.parse(path.read_text())
        self.classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}

    def _fields(self, class_name: str) -> dict[str, ast.AnnAssign]:
        return {
            node.target.id: node
            for node in self.classes[class_name].body
            if isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id != "model_config"
        }

    def env_names(self, class_name: str = "Settings", prefix: str = "") -> set[str]:
        """As pydantic-settings reads them: nested models with `__`, nested BaseSettings flat."""
        names = set()
        for name, node in self._fields(class_name).items():
            annotation = node.annotation
            nested = annotation.id if isinstance(annotation, ast.Name) else None
            if nested in self.classes:
                bases = {
                    base.id for base in self.classes[nested].bases if isinstance(base, ast.Name)
                }
                if "BaseSettings" in bases:
                    names |= self.env_names(nested)
                else:
                    names |= self.env_names(nested, f"{prefix}{name.upper()}__")
            else:
                names.add(f"{prefix}{name.upper()}")
        return names

    def default(self, class_name: str, field: str) -> Any:
        value = self._fields(class_name)[field].value
        if isinstance(value, ast.Call):
            value = next(keyword.value for keyword in value.keywords if keyword.arg == "default")
        assert value is not None
        return ast.literal_eval(value)


@dataclass
class Deployment:
    """The rendered deploy/kubernetes of one project, and the project around it."""

    project: Path

    @property
    def root(self) -> Path:
        return self.project / "deploy" / "kubernetes"

    @cached_property
    def manifests(self) -> dict[Path, list[dict[str, Any]]]:
        """Every Kubernetes object, by file (kustomization.yaml files are not objects)."""
        return {
            path: [document for document in yaml.safe_load_all(path.read_text()) if document]
            for path in sorted(self.root.rglob("*.yaml"))
            if path.name != "kustomization.yaml"
        }

    def objects(self, kind: str) -> list[dict[str, Any]]:
        return [
            document
            for documents in self.manifests.values()
            for document in documents
            if document["kind"] == kind
        ]

    def one(self, kind: str, component: str) -> dict[str, Any]:
        [found] = [
            document
            for document in self.objects(kind)
            if document["metadata"]["labels"]["app.kubernetes.io/component"] == component
        ]
        return found

    @cached_property
    def kustomizations(self) -> dict[Path, dict[str, Any]]:
        return {
            path.parent: yaml.safe_load(path.read_text())
            for path in sorted(self.root.rglob("kustomization.yaml"))
        }

    @cached_property
    def config(self) -> dict[str, str]:
        """base/config.env, which the base's configMapGenerator turns into the ConfigMap."""
        lines = (self.root / "base" / "config.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))

    @cached_property
    def settings(self) -> SettingsSource:
        return SettingsSource(self.project / "app" / "settings.py")

    def setting(self, env_name: str, class_name: str, field: str) -> Any:
        """A setting as the pods get it: from config.env, else the settings' default."""
        if env_name in self.config:
            return type(self.settings.default(class_name, field))(self.config[env_name])
        return self.settings.default(class_name, field)


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    return containers


def cpus(quantity: str) -> float:
    """A Kubernetes CPU quantity ("1", "1.5", "500m") in CPUs."""
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def load_module(path: Path) -> Any:
    """A dependency-free module of the rendered project, imported from its file."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=RENDERED, ids=answer_id)
def deployment(request: pytest.FixtureRequest, render: Render) -> Deployment:
    return Deployment(render(**request.param))


def answers_of(deployment: Deployment) -> dict[str, str]:
    """The stored answers, and the computed queue_backend that copier.yml derives from them."""
    answers: dict[str, str] = yaml.safe_load(
        (deployment.project / ".copier-answers.yml").read_text()
    )
    no_database = answers["db_driver"] == "none"
    return {**answers, "queue_backend": "none" if no_database else answers["queue"]}


def test_every_manifest_is_valid_for_the_oldest_and_newest_supported_kubernetes(
    deployment: Deployment,
) -> None:
    documents = [document for found in deployment.manifests.values() for document in found]

    assert len(documents) >= 4
    for version in KUBERNETES_VERSIONS:
        for document in documents:
            # Strict: a misspelt or misplaced field is an error, not a field the API drops.
            kubernetes_validate.validate(document, version, strict=True)


def test_the_native_pre_stop_sleep_is_why_1_30_is_the_oldest(deployment: Deployment) -> None:
    api = deployment.one("Deployment", "api")

    with pytest.raises(kubernetes_validate.ValidationError, match="sleep"):
        kubernetes_validate.validate(api, "1.28", strict=True)


def test_each_kustomization_lists_exactly_the_files_beside_it(deployment: Deployment) -> None:
    assert set(deployment.kustomizations) >= {
        deployment.root / "base",
        deployment.root / "overlays" / "production",
    }
    for directory, kustomization in deployment.kustomizations.items():
        listed = set(kustomization.get("resources", []))
        for generator in kustomization.get("configMapGenerator", []):
            listed |= set(generator.get("files", [])) | set(generator.get("envs", []))
        files = {path.name for path in directory.iterdir() if path.name != "kustomization.yaml"}

        assert {name for name in listed if "/" not in name} == files, directory
        for reference in [*listed, *kustomization.get("components", [])]:
            if "/" in reference:
                assert (directory / reference / "kustomization.yaml").is_file(), reference


def test_labels_never_reach_selectors(deployment: Deployment) -> None:
    for directory, kustomization in deployment.kustomizations.items():
        assert "commonLabels" not in kustomization, directory
        for labels in kustomization.get("labels", []):
            assert labels["includeSelectors"] is False, directory


def test_the_api_is_probed_and_served_where_the_app_listens(deployment: Deployment) -> None:
    [api] = containers(deployment.one("Deployment", "api"))
    ports = {port["name"]: port["containerPort"] for port in api["ports"]}
    health = (deployment.project / "app" / "health.py").read_text()

    assert ports["http"] == int(deployment.config["PORT"]) == 8000
    assert deployment.settings.default("Settings", "port") == 8000
    assert "PORT=8000" in (deployment.project / "Dockerfile").read_text()
    assert 'LIVEZ, READYZ = "/livez", "/readyz"' in health
    assert api["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    [service_port] = deployment.one("Service", "api")["spec"]["ports"]
    assert service_port["targetPort"] == "http"
    if answers_of(deployment)["metrics"] == "prometheus":
        assert ports["metrics"] == int(deployment.config["METRICS__PORT"]) == 9464
        annotations = deployment.one("Deployment", "api")["spec"]["template"]["metadata"][
            "annotations"
        ]
        assert annotations["prometheus.io/port"] == "9464"
    else:
        assert "metrics" not in ports


def env_names_used(deployment: Deployment) -> set[str]:
    """Every environment name the manifests set, read from a Secret, or leave commented out."""
    names = set()
    for line in (deployment.root / "base" / "config.env").read_text().splitlines():
        match = re.fullmatch(r"(?:# )?([A-Z][A-Z0-9_]*)=.*", line)
        if match:
            names.add(match.group(1))
    for kind in ("Deployment", "Job"):
        for workload in deployment.objects(kind):
            if workload["metadata"]["name"].endswith("-pgbouncer"):
                continue
            for container in containers(workload):
                for variable in container.get("env", []):
                    names.add(variable["name"])
                    secret = variable.get("valueFrom", {}).get("secretKeyRef")
                    if secret:
                        names.add(secret["key"])
    for kustomization in deployment.kustomizations.values():
        for generator in kustomization.get("configMapGenerator", []):
            names |= {literal.split("=", 1)[0] for literal in generator.get("literals", [])}
    return names


def test_every_environment_name_is_a_setting_of_the_service(deployment: Deployment) -> None:
    used = env_names_used(deployment)

    assert {"PORT", "WEB_CONCURRENCY", "SERVER__GRACEFUL_TIMEOUT"} <= used
    assert not used - deployment.settings.env_names()


def test_workers_follow_the_cpu_request_not_the_nodes_cores(deployment: Deployment) -> None:
    [api] = containers(deployment.one("Deployment", "api"))
    [concurrency] = [variable for variable in api["env"] if variable["name"] == "WEB_CONCURRENCY"]

    assert concurrency["valueFrom"]["resourceFieldRef"] == {
        "containerName": api["name"],
        "resource": "requests.cpu",
        "divisor": "1",
    }
    assert "WEB_CONCURRENCY" not in deployment.config
    assert cpus(api["resources"]["requests"]["cpu"]) >= 1
    assert api["resources"]["requests"]["memory"]


def test_the_grace_periods_hold_the_shutdowns(deployment: Deployment) -> None:
    api = deployment.one("Deployment", "api")
    [container] = containers(api)
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    graceful = deployment.setting("SERVER__GRACEFUL_TIMEOUT", "ServerSettings", "graceful_timeout")

    assert pre_stop >= 5
    assert api["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= (
        pre_stop + graceful + SHUTDOWN_MARGIN_SECONDS
    )
    if answers_of(deployment)["queue_backend"] != "none":
        worker = deployment.one("Deployment", "worker")
        shutdown = deployment.setting(
            "QUEUE__SHUTDOWN_TIMEOUT", "QueueSettings", "shutdown_timeout"
        )
        assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > shutdown


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_the_autoscaler_budget_and_service_select_the_api_pods(deployment: Deployment) -> None:
    api = deployment.one("Deployment", "api")
    autoscaler = deployment.one("HorizontalPodAutoscaler", "api")
    budget = deployment.one("PodDisruptionBudget", "api")
    service = deployment.one("Service", "api")
    others = [
        workload
        for kind in ("Deployment", "Job")
        for workload in deployment.objects(kind)
        if workload is not api
    ]

    # The autoscaler owns the count: a replicas field would reset it on every apply.
    assert "replicas" not in api["spec"]
    assert autoscaler["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": api["metadata"]["name"],
    }
    assert 2 <= autoscaler["spec"]["minReplicas"] < autoscaler["spec"]["maxReplicas"]
    # Not 0, which blocks every node drain; stuck pods may always go.
    assert budget["spec"]["maxUnavailable"] >= 1
    assert "minAvailable" not in budget["spec"]
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert api["spec"]["selector"]["matchLabels"] == budget["spec"]["selector"]["matchLabels"]
    for selector in [
        api["spec"]["selector"]["matchLabels"],
        budget["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"],
    ]:
        assert selects(selector, pod_labels(api))
        assert not any(selects(selector, pod_labels(other)) for other in others)


def test_the_connection_budget_holds_at_maximum_scale(deployment: Deployment) -> None:
    answers = answers_of(deployment)
    if answers["db_driver"] == "none":
        assert not any(name.startswith("DB__") for name in deployment.config)
        return
    [api] = containers(deployment.one("Deployment", "api"))
    replicas = deployment.one("HorizontalPodAutoscaler", "api")["spec"]["maxReplicas"]
    budget = deployment.setting("DB__CONNECTION_BUDGET", "DatabaseSettings", "connection_budget")
    # WEB_CONCURRENCY: the request in whole CPUs, rounded up as the Downward API does.
    workers = math.ceil(cpus(api["resources"]["requests"]["cpu"]))
    pool_budget = load_module(deployment.project / "app" / "pool_budget.py")

    assert int(deployment.config["DB__REPLICAS"]) == replicas
    pool = pool_budget.pool_size_for(budget, workers, replicas)
    assert pool >= 1
    assert workers * replicas * pool <= budget
    # Beside it: every worker pod's own pool, and the migration Job's one connection.
    worker_connections = 0
    if answers["queue_backend"] != "none":
        per_process = deployment.setting("QUEUE__DB_POOL_SIZE", "QueueSettings", "db_pool_size")
        processes = 1
        if answers["queue_backend"] == "celery":
            processes = deployment.setting("QUEUE__CONCURRENCY", "QueueSettings", "concurrency")
        worker_replicas = deployment.one("Deployment", "worker")["spec"]["replicas"]
        worker_connections = worker_replicas * processes * per_process
    family = "mysql" if answers["db_driver"] == "sqlalchemy-asyncmy" else "postgresql"
    assert budget + worker_connections + 1 <= MAX_CONNECTIONS[family] // 2


def test_the_migration_job_connects_to_the_database_itself(deployment: Deployment) -> None:
    answers = answers_of(deployment)
    jobs = deployment.objects("Job")
    if answers["db_driver"] == "none":
        assert not jobs
        return
    [job] = jobs
    [container] = containers(job)
    keys = {
        variable["name"]: variable["valueFrom"]["secretKeyRef"]["key"]
        for variable in container["env"]
    }

    assert container["command"] == ["alembic", "upgrade", "head"]
    assert keys["MIGRATION_DATABASE_URL"] == "MIGRATION_DATABASE_URL"
    # Nothing reaches it from the pooled URL.
    assert set(keys.values()) == {"MIGRATION_DATABASE_URL"}
    assert "pgbouncer" not in yaml.safe_dump(job)
    # The pods' settings do, DB__PGBOUNCER and DB__STATEMENT_TIMEOUT among them: behind PgBouncer
    # the run sets the statement timeout the pooled service cannot send when it connects.
    [api] = containers(deployment.one("Deployment", "api"))
    assert container["envFrom"] == api["envFrom"]
    # A release applies the Job and that ConfigMap first (README): the one label selects both.
    [generator] = deployment.kustomizations[deployment.root / "base"]["configMapGenerator"]
    assert generator["options"]["labels"]["app.kubernetes.io/component"] == "config"
    assert (
        "-l 'app.kubernetes.io/component in (config,migrate)'"
        in (deployment.project / "README.md").read_text()
    )
    # Applied again with the next release's image, it must not collide with the finished one.
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_the_pgbouncer_component_pools_transactions_for_postgresql(
    deployment: Deployment,
) -> None:
    answers = answers_of(deployment)
    component = deployment.root / "components" / "pgbouncer"
    if answers["db_driver"] not in POSTGRESQL_DRIVERS:
        assert not (deployment.root / "components").exists()
        overlay = deployment.root / "overlays" / "production" / "kustomization.yaml"
        assert "pgbouncer" not in overlay.read_text()
        return
    kustomization = deployment.kustomizations[component]
    base = deployment.kustomizations[deployment.root / "base"]
    [config] = base["configMapGenerator"]
    [merged] = [
        generator
        for generator in kustomization["configMapGenerator"]
        if generator["name"] == config["name"]
    ]
    ini = configparser.ConfigParser(comment_prefixes=(";",), interpolation=None)
    ini.read_string((component / "pgbouncer.ini").read_text())
    [pgbouncer] = containers(deployment.one("Deployment", "pgbouncer"))

    assert kustomization["kind"] == "Component"
    assert merged["behavior"] == "merge"
    assert merged["literals"] == ["DB__PGBOUNCER=true"]
    assert ini["pgbouncer"]["pool_mode"] == "transaction"
    # A pinned release, not a moving tag.
    assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+", pgbouncer["image"])
    service = deployment.one("Service", "pgbouncer")
    assert (
        f"@{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/"
        in (component / "kustomization.yaml").read_text()
    )
    # Offered, commented out, in the production overlay.
    overlay = deployment.root / "overlays" / "production" / "kustomization.yaml"
    assert "#   - ../../components/pgbouncer\n" in overlay.read_text()
    # Every database request goes through it: drains take one pod at a time.
    budget = deployment.one("PodDisruptionBudget", "pgbouncer")
    pooler = deployment.one("Deployment", "pgbouncer")
    assert pooler["spec"]["replicas"] > budget["spec"]["maxUnavailable"]
    assert selects(budget["spec"]["selector"]["matchLabels"], pod_labels(pooler))


def test_the_worker_has_a_liveness_probe_of_its_own_pod(deployment: Deployment) -> None:
    answers = answers_of(deployment)
    workers = [
        workload
        for workload in deployment.objects("Deployment")
        if workload["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    ]
    heartbeat = deployment.project / "app" / "worker_heartbeat.py"
    if answers["queue_backend"] == "none":
        assert not workers
        assert not heartbeat.exists()
        return
    [worker] = workers
    [container] = containers(worker)
    tmp = {mount["mountPath"] for mount in container["volumeMounts"]}

    assert container["command"] == ["worker"]
    assert container["livenessProbe"]["exec"]["command"] == HEARTBEAT_PROBE
    assert container["startupProbe"]["exec"]["command"] == HEARTBEAT_PROBE
    assert heartbeat.is_file()
    assert 'if __name__ == "__main__":\n    main()' in heartbeat.read_text()
    # The file is where the pod may write, and each probe waits longer than it beats.
    assert str(Path(deployment.config["QUEUE__HEARTBEAT_FILE"]).parent) in tmp
    interval = float(deployment.config["QUEUE__HEARTBEAT_INTERVAL"])
    assert container["livenessProbe"]["periodSeconds"] > interval
    # Drains take one worker pod at a time, and never wait for one that is not live.
    budget = deployment.one("PodDisruptionBudget", "worker")
    assert selects(budget["spec"]["selector"]["matchLabels"], pod_labels(worker))
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    # Nothing connects to a worker.
    assert not any(
        selects(service["spec"]["selector"], pod_labels(worker))
        for service in deployment.objects("Service")
    )
    if answers["metrics"] == "prometheus":
        [port] = container["ports"]
        assert port == {"name": "metrics", "containerPort": 9465}
        assert deployment.config["METRICS__WORKER_PORT"] == "9465"


def test_every_pod_runs_unprivileged_on_a_read_only_filesystem(deployment: Deployment) -> None:
    image = answers_of(deployment)["project_slug"]
    dockerfile = (deployment.project / "Dockerfile").read_text()
    [user] = re.findall(r"^USER (\d+):\d+$", dockerfile, re.MULTILINE)
    workloads = [*deployment.objects("Deployment"), *deployment.objects("Job")]

    assert workloads
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"]["drop"] == ["ALL"]
            resources = container["resources"]
            assert resources["requests"]["cpu"]
            assert resources["limits"]["memory"] == resources["requests"]["memory"]
            if container["image"] == image:
                assert pod["securityContext"]["runAsUser"] == int(user)
                assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]  # noqa: S108


def test_sqlite_projects_get_no_kubernetes_manifests(render: Render) -> None:
    # One file on one node's volume: no second pod, autoscaler or separate migration Job could
    # share it, so the manifests would describe none of what they promise.
    project = render(**SQLITE)

    assert (project / "deploy").is_dir()
    assert not (project / "deploy" / "kubernetes").exists()
