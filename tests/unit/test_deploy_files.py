"""Static checks of the deployment files: Dockerfile, .dockerignore, deploy/compose.yaml,
the compose Prometheus config, Grafana provisioning and the Kubernetes manifests.

No container engine runs here: the files are parsed and cross-checked (paths exist,
ports and names agree, settings are real ``CRM_KPI_*`` settings, the simulator and worker
commands parse with the real CLI). ``docker compose config`` runs when the compose
plugin is installed; without it the test says so and is skipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer

from streams.cli import app as cli_app
from streams.settings import Settings, load_settings

try:
    import yaml
except ImportError:  # pragma: no cover - only without the dev extras
    yaml = None

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
PROMETHEUS_COMPOSE = DEPLOY / "prometheus" / "prometheus.compose.yml"
K8S = DEPLOY / "k8s"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
GRAFANA_PROVISIONING = ROOT / "grafana" / "provisioning"
JOB = "crm-kpi-worker"
METRICS_PORT = 9108


def load_yaml_documents(path: Path) -> list[Any]:
    if yaml is None:
        pytest.fail("PyYAML is missing: install the dev extras (pip install -e '.[dev]')", pytrace=False)
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def load_yaml(path: Path) -> Any:
    documents = load_yaml_documents(path)
    assert len(documents) == 1, f"{path}: expected one YAML document"
    return documents[0]


@cache
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def k8s_objects() -> dict[str, dict[str, Any]]:
    objects = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in load_yaml_documents(path):
            objects[document["kind"]] = document
    return objects


def yaml_files() -> list[Path]:
    patterns = ("*.yml", "*.yaml")
    found = {p for base in (DEPLOY, GRAFANA_PROVISIONING) for pattern in patterns for p in base.rglob(pattern)}
    return sorted(found)


def settings_field(variable: str) -> str:
    assert variable.startswith("CRM_KPI_"), variable
    return variable.removeprefix("CRM_KPI_").lower()


def parse_cli(args: list[str]) -> None:
    """Parse a ``crm-kpi`` command line with the real CLI without running it."""
    command = typer.main.get_command(cli_app)
    subcommand = command.commands[args[0]]  # type: ignore[attr-defined]
    subcommand.make_context(args[0], list(args[1:]))


# --- every YAML file ------------------------------------------------------------------------


def test_there_are_yaml_files_to_check() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in yaml_files()}
    assert {"deploy/compose.yaml", "deploy/prometheus/prometheus.compose.yml",
            "grafana/provisioning/datasources/prometheus.yml",
            "grafana/provisioning/dashboards/crm-kpi.yml"} <= names


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_yaml_parses(path: Path) -> None:
    assert load_yaml_documents(path), f"{path} is empty"


# --- Dockerfile -------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines if line and not line.startswith("#")
    ]


def test_dockerfile_builds_a_non_root_worker_image() -> None:
    instructions = dockerfile_instructions()
    by_name: dict[str, list[str]] = {}
    for name, argument in instructions:
        by_name.setdefault(name, []).append(argument)
    assert by_name["FROM"] == ["python:3.11-slim"]
    assert instructions[0][0] == "FROM"
    assert by_name["ENTRYPOINT"] == ['["crm-kpi"]']
    assert by_name["CMD"] == ['["worker"]']
    users = by_name.get("USER", [])
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must not run as root"
    assert str(METRICS_PORT) in by_name["EXPOSE"][0].split()
    assert any("/healthz" in argument for argument in by_name["HEALTHCHECK"])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "crm-kpi" in scripts, "ENTRYPOINT crm-kpi must be a console script of the package"
    for argument in by_name["COPY"]:
        for source in argument.split()[:-1]:
            if not source.startswith("--"):
                assert (ROOT / source).exists(), f"COPY source missing: {source}"


def test_dockerignore_keeps_what_the_build_copies() -> None:
    ignored = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for needed in ("pyproject.toml", "README.md", "streams"):
        assert needed not in ignored
    for heavy in (".venv", ".git", ".cache"):
        assert heavy in ignored


# --- docker compose ------------------------------------------------------------------------------


def test_compose_has_the_whole_stack() -> None:
    assert set(services()) >= {"kafka", "worker-1", "worker-2", "simulator", "prometheus", "alertmanager", "grafana"}
    assert services()["kafka"]["image"] == "apache/kafka:4.1.1"
    environment = services()["kafka"]["environment"]
    assert "broker,controller" in environment["KAFKA_PROCESS_ROLES"]  # KRaft, single node
    assert "PLAINTEXT://kafka:9092" in environment["KAFKA_ADVERTISED_LISTENERS"]
    assert services()["prometheus"]["image"].startswith("prom/prometheus:")
    assert services()["alertmanager"]["image"].startswith("prom/alertmanager:")
    assert services()["grafana"]["image"].startswith("grafana/grafana:")


def test_compose_paths_exist() -> None:
    for name, service in services().items():
        build = service.get("build")
        if build:
            context = (DEPLOY / build["context"]).resolve()
            assert context.is_dir(), f"{name}: build context {context}"
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: volume source {source} missing"
            else:
                assert source in (compose().get("volumes") or {}), f"{name}: undeclared volume {source}"
        for dependency in service.get("depends_on", []):
            assert dependency in services(), f"{name} depends on unknown {dependency}"


def test_compose_workers_and_simulator() -> None:
    workers = [services()[name] for name in ("worker-1", "worker-2")]
    for worker in workers:
        assert worker["build"]["dockerfile"] == "Dockerfile"
        environment = worker["environment"]
        assert environment["CRM_KPI_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert environment["CRM_KPI_METRICS_HOST"] == "0.0.0.0"
        fields = {settings_field(variable): value for variable, value in environment.items()}
        assert set(fields) <= set(Settings.model_fields), "unknown CRM_KPI_* setting"
        load_settings(**fields)  # valid values (raises ConfigError otherwise)
        parse_cli(worker["command"])
    assert workers[0]["environment"]["CRM_KPI_APP_ID"] == workers[1]["environment"]["CRM_KPI_APP_ID"]
    host_ports = [port for service in services().values() for port in service.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), "two services publish the same host port"
    simulator = services()["simulator"]
    command = simulator["command"]
    assert command[0] == "simulate"
    assert command[command.index("--bootstrap") + 1] == "kafka:9092"
    assert command[command.index("--speedup") + 1] == "60"
    assert simulator["image"] == workers[0]["image"]
    parse_cli(command)


def test_compose_prometheus_scrapes_the_workers_and_loads_the_rules() -> None:
    prometheus = services()["prometheus"]
    mounts = dict(volume.split(":")[:2] for volume in prometheus["volumes"] if volume.startswith("."))
    assert mounts["./prometheus/prometheus.compose.yml"] == "/etc/prometheus/prometheus.yml"
    assert mounts["./prometheus/rules"] == "/etc/prometheus/rules"
    config = load_yaml(PROMETHEUS_COMPOSE)
    assert config["rule_files"] == ["rules/*.yml"]
    assert sorted((PROMETHEUS_COMPOSE.parent / "rules").glob("*.yml")), "no rule files"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for group in jobs[JOB]["static_configs"] for t in group["targets"]]
    assert targets == ["worker-1:9108", "worker-2:9108"]
    for target in targets:
        host, port = target.split(":")
        assert host in services()
        assert services()[host]["environment"]["CRM_KPI_METRICS_PORT"] == port
    alertmanagers = [t for am in config["alerting"]["alertmanagers"] for g in am["static_configs"] for t in g["targets"]]
    assert alertmanagers == ["alertmanager:9093"]


def test_compose_prometheus_config_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: install Debian's prometheus (apt-get install -y prometheus)", pytrace=False)
    result = subprocess.run([promtool, "check", "config", str(PROMETHEUS_COMPOSE.relative_to(ROOT))],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_alertmanager_and_grafana_mounts() -> None:
    alertmanager = services()["alertmanager"]
    assert any(v.startswith("./alertmanager/alertmanager.yml:") for v in alertmanager["volumes"])
    grafana = services()["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"] if volume.startswith("."))
    provider = load_yaml(GRAFANA_PROVISIONING / "dashboards" / "crm-kpi.yml")["providers"][0]
    assert mounts["../grafana/dashboards"] == provider["options"]["path"]
    assert mounts["../grafana/provisioning/datasources"] == "/etc/grafana/provisioning/datasources"
    assert mounts["../grafana/provisioning/dashboards"] == "/etc/grafana/provisioning/dashboards"
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    home = grafana["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert home.startswith(provider["options"]["path"] + "/")
        assert (ROOT / "grafana" / "dashboards" / Path(home).name).is_file()
    datasource = load_yaml(GRAFANA_PROVISIONING / "datasources" / "prometheus.yml")["datasources"][0]
    host = re.match(r"https?://([^:/]+)", datasource["url"]).group(1)
    assert host in services()


def test_docker_compose_config_when_the_plugin_is_available() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker CLI not installed: `docker compose config` not run (static checks above still apply)")
    result = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "-q"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 and re.search(r"unknown (command|shorthand flag)|is not a docker command", output):
        pytest.skip(f"docker compose plugin missing ({output.splitlines()[0] if output else 'no output'}): "
                    "`docker compose config` not run (static checks above still apply)")
    assert result.returncode == 0, output


# --- Kubernetes -------------------------------------------------------------------------------------


def test_k8s_manifests_are_complete() -> None:
    for path in sorted(K8S.glob("*.yaml")):
        for document in load_yaml_documents(path):
            assert document.get("apiVersion"), path
            assert document.get("kind"), path
            if document["kind"] != "Kustomization":
                assert document.get("metadata", {}).get("name"), path
    assert set(k8s_objects()) == {"ConfigMap", "Deployment", "Service", "PodMonitor"}
    assert k8s_objects()["PodMonitor"]["apiVersion"] == "monitoring.coreos.com/v1"
    kustomization = load_yaml(K8S / "kustomization.yaml")
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    assert (K8S / "README.md").is_file()


def test_k8s_deployment_service_and_podmonitor_agree() -> None:
    objects = k8s_objects()
    deployment, service, monitor, config = (objects[k] for k in ("Deployment", "Service", "PodMonitor", "ConfigMap"))
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod_labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    container = spec["template"]["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"metrics": METRICS_PORT}
    assert [ref["configMapRef"]["name"] for ref in container["envFrom"]] == [config["metadata"]["name"]]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz", probe
        assert container[probe]["httpGet"]["port"] in ("metrics", METRICS_PORT), probe
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True

    assert service["spec"]["selector"].items() <= pod_labels.items()
    service_port = service["spec"]["ports"][0]
    assert service_port["port"] == METRICS_PORT
    assert service_port["targetPort"] in ("metrics", METRICS_PORT)

    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
    # the rules and dashboards select job="crm-kpi-worker"
    assert pod_labels[monitor["spec"]["jobLabel"]] == JOB

    data = config["data"]
    assert int(data["CRM_KPI_METRICS_PORT"]) == ports["metrics"]
    assert data["CRM_KPI_METRICS_HOST"] == "0.0.0.0"
    fields = {settings_field(variable): value for variable, value in data.items()}
    assert set(fields) <= set(Settings.model_fields), "unknown CRM_KPI_* setting in the ConfigMap"
    load_settings(**fields)
    parse_cli(container["args"])
