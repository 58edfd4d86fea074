{{/* Names and labels, in the style of the community charts. */}}
{{- define "technoshare.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "technoshare.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "technoshare.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "technoshare.labels" -}}
helm.sh/chart: {{ include "technoshare.chart" . }}
app.kubernetes.io/name: {{ include "technoshare.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: technoshare
{{- end }}

{{/* Selector labels of one component: include "technoshare.selectorLabels" (dict "root" $ "component" "ingest") */}}
{{- define "technoshare.selectorLabels" -}}
app.kubernetes.io/name: {{ include "technoshare.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "technoshare.componentLabels" -}}
{{ include "technoshare.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "technoshare.componentName" -}}
{{- printf "%s-%s" (include "technoshare.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* An image reference: include "technoshare.image" (dict "root" $ "image" .Values.ingest.image) */}}
{{- define "technoshare.image" -}}
{{- $registry := .root.Values.global.imageRegistry -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion -}}
{{- if $registry }}{{ printf "%s/%s:%s" $registry .image.repository $tag }}{{ else }}{{ printf "%s:%s" .image.repository $tag }}{{ end }}
{{- end }}

{{/* A secret value that stays the same across renders: the given one, else the one stored in the cluster, else a
random one, but only when this render can see the cluster (`helm install/upgrade`: the namespace's
kube-root-ca.crt ConfigMap, which every namespace has and namespace-scoped rights can read), which then stores it for
the next. `helm template` and GitOps tools see no cluster: a random value there would change on every render, so they
must give the value or an existingSecret (`path` names the value in the error). */}}
{{- define "technoshare.secretValue" -}}
{{- if .value }}{{ .value }}{{- else }}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .name }}
{{- if and $existing (index $existing.data .key) }}{{ index $existing.data .key | b64dec }}
{{- else if lookup "v1" "ConfigMap" .root.Release.Namespace "kube-root-ca.crt" }}{{ randAlphaNum 32 }}
{{- else }}{{ fail (printf "%s (or its existingSecret) is required: this render cannot see a cluster (helm template, a GitOps tool, --dry-run), so a generated secret would change on every render and break the running pods. Set it, or let `helm install` generate it." .path) }}
{{- end }}
{{- end }}
{{- end }}

{{/* A caller's service token, derived from the operator's (`token`): stable wherever that is, and one-way, so a pod
holding its own token learns nothing of the others'. */}}
{{- define "technoshare.callerToken" -}}
{{- printf "technoshare-caller-token:%s:%s" .root .caller | sha256sum | trunc 48 }}
{{- end }}

{{- define "technoshare.slackSecret" -}}
{{- .Values.secrets.slack.existingSecret | default (printf "%s-slack" (include "technoshare.fullname" .)) }}
{{- end }}
{{- define "technoshare.openaiSecret" -}}
{{- .Values.secrets.openai.existingSecret | default (printf "%s-openai" (include "technoshare.fullname" .)) }}
{{- end }}
{{- define "technoshare.internalTokenSecret" -}}
{{- .Values.secrets.internalToken.existingSecret | default (printf "%s-internal-token" (include "technoshare.fullname" .)) }}
{{- end }}
{{- define "technoshare.databaseSecret" -}}
{{- if .Values.postgresql.enabled }}
{{- .Values.postgresql.existingSecret | default (printf "%s-postgresql" (include "technoshare.fullname" .)) }}
{{- else }}
{{- .Values.externalDatabase.existingSecret | default (printf "%s-external-database" (include "technoshare.fullname" .)) }}
{{- end }}
{{- end }}
{{- define "technoshare.s3Secret" -}}
{{- if .Values.minio.enabled }}
{{- .Values.minio.existingSecret | default (printf "%s-minio" (include "technoshare.fullname" .)) }}
{{- else }}
{{- .Values.externalS3.existingSecret }}
{{- end }}
{{- end }}
{{- define "technoshare.mlflowAuthSecret" -}}
{{- .Values.mlflow.auth.existingSecret | default (printf "%s-mlflow-auth" (include "technoshare.fullname" .)) }}
{{- end }}

{{- define "technoshare.databaseHost" -}}
{{- if .Values.postgresql.enabled }}{{ include "technoshare.componentName" (dict "root" . "component" "postgresql") }}{{ else }}{{ required "externalDatabase.host is required when postgresql.enabled is false" .Values.externalDatabase.host }}{{ end }}
{{- end }}
{{- define "technoshare.databasePort" -}}
{{- if .Values.postgresql.enabled }}5432{{ else }}{{ .Values.externalDatabase.port }}{{ end }}
{{- end }}
{{- define "technoshare.databaseUser" -}}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.username }}{{ else }}{{ .Values.externalDatabase.username }}{{ end }}
{{- end }}
{{- define "technoshare.mlflowDatabase" -}}
{{- if .Values.postgresql.enabled }}mlflow{{ else }}{{ .Values.externalDatabase.mlflowDatabase }}{{ end }}
{{- end }}
{{- define "technoshare.jobsDatabase" -}}
{{- if .Values.postgresql.enabled }}technoshare{{ else }}{{ .Values.externalDatabase.jobsDatabase }}{{ end }}
{{- end }}

{{/* postgresql://user@host:port/db, no password: libpq reads it from $PGPASSWORD ("technoshare.databasePasswordEnv"),
so a password with @, /, : or # cannot break the URL. */}}
{{- define "technoshare.databaseUrl" -}}
{{- printf "postgresql://%s@%s:%s/%s" (include "technoshare.databaseUser" .root) (include "technoshare.databaseHost" .root) (include "technoshare.databasePort" .root) .database }}
{{- end }}

{{- define "technoshare.s3Endpoint" -}}
{{- if .Values.minio.enabled }}{{ printf "http://%s:9000" (include "technoshare.componentName" (dict "root" . "component" "minio")) }}{{ else }}{{ .Values.externalS3.endpoint }}{{ end }}
{{- end }}
{{- define "technoshare.s3Bucket" -}}
{{- if .Values.minio.enabled }}{{ .Values.mlflow.bucket }}{{ else }}{{ required "externalS3.bucket is required when minio.enabled is false" .Values.externalS3.bucket }}{{ end }}
{{- end }}

{{- define "technoshare.mlflowUri" -}}
{{- if .Values.mlflow.enabled }}{{ printf "http://%s:5000" (include "technoshare.componentName" (dict "root" . "component" "mlflow")) }}{{ else }}{{ .Values.externalMlflow.trackingUri }}{{ end }}
{{- end }}

{{/* The five services: key in values, component name, port. */}}
{{/* The services' Deployments: each one's values key, port, Python module, image's values key, and the caller it
presents to the others (`""`: it calls none). ingest is two: `ingest` acknowledges Slack (INGEST_ROLE=acks) and
`dispatcher` does the work, as caller `ingest` (INGEST_ROLE=dispatch), so acks never wait behind it. */}}
{{- define "technoshare.services" -}}
ingest: {key: ingest, port: 3000, module: ingest, image: ingest, caller: ""}
dispatcher: {key: dispatcher, port: 3001, module: ingest, image: ingest, caller: ingest}
retrieval: {key: retrieval, port: 8001, module: retrieval, image: retrieval, caller: retrieval}
llm-gateway: {key: llmGateway, port: 8002, module: llm_gateway, image: llmGateway, caller: llm-gateway}
composer: {key: composer, port: 8003, module: composer, image: composer, caller: composer}
poster: {key: poster, port: 8004, module: poster, image: poster, caller: poster}
{{- end }}

{{/* Who may call whom: each service accepts exactly the callers of the architecture (technoshare_common/auth.py
names them); `operator` is people and `helm test`, whose token is the Secret's key `token`. */}}
{{- define "technoshare.acceptedCallers" -}}
ingest: [operator]
dispatcher: [composer, operator]
retrieval: [composer, operator]
llm-gateway: [composer, eval, operator]
composer: [ingest, eval, operator]
poster: [composer]
{{- end }}

{{/* The edges of the architecture inside the release: each callee, its port, and the components that call it
(`test` is the `helm test` pod). The NetworkPolicies allow exactly these (networkpolicies.yaml). */}}
{{- define "technoshare.edges" -}}
ingest: {port: 3000, from: [test]}
dispatcher: {port: 3001, from: [composer, test]}
retrieval: {port: 8001, from: [composer, test]}
llm-gateway: {port: 8002, from: [composer, eval, test]}
composer: {port: 8003, from: [dispatcher, eval, test]}
poster: {port: 8004, from: [composer, test]}
mlflow: {port: 5000, from: [ingest, dispatcher, retrieval, llm-gateway, composer, poster, eval, prompt-sync, mlflow-users, test]}
pushgateway: {port: 9091, from: [eval, test]}
postgresql: {port: 5432, from: [ingest, dispatcher, poster, llm-gateway, mlflow, mlflow-db-upgrade, mlflow-gc, postgresql-init]}
minio: {port: 9000, from: [mlflow, mlflow-gc, minio-bucket]}
{{- end }}

{{/* The operator's token, the root of the callers' tokens: resolved once per render (a second resolution could draw
another random value), by whichever template asks first. */}}
{{- define "technoshare.operatorToken" -}}
{{- $internal := .Values.secrets.internalToken }}
{{- if not (hasKey $internal "resolved") }}
{{- $value := include "technoshare.secretValue" (dict "root" . "name" (include "technoshare.internalTokenSecret" .) "key" "token" "value" $internal.token "path" "secrets.internalToken.token") }}
{{- $_ := set $internal "resolved" $value }}
{{- end }}
{{- $internal.resolved }}
{{- end }}

{{/* A workload's tokens: its own (TECHNOSHARE_INTERNAL_TOKEN, what it presents, its key in the Secret) and the
sha256 of each caller it accepts (TECHNOSHARE_CALLER_TOKENS): a callee can check a caller's token but never present
it, and no pod but `helm test` holds the operator's, the root of the others. With an existingSecret the chart cannot
know the tokens: every pod shares its key `token` (one shared token, as before per-caller tokens). */}}
{{- define "technoshare.tokenEnv" -}}
{{- $secret := include "technoshare.internalTokenSecret" .root }}
{{- $shared := not (empty .root.Values.secrets.internalToken.existingSecret) }}
{{- if or .caller $shared }}
- name: TECHNOSHARE_INTERNAL_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ ternary "token" .caller (or (eq .caller "operator") $shared) }}}
{{- end }}
{{- $accepted := index (include "technoshare.acceptedCallers" .root | fromYaml) (.component | default .caller) | default list }}
{{- if and $accepted (not .root.Values.secrets.internalToken.existingSecret) }}
{{- $operator := include "technoshare.operatorToken" .root }}
{{- $hashes := dict }}
{{- range $accepted }}
{{- $token := eq . "operator" | ternary $operator (include "technoshare.callerToken" (dict "root" $operator "caller" .)) }}
{{- $_ := set $hashes . (printf "sha256:%s" (sha256sum $token)) }}
{{- end }}
- name: TECHNOSHARE_CALLER_TOKENS
  value: {{ toJson $hashes | quote }}
{{- end }}
{{- end }}

{{/* Environment every service shares: where the others are, MLflow. */}}
{{- define "technoshare.commonEnv" -}}
- name: LOG_LEVEL
  value: {{ .Values.global.logLevel | quote }}
{{- /* INGEST_URL is ingest's job API, which the dispatcher serves; nothing in the release calls the acks pods. */}}
{{- range $name, $svc := include "technoshare.services" . | fromYaml }}
{{- if ne $name "ingest" }}
- name: {{ printf "%s_URL" (eq $name "dispatcher" | ternary "ingest" $name | upper | replace "-" "_") }}
  value: {{ printf "http://%s:%d" (include "technoshare.componentName" (dict "root" $ "component" $name)) (int $svc.port) | quote }}
{{- end }}
{{- end }}
- name: MLFLOW_TRACKING_URI
  value: {{ include "technoshare.mlflowUri" . | quote }}
- name: SPOOL_MAX_BYTES
  value: {{ .Values.spool.maxBytes | int64 | quote }}
- name: SPOOL_KEEP_REJECTED_HOURS
  value: {{ .Values.spool.keepRejectedHours | quote }}
{{- if .Values.spool.persistence.enabled }}
- name: POD_NAME
  valueFrom:
    fieldRef: {fieldPath: metadata.name}
- name: MLFLOW_SPOOL_DIR
  value: /var/spool/technoshare/$(POD_NAME)
{{- else }}
- name: MLFLOW_SPOOL_DIR
  value: /var/spool/technoshare
{{- end }}
{{- end }}

{{/* A workload's MLflow credentials under mlflow.auth: its own user (technoshare.mlflowUsers), or the admin for the
operator's pods (`user` empty) and wherever the chart cannot know the users' passwords (an existingSecret, an MLflow
outside the chart). include "technoshare.mlflowAuthEnv" (dict "root" $ "user" "composer") */}}
{{- define "technoshare.mlflowAuthEnv" -}}
{{- $values := .root.Values.mlflow }}
{{- if $values.auth.enabled }}
{{- $secret := include "technoshare.mlflowAuthSecret" .root }}
{{- $own := and (ne .user "") $values.enabled (not $values.auth.existingSecret) }}
- name: MLFLOW_TRACKING_USERNAME
{{- if $own }}
  value: {{ .user | quote }}
{{- else }}
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: admin-username}
{{- end }}
- name: MLFLOW_TRACKING_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ $own | ternary (printf "%s-password" .user) "admin-password" }}}
{{- end }}
{{- end }}

{{/* Each workload's MLflow user under mlflow.auth and what files/mlflow_users.py grants it: EDIT on the experiments
it writes to (traces, runs, app versions, feedback), MANAGE on the prompts it registers; `prometheus` scrapes MLflow's
/metrics (monitoring.yaml), which MLflow 3's basic-auth app, failing closed, opens to admins only: an admin of its
own, apart from the operator's. The rest is MLflow's
default_permission, READ; the admin stays with the operator. The experiments are the services' default
MLFLOW_EXPERIMENT_NAME and the evaluation's. */}}
{{- define "technoshare.mlflowUsers" -}}
{{- $services := list "technoshare_commentator" }}
ingest: {experiments: {{ toJson $services }}}
dispatcher: {experiments: {{ toJson $services }}}
retrieval: {experiments: {{ toJson $services }}}
llm-gateway: {experiments: {{ toJson $services }}}
composer: {experiments: {{ toJson $services }}}
poster: {experiments: {{ toJson $services }}}
eval: {experiments: ["technoshare_commentator", "technoshare_eval"]}
prompt-sync: {experiments: [], prompts: [stage_a_extract_facts, stage_b_compose_reply, stage_b_select_sentences]}
prometheus: {experiments: [], admin: true}
{{- end }}

{{/* libpq (psycopg 3 in the services and in MLflow) takes the password from $PGPASSWORD when the URL has none. */}}
{{- define "technoshare.databasePasswordEnv" -}}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef: {name: {{ include "technoshare.databaseSecret" . }}, key: password}
{{- end }}

{{/* What one service needs beyond the common environment: include "technoshare.serviceEnv" (dict "root" $ "component" "ingest") */}}
{{- define "technoshare.serviceEnv" -}}
{{- $root := .root }}
{{- if eq .component "ingest" }}
{{ include "technoshare.databasePasswordEnv" $root }}
- name: JOB_STORE_DATABASE_URL
  value: {{ include "technoshare.databaseUrl" (dict "root" $root "database" (include "technoshare.jobsDatabase" $root)) | quote }}
- name: INGEST_ROLE
  value: acks
- name: SLACK_SIGNING_SECRET
  valueFrom:
    secretKeyRef: {name: {{ include "technoshare.slackSecret" $root }}, key: signing-secret}
{{- else if eq .component "dispatcher" }}
{{ include "technoshare.databasePasswordEnv" $root }}
- name: JOB_STORE_DATABASE_URL
  value: {{ include "technoshare.databaseUrl" (dict "root" $root "database" (include "technoshare.jobsDatabase" $root)) | quote }}
- name: INGEST_ROLE
  value: dispatch
- name: DISPATCH_CONCURRENCY
  value: {{ $root.Values.dispatcher.dispatchConcurrency | quote }}
{{- else if eq .component "poster" }}
{{ include "technoshare.databasePasswordEnv" $root }}
- name: POSTER_DATABASE_URL
  value: {{ include "technoshare.databaseUrl" (dict "root" $root "database" (include "technoshare.jobsDatabase" $root)) | quote }}
- name: SLACK_BOT_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ include "technoshare.slackSecret" $root }}, key: bot-token, optional: true}
{{- else if eq .component "llm-gateway" }}
{{ include "technoshare.databasePasswordEnv" $root }}
- name: LLM_SPEND_DATABASE_URL
  value: {{ include "technoshare.databaseUrl" (dict "root" $root "database" (include "technoshare.jobsDatabase" $root)) | quote }}
- name: OPENAI_API_KEY
  valueFrom:
    secretKeyRef: {name: {{ include "technoshare.openaiSecret" $root }}, key: api-key, optional: true}
{{- with $root.Values.llmGateway.upstreamBaseUrl }}
- name: LLM_UPSTREAM_BASE_URL
  value: {{ . | quote }}
{{- end }}
{{- if gt (float64 $root.Values.llmGateway.dailyBudgetUsd) 0.0 }}
- name: LLM_BUDGET_USD_PER_DAY
  value: {{ $root.Values.llmGateway.dailyBudgetUsd | quote }}
{{- end }}
- name: LLM_PRICES_FILE
  value: /etc/technoshare/model_prices.yaml
{{- else if eq .component "composer" }}
- name: TECHNOSHARE_DATA_DIR
  value: /app/data
- name: STAGE_A_MODEL
  value: {{ $root.Values.composer.stageAModel | quote }}
- name: STAGE_B_MODEL
  value: {{ $root.Values.composer.stageBModel | quote }}
- name: PROMPT_ALIAS
  value: {{ $root.Values.composer.promptAlias | quote }}
- name: COMPOSE_MODE
  value: {{ $root.Values.composer.composeMode | quote }}
- name: COMPOSE_EXTRACTIVE_MODELS
  value: {{ join "," $root.Values.composer.extractiveModels | quote }}
- name: LLM_UNAVAILABLE_REPLY
  value: {{ $root.Values.composer.llmUnavailableReply | quote }}
- name: UNREADABLE_LINK_REPLY
  value: {{ $root.Values.composer.unreadableLinkReply | quote }}
{{- end }}
{{- end }}

{{- define "technoshare.mlflowS3Env" -}}
- name: MLFLOW_S3_ENDPOINT_URL
  value: {{ include "technoshare.s3Endpoint" . | quote }}
- name: AWS_DEFAULT_REGION
  value: {{ .Values.externalS3.region | quote }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: {name: {{ include "technoshare.s3Secret" . }}, key: {{ ternary "root-user" "access-key-id" .Values.minio.enabled }}}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ include "technoshare.s3Secret" . }}, key: {{ ternary "root-password" "secret-access-key" .Values.minio.enabled }}}
{{- end }}

{{/* MLflow's database URL in $MLFLOW_DATABASE_URI, its password in $PGPASSWORD (from its Secret, never from values). */}}
{{- define "technoshare.mlflowDatabaseEnv" -}}
{{ include "technoshare.databasePasswordEnv" . }}
- name: MLFLOW_DATABASE_URI
  value: {{ include "technoshare.databaseUrl" (dict "root" . "database" (include "technoshare.mlflowDatabase" .)) | quote }}
{{- end }}

{{/* Host headers MLflow accepts. MLflow 3.5+ refuses any other (DNS-rebinding protection) with 403, and setting the
list replaces its defaults, so it holds: the Service's cluster names (with and without the port) that the pods
call, loopback (kubectl port-forward), the private ranges pod IPs come from (Prometheus scrapes a pod IP), and
mlflow.allowedHosts. */}}
{{- define "technoshare.mlflowAllowedHosts" -}}
{{- $name := include "technoshare.componentName" (dict "root" . "component" "mlflow") }}
{{- $ns := .Release.Namespace }}
{{- $hosts := list }}
{{- range (list $name (printf "%s.%s" $name $ns) (printf "%s.%s.svc" $name $ns) (printf "%s.%s.svc.%s" $name $ns .Values.global.clusterDomain)) }}
{{- $hosts = append (append $hosts .) (printf "%s:5000" .) }}
{{- end }}
{{- $hosts = concat $hosts (list "localhost" "localhost:*" "127.0.0.1" "127.0.0.1:*" "[[]::1]:*" "10.*" "192.168.*") }}
{{- range $i := until 16 }}{{ $hosts = append $hosts (printf "172.%d.*" (add 16 $i)) }}{{ end }}
{{- /* 100.64.0.0/10 (shared address space, pod IPs on some EKS and GKE setups) and IPv6 unique-local pod IPs. */}}
{{- $hosts = concat $hosts (list "100.6[4-9].*" "100.[7-9][0-9].*" "100.1[01][0-9].*" "100.12[0-7].*" "[[]fc*" "[[]fd*") }}
{{- join "," (concat $hosts .Values.mlflow.allowedHosts) }}
{{- end }}
