#!/usr/bin/env bash
# `make demo`: the whole product on a real local control plane with simulated GPU nodes.
#
#   1. plan offline what the example services would cost on the example fleet;
#   2. start (or reuse) the dev cluster: etcd, kube-apiserver, controller-manager, scheduler and
#      kwok-simulated GPU nodes from examples/fleet-sim.yaml;
#   3. install the CRDs, start the operator, apply the examples and wait until they are Ready;
#   4. show what gpumix did. Everything keeps running; `make demo-down` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

GPUMIX=${GPUMIX:-.venv/bin/gpumix}
GPUMIX_PYTHON=${GPUMIX_PYTHON:-.venv/bin/python}
STATE_DIR=${GPUMIX_DEMO_STATE_DIR:-$HOME/.cache/gpumix/demo}
KUBECONFIG_PATH="$STATE_DIR/cluster/kubeconfig"
OPERATOR_LOG="$STATE_DIR/operator.log"
OPERATOR_PID="$STATE_DIR/operator.pid"
# The plan API and dashboard (read-only); the browser reaches it at 127.0.0.1.
API_PORT=${GPUMIX_DEMO_API_PORT:-8081}
mkdir -p "$STATE_DIR"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Offline: what would the example services cost on the example fleet?"
"$GPUMIX" plan -f examples/llmservice-chat.yaml -f examples/llmservice-70b.yaml \
  --fleet examples/fleet.yaml -o table || true

if ! command -v kubectl >/dev/null 2>&1; then
  # No kubectl installed: use the one built from the same Go modules as the control plane.
  kubectl_path=$("$GPUMIX" dev-cluster build kubectl | awk '$1 == "kubectl" {print $2}')
  export PATH="$(dirname "$kubectl_path"):$PATH"
fi

step "Dev cluster (real kube-apiserver, etcd, scheduler, controller-manager; kwok GPU nodes)"
# `up` prints the KUBECONFIG and GPUMIX_PROMETHEUS_URL exports; show them and keep them.
cluster_env=$("$GPUMIX" dev-cluster up --fleet examples/fleet-sim.yaml --state-dir "$STATE_DIR/cluster")
echo "$cluster_env"
eval "$cluster_env"
export KUBECONFIG="$KUBECONFIG_PATH"

step "CRDs and GPU pools"
kubectl apply --server-side -f crds/
kubectl wait --for=condition=Established crd/llmservices.gpumix.io crd/gpupools.gpumix.io \
  --timeout=60s
kubectl apply -f examples/gpupools.yaml

step "Operator"
if [[ -f "$OPERATOR_PID" ]] && kill -0 "$(cat "$OPERATOR_PID")" 2>/dev/null; then
  echo "reusing the running operator (pid $(cat "$OPERATOR_PID"), log $OPERATOR_LOG)"
else
  nohup "$GPUMIX" operator --liveness http://127.0.0.1:0/healthz --api-port "$API_PORT" \
    >"$OPERATOR_LOG" 2>&1 &
  echo $! >"$OPERATOR_PID"
  echo "started the operator (pid $!, log $OPERATOR_LOG)"
fi

step "LLMServices"
for manifest in examples/llmservice-*.yaml; do
  namespace=$(awk '/^  namespace:/ {print $2; exit}' "$manifest")
  [[ -n "$namespace" ]] && kubectl create namespace "$namespace" --dry-run=client -o yaml |
    kubectl apply -f - >/dev/null
  kubectl apply -f "$manifest"
done
echo "waiting for the services to be Ready (plan, Deployments, pods scheduled and Ready)..."
kubectl wait llmsvc --all --all-namespaces --for=condition=Ready --timeout=300s

step "kubectl get llmsvc,gpool"
kubectl get llmsvc -A -o wide
echo
kubectl get gpool

step "vLLM Deployments per GPU type"
kubectl get deployments -A -l app.kubernetes.io/managed-by=gpumix \
  -o custom-columns='NAMESPACE:.metadata.namespace,DEPLOYMENT:.metadata.name,GPU:.metadata.labels.gpumix\.io/gpu-type,CAPACITY:.metadata.labels.gpumix\.io/capacity-type,READY:.status.readyReplicas,REPLICAS:.spec.replicas,COST/H:.metadata.annotations.gpumix\.io/cost-per-hour'

step "Live traffic: a burst to one vLLM simulator pod of each configuration, then Prometheus"
for service in team-a/chat team-a/assistant-70b; do
  "$GPUMIX_PYTHON" -m gpumix.devcluster.loadgen burst --kubeconfig "$KUBECONFIG_PATH" \
    --prometheus "$GPUMIX_PROMETHEUS_URL" --namespace "${service%/*}" --service "${service#*/}"
  echo
done

step "Through the router: the class mix, and where each class went (plan vs routed)"
echo "waiting for chat's entry Service to select its routers..."
for _ in $(seq 60); do
  selected=$(kubectl get service chat -n team-a -o jsonpath='{.spec.selector.app\.kubernetes\.io/name}')
  [ "$selected" = gpumix-router ] && break
  sleep 1
done
"$GPUMIX_PYTHON" -m gpumix.devcluster.loadgen route --kubeconfig "$KUBECONFIG_PATH" \
  --prometheus "$GPUMIX_PROMETHEUS_URL" --namespace team-a --service chat

cat <<TXT

gpumix is running. The dashboard (fleet, costs, plans, what-if): http://127.0.0.1:$API_PORT/
Look around:
  export KUBECONFIG=$KUBECONFIG_PATH
  export GPUMIX_PROMETHEUS_URL=$GPUMIX_PROMETHEUS_URL
  # per-configuration TTFT p90 over the last 5 minutes, from the simulators' vLLM histograms:
  curl -s "\$GPUMIX_PROMETHEUS_URL/api/v1/query" --data-urlencode \\
    'query=histogram_quantile(0.9, sum by (deployment, le) (rate(vllm:time_to_first_token_seconds_bucket[5m])))'
  curl -s "\$GPUMIX_PROMETHEUS_URL/api/v1/targets?state=active"   # every gpumix pod, discovered
  kubectl get llmsvc -A -o wide            # plans, cost, readiness
  kubectl describe llmsvc -n team-a chat   # conditions and plan-change events
  kubectl get pods -A -o wide              # vLLM pods on GPU nodes, routers on system nodes
  tail -f $OPERATOR_LOG
  gpumix whatif --api http://127.0.0.1:$API_PORT -f examples/whatif-no-spot.yaml   # predict it
  kubectl delete node -l gpumix.io/sim-pool=l4-spot   # lose a spot pool; watch it re-plan
Stop everything: make demo-down
TXT
