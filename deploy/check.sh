#!/usr/bin/env bash
# Offline checks of everything in deploy/: Prometheus config and alert rules (with their unit
# tests), the Kubernetes manifests rendered by kustomize and validated against the Kubernetes
# schemas, and the compose file. Installs its tools when they are missing (Debian's prometheus and
# docker-compose packages, kubernetes-validate from PyPI, which carries the schemas).
set -euo pipefail
cd "$(dirname "$0")/.."

source deploy/local/prerequisites.sh
command -v promtool >/dev/null 2>&1 || apt_install prometheus
command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose
command -v kubectl >/dev/null 2>&1 || apt_install kubectl
command -v kubernetes-validate >/dev/null 2>&1 || python3 -m pip install -q kubernetes-validate
kubernetes_validate() {
    if command -v kubernetes-validate >/dev/null 2>&1; then kubernetes-validate "$@"; else python3 -m kubernetes_validate "$@"; fi
}

echo "== promtool: scrape config, alert rules, rule unit tests"
promtool check config deploy/prometheus/prometheus.yml
# The compose file's rule path exists only inside the container: check its syntax.
promtool check config --syntax-only deploy/compose/prometheus.compose.yml
promtool test rules deploy/prometheus/alerts_test.yml

echo "== kustomize + Kubernetes schemas (strict)"
for dir in deploy/k8s/base deploy/k8s/overlays/production; do
    rendered=$(mktemp)
    kubectl kustomize "$dir" >"$rendered"
    kubernetes_validate --strict --quiet "$rendered"
    echo "$dir: $(grep -c '^kind:' "$rendered") resources valid"
    rm -f "$rendered"
done
kubernetes_validate --strict --quiet deploy/k8s/base/secret.example.yaml
echo "deploy/k8s/base/secret.example.yaml: valid"

echo "== compose"
GATEWAY_SIGNING_SECRET=check POSTGRES_PASSWORD=check \
    docker-compose -p task-gateway -f deploy/compose/compose.yaml config -q
echo "deploy/compose/compose.yaml: valid"
