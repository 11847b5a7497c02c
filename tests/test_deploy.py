"""deploy/: the Dockerfile, Compose, HAProxy and Kubernetes files, checked without containers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

BIN = Path(sys.executable).parent / "crossroads"  # as tests/harness.py
ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
DATA_DIR = "/var/lib/crossroads"


def load(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True)


def kube(kind: str, name: str | None = None) -> dict[str, Any]:
    objects = [d for f in sorted(KUBE.glob("*.yaml")) for d in load(f) if d.get("kind") == kind]
    (found,) = [d for d in objects if name in (None, d["metadata"]["name"])]
    return dict(found)


def flags(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if a.startswith("--")]


def flag_value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def dockerfile_exec(instruction: str) -> list[str]:
    (line,) = re.findall(rf"^{instruction} (.*)$", (DEPLOY / "Dockerfile").read_text(), re.M)
    return list(json.loads(line))


def compose() -> dict[str, Any]:
    return dict(load(DEPLOY / "compose.yaml")[0])


def replicas() -> dict[str, dict[str, Any]]:
    return {k: v for k, v in compose()["services"].items() if k.startswith("crossroads-")}


def container() -> dict[str, Any]:
    return dict(kube("StatefulSet")["spec"]["template"]["spec"]["containers"][0])


def test_every_yaml_file_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 9 and all(load(path) for path in files)


def test_dockerfile() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+$", text, re.M)
    assert re.search(r"^USER 10001", text, re.M) and "EXPOSE 8080" in text
    assert "pip install --no-cache-dir ." in text and "/health/live" in text
    assert dockerfile_exec("ENTRYPOINT") == ["crossroads", "serve", "--host", "0.0.0.0"]
    assert "MANAGEMENT_KEY" not in text and "API_KEY" not in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "data", "**/*.env", ".pytest_cache"} <= set(ignored)


def test_serve_flags_are_real() -> None:
    help_text = run(str(BIN), "serve", "--help").stdout
    known = set(re.findall(r"--[a-z][a-z-]*", help_text))
    used = {"Dockerfile": flags(dockerfile_exec("ENTRYPOINT") + dockerfile_exec("CMD"))}
    for name, service in replicas().items():
        used[name] = flags(dockerfile_exec("ENTRYPOINT") + service["command"])
    used["statefulset"] = flags(container()["command"] + container()["args"])
    for where, used_flags in used.items():
        assert used_flags and set(used_flags) <= known, (where, set(used_flags) - known)


def test_statefulset() -> None:
    sts = kube("StatefulSet")
    pod, c = sts["spec"]["template"]["spec"], container()
    args = c["command"] + c["args"]
    assert c["command"][:2] == ["crossroads", "serve"] and flag_value(args, "--host") == "0.0.0.0"
    port = int(flag_value(args, "--port"))
    assert [(p["name"], p["containerPort"]) for p in c["ports"]] == [("http", port)]
    probes = {k: c[f"{k}Probe"]["httpGet"] for k in ("readiness", "liveness", "startup")}
    paths = {k: p["path"] for k, p in probes.items() if p["port"] in ("http", port)}
    assert paths == {"readiness": "/health", "liveness": "/health/live", "startup": "/health/live"}
    sleep, pause = c["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep == "sleep"
    env = {e["name"]: e for e in c["env"]}
    grace = int(env.get("CROSSROADS_SHUTDOWN_GRACE_SECONDS", {}).get("value", 30))
    assert pod["terminationGracePeriodSeconds"] > grace + int(pause)
    for name in ("CROSSROADS_DATABASE", "CROSSROADS_REDIS", "CROSSROADS_MANAGEMENT_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "crossroads"
    assert c["envFrom"] == [{"secretRef": {"name": "crossroads"}}]
    assert "--database" not in args and "--redis" not in args  # passwords stay off argv
    data_dir = flag_value(args, "--data-dir")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts[data_dir] == claim["metadata"]["name"]
    config_dir = str(Path(flag_value(args, "--config")).parent)
    assert mounts[config_dir] in {v["name"] for v in pod["volumes"] if "configMap" in v}
    assert sts["spec"]["replicas"] == 2 and "--workers" not in args
    ctx, csc = pod["securityContext"], c["securityContext"]
    assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0 and ctx["fsGroup"]
    assert csc["allowPrivilegeEscalation"] is False and csc["readOnlyRootFilesystem"] is True
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]


def test_services_and_pdb_select_the_pods() -> None:
    sts = kube("StatefulSet")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service, headless = kube("Service", "crossroads"), kube("Service", sts["spec"]["serviceName"])
    assert service["spec"]["type"] == "ClusterIP" and headless["spec"]["clusterIP"] == "None"
    for svc in (service, headless):
        assert svc["spec"]["selector"].items() <= labels.items()
        assert svc["spec"]["ports"][0]["targetPort"] == "http"
    pdb = kube("PodDisruptionBudget")["spec"]
    assert pdb["minAvailable"] == 1 and pdb["selector"]["matchLabels"].items() <= labels.items()
    assert {"CROSSROADS_DATABASE", "CROSSROADS_REDIS"} <= set(kube("Secret")["stringData"])
    (kustomization,) = load(KUBE / "kustomization.yaml")
    assert "secret.example.yaml" not in kustomization["resources"]
    assert all((KUBE / r).is_file() for r in kustomization["resources"])


def test_config_is_accepted_and_the_same_everywhere() -> None:
    text = kube("ConfigMap")["data"]["config.yaml"]
    assert text == (DEPLOY / "config.yaml").read_text()
    check = (  # in a subprocess: the test module stays independent of the package's types
        "import sys; from crossroads.catalog import read_config; "
        "from crossroads.settings import Settings; "
        "Settings.load(file_settings=read_config(sys.argv[1]).get('server'), env={})"
    )
    result = run(sys.executable, "-c", check, str(DEPLOY / "config.yaml"))
    assert result.returncode == 0, result.stderr


def test_compose() -> None:
    doc, services = compose(), replicas()
    assert len(services) >= 2
    assert doc["services"]["postgres"]["image"].startswith("postgres:15")
    assert doc["services"]["redis"]["image"].startswith("redis:7")
    volumes = set()
    for name, svc in services.items():
        assert flag_value(svc["command"], "--data-dir") == DATA_DIR
        data = [v.split(":")[0] for v in svc["volumes"] if v.split(":")[1] == DATA_DIR]
        assert len(data) == 1 and data[0] in doc["volumes"], name
        volumes.add(data[0])
        for dependency in ("postgres", "redis"):
            assert svc["depends_on"][dependency]["condition"] == "service_healthy"
            assert doc["services"][dependency]["healthcheck"]["test"]
        grace = int(svc["environment"].get("CROSSROADS_SHUTDOWN_GRACE_SECONDS", 30))
        assert int(svc["stop_grace_period"].removesuffix("s")) > grace
    assert len(volumes) == len(services)  # one data volume per replica
    for svc in doc["services"].values():
        for env_file in svc.get("env_file", []):
            assert (DEPLOY / f"{env_file['path']}.example").is_file()
    haproxy = doc["services"]["haproxy"]
    assert haproxy["image"].startswith("haproxy:") and haproxy["ports"] == ["8080:8080"]
    assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in haproxy["volumes"]
    cfg = (DEPLOY / "haproxy.cfg").read_text()
    assert set(re.findall(r"^\s*server (\S+) \1:8080", cfg, re.M)) == set(services)
    for line in ("balance roundrobin", "option httpchk GET /health", "option redispatch"):
        assert line in cfg
    assert "http-check expect status 200" in cfg
    # only a request never sent is retried: one that reached a replica may have been charged
    (retry,) = re.findall(r"^\s*retry-on (.+)$", cfg, re.M)
    assert retry.split() == ["conn-failure"], retry
    assert int(re.findall(r"timeout server (\d+)s?\b", cfg)[0]) >= 1800
    assert re.search(r"timeout tunnel \w+", cfg)


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_haproxy_accepts_the_config() -> None:
    result = run("haproxy", "-c", "-f", str(DEPLOY / "haproxy.cfg"))
    assert result.returncode == 0, result.stdout + result.stderr


def docker_compose() -> bool:
    return bool(shutil.which("docker")) and run("docker", "compose", "version").returncode == 0


@pytest.mark.skipif(not docker_compose(), reason="docker compose is not available")
def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    copy = shutil.copytree(DEPLOY, tmp_path / "deploy")
    for example in copy.glob("*.env.example"):
        shutil.copy(example, example.with_suffix(""))
    result = run("docker", "compose", "-f", str(copy / "compose.yaml"), "config", "-q")
    assert result.returncode == 0, result.stderr
