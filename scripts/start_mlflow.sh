#!/usr/bin/env bash
# A lean MLflow tracking server: one worker, no job execution, no telemetry, artifacts proxied.
#   MLFLOW_HOST            (default 127.0.0.1)
#   MLFLOW_PORT            (default 5000)
#   MLFLOW_BACKEND_STORE   (default sqlite:///mlflow.db; PostgreSQL in the cluster)
#   MLFLOW_ARTIFACT_ROOT   (default ./mlartifacts; s3://bucket/path with MinIO in the cluster)
#   MLFLOW_PROMETHEUS_DIR  (optional: expose /metrics, multiprocess files kept in this folder)
# Health: GET /health answers OK once the server is up (about 6 s).
set -euo pipefail

host="${MLFLOW_HOST:-127.0.0.1}"
port="${MLFLOW_PORT:-5000}"
backend="${MLFLOW_BACKEND_STORE:-sqlite:///mlflow.db}"
artifacts="${MLFLOW_ARTIFACT_ROOT:-./mlartifacts}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mlflow="${MLFLOW_BIN:-$here/../.venv/bin/mlflow}"
[ -x "$mlflow" ] || mlflow="$(command -v mlflow)"

export MLFLOW_DISABLE_TELEMETRY=true
export MLFLOW_MODEL_CATALOG_URI=""
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false

args=(server --host "$host" --port "$port" --workers 1
  --backend-store-uri "$backend" --artifacts-destination "$artifacts" --serve-artifacts
  --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-*}")
if [ -n "${MLFLOW_PROMETHEUS_DIR:-}" ]; then
  mkdir -p "$MLFLOW_PROMETHEUS_DIR"
  args+=(--expose-prometheus "$MLFLOW_PROMETHEUS_DIR")
fi
exec "$mlflow" "${args[@]}"
