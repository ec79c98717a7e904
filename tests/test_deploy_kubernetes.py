"""deploy/kubernetes/: schema-valid manifests that fit together.

Core objects are validated strictly against the Kubernetes OpenAPI schemas
(kubernetes-validate: unknown fields are errors); the ServiceMonitor is a CRD
the package has no schema for, so it is checked structurally against the
fields of monitoring.coreos.com/v1 it uses. The cross-references a typo would
break (labels, port names, mount paths, the config itself) are checked too.
"""
from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from proxy.config.model import parse_config
from proxy.config.secrets import Keyring, generate_key

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "deploy" / "kubernetes"
# Native sidecars (initContainers[].restartPolicy) exist in the schema from 1.28 and are on by default from 1.29.
KUBERNETES_VERSION = "1.30"
NOT_KUBERNETES_OBJECTS = {"Kustomization"}

SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"],
                     "properties": {"name": {"type": "string"}, "labels": {"type": "object"}}},
        "spec": {
            "type": "object", "required": ["selector", "endpoints"], "additionalProperties": False,
            "properties": {
                "selector": {"type": "object", "additionalProperties": False,
                             "properties": {"matchLabels": {"type": "object",
                                                            "additionalProperties": {"type": "string"}}}},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["port"], "additionalProperties": False,
                    "properties": {"port": {"type": "string"}, "path": {"type": "string", "pattern": "^/"},
                                   "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                   "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                   "scheme": {"enum": ["http", "https"]}}}},
            },
        },
    },
}


def load_objects() -> list[tuple[str, dict]]:
    objects = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                objects.append((path.name, document))
    return objects


OBJECTS = load_objects()


def find(kind: str) -> dict:
    matches = [document for _, document in OBJECTS if document["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]


def pod_spec() -> dict:
    return find("Deployment")["spec"]["template"]["spec"]


def sidecar() -> dict:
    (container,) = [c for c in pod_spec().get("initContainers", []) if c["name"] == "byok-proxy"]
    return container


def proxy_config_text() -> str:
    return find("ConfigMap")["data"]["config.yaml"]


@pytest.mark.parametrize("filename,document", [item for item in OBJECTS if item[1]["kind"] != "ServiceMonitor"
                                               and item[1]["kind"] not in NOT_KUBERNETES_OBJECTS],
                         ids=lambda value: value if isinstance(value, str) else value["kind"])
def test_core_objects_pass_the_strict_kubernetes_schema(filename, document):
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_strict_validation_rejects_a_misspelt_field():
    broken = yaml.safe_load((MANIFESTS / "deployment.yaml").read_text())
    broken["spec"]["template"]["spec"]["initContainers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_service_monitor_is_structurally_valid_and_targets_the_proxy_port():
    monitor = find("ServiceMonitor")
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    service = find("Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    assert port["targetPort"] == sidecar()["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"


def test_proxy_runs_as_a_native_sidecar_with_health_probes():
    container = sidecar()
    assert container["restartPolicy"] == "Always"
    port_names = {port["name"] for port in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in port_names
    security = container["securityContext"]
    assert security["runAsUser"] != 0 and security["allowPrivilegeEscalation"] is False
    assert pod_spec()["securityContext"]["runAsNonRoot"] is True


def test_the_app_reaches_the_proxy_on_loopback_with_the_proxy_key():
    (app,) = pod_spec()["containers"]
    env = {item["name"]: item for item in app["env"]}
    port = sidecar()["ports"][0]["containerPort"]
    assert env["OPENAI_BASE_URL"]["value"] == f"http://127.0.0.1:{port}/v1"
    proxy_env = {item["name"]: item for item in sidecar()["env"]}
    assert env["OPENAI_API_KEY"]["valueFrom"] == proxy_env["BYOK_PROXY_KEY"]["valueFrom"]
    assert "${BYOK_PROXY_KEY}" in proxy_config_text()


def test_prometheus_annotations_point_at_the_metrics_port():
    annotations = find("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == sidecar()["ports"][0]["containerPort"]


def test_service_selects_the_pods():
    labels = find("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert find("Service")["spec"]["selector"].items() <= labels.items()


def mounts_by_volume() -> dict[str, dict]:
    return {mount["name"]: mount for mount in sidecar()["volumeMounts"]}


def test_config_comes_from_a_configmap_mounted_as_a_directory_so_reloads_are_seen():
    volumes = {volume["name"]: volume for volume in pod_spec()["volumes"]}
    (name,) = [n for n, v in volumes.items() if v.get("configMap", {}).get("name") == find("ConfigMap")["metadata"]["name"]]
    mount = mounts_by_volume()[name]
    assert "subPath" not in mount  # a subPath mount never sees ConfigMap updates
    config_path = {item["name"]: item.get("value") for item in sidecar()["env"]}["BYOK_CONFIG"]
    assert config_path == f"{mount['mountPath']}/config.yaml"


def test_master_key_is_a_file_from_a_secret_named_by_the_config():
    volumes = {volume["name"]: volume for volume in pod_spec()["volumes"]}
    (name,) = [n for n, v in volumes.items() if "secret" in v]
    (item,) = volumes[name]["secret"]["items"]
    expected = f"{mounts_by_volume()[name]['mountPath']}/{item['path']}"
    assert yaml.safe_load(proxy_config_text())["secrets"]["master_key_file"] == expected
    assert "BYOK_MASTER_KEY" not in {entry["name"] for entry in sidecar()["env"]}


def test_grace_period_outlasts_the_proxy_drain():
    grace = yaml.safe_load(proxy_config_text())["shutdown_grace"]
    assert pod_spec()["terminationGracePeriodSeconds"] > grace


def test_configmap_holds_a_valid_proxy_config_once_its_placeholders_are_filled(tmp_path):
    key = generate_key()
    key_file = tmp_path / "master-key"
    key_file.write_text(key)
    text = proxy_config_text()
    master_key_path = yaml.safe_load(text)["secrets"]["master_key_file"]
    token = Keyring([key]).encrypt("sk-example-upstream-key")
    filled = re.sub(r"enc:REPLACE\S*", token, text).replace(master_key_path, str(key_file))
    config = parse_config(filled, environ={"BYOK_PROXY_KEY": "proxy-key-for-the-app"})
    assert config.listen.host == "0.0.0.0" and config.auth.api_keys
    assert all(upstream.api_key.reveal() == "sk-example-upstream-key" for upstream in config.upstreams.values())
    assert config.shutdown_grace == yaml.safe_load(text)["shutdown_grace"]


def test_kustomization_lists_every_manifest_but_never_a_secret():
    kustomization = find("Kustomization")
    listed = set(kustomization["resources"])
    on_disk = {name for name, document in OBJECTS if document["kind"] not in NOT_KUBERNETES_OBJECTS}
    assert listed == {name for name in on_disk if not name.startswith("secret")}
    assert all((MANIFESTS / name).exists() for name in listed)


def test_the_example_secret_holds_only_placeholders():
    secret = find("Secret")
    assert set(secret["stringData"]) == {"master-key", "proxy-key"}
    assert all(value.startswith("REPLACE") for value in secret["stringData"].values())
