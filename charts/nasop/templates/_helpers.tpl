{{/* Chart name, overridable by nameOverride; cut to 63 characters (DNS label limit). */}}
{{- define "nasop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full resource name: release name + chart name unless the release name already contains it. */}}
{{- define "nasop.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "nasop.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Namespace of the namespaced resources: namespaceOverride or the release namespace. */}}
{{- define "nasop.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every resource. */}}
{{- define "nasop.labels" -}}
helm.sh/chart: {{ include "nasop.chart" . }}
{{ include "nasop.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nasop
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels: only name and instance, because Deployment selectors are immutable. */}}
{{- define "nasop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nasop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Name of the operator's ServiceAccount. */}}
{{- define "nasop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "nasop.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Name of the metrics Service (also used by the helm test pod). */}}
{{- define "nasop.metricsServiceName" -}}
{{- printf "%s-metrics" (include "nasop.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Operator image reference; the tag defaults to the chart appVersion. */}}
{{- define "nasop.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Name of the claim mounted as the shared trial log volume; empty when none is used. */}}
{{- define "nasop.logsClaimName" -}}
{{- if .Values.logs.existingClaim -}}
{{- .Values.logs.existingClaim -}}
{{- else if .Values.logs.persistence.enabled -}}
{{- printf "%s-logs" (include "nasop.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Comma-separated watched namespaces (WATCH_NAMESPACES); empty means all namespaces. */}}
{{- define "nasop.watchNamespaces" -}}
{{- join "," (uniq .Values.watchNamespaces) -}}
{{- end -}}

{{/*
"true" when kopf peering is on, "" when off. peering.enabled=auto turns it on whenever two
operators can run at once: replicaCount > 1, or a RollingUpdate (old and new pod overlap).
*/}}
{{- define "nasop.peeringEnabled" -}}
{{- $enabled := toString .Values.peering.enabled -}}
{{- if gt (int .Values.sharding.shards) 0 -}}
{{- else if eq $enabled "auto" -}}
{{- if or (gt (int .Values.replicaCount) 1) (eq .Values.updateStrategy.type "RollingUpdate") -}}true{{- end -}}
{{- else if eq $enabled "true" -}}true{{- end -}}
{{- end -}}

{{/* Name of the kopf peering object (NASOP_PEERING): peering.name or the full name. */}}
{{- define "nasop.peeringName" -}}
{{- default (include "nasop.fullname" .) .Values.peering.name -}}
{{- end -}}

{{/*
Validate values that the JSON schema cannot express; collect every message and fail once
(the bitnami pattern). Included from NOTES.txt and deployment.yaml.
*/}}
{{- define "nasop.validateValues" -}}
{{- $messages := list -}}
{{- $messages = append $messages (include "nasop.validateValues.rbacScope" .) -}}
{{- $messages = append $messages (include "nasop.validateValues.serviceMonitor" .) -}}
{{- $messages = append $messages (include "nasop.validateValues.ports" .) -}}
{{- $messages = append $messages (include "nasop.validateValues.peering" .) -}}
{{- $messages = append $messages (include "nasop.validateValues.peeringEnv" .) -}}
{{- $messages = without $messages "" -}}
{{- $message := join "\n" $messages -}}
{{- if $message -}}
{{- printf "\nVALUES VALIDATION:\n%s" $message | fail -}}
{{- end -}}
{{- end -}}

{{/* rbac.scope=namespaced grants nothing unless namespaces are named. */}}
{{- define "nasop.validateValues.rbacScope" -}}
{{- if and .Values.rbac.create (eq .Values.rbac.scope "namespaced") (empty .Values.watchNamespaces) -}}
nasop: rbac.scope=namespaced needs watchNamespaces (the namespaces to grant a Role in); set watchNamespaces or use rbac.scope=cluster
{{- end -}}
{{- end -}}

{{/* A ServiceMonitor selects the metrics Service, so the Service must exist. */}}
{{- define "nasop.validateValues.serviceMonitor" -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) -}}
nasop: metrics.serviceMonitor.enabled=true needs metrics.enabled=true (the ServiceMonitor scrapes the metrics Service)
{{- end -}}
{{- end -}}

{{/* The liveness and metrics servers cannot share a port. */}}
{{- define "nasop.validateValues.ports" -}}
{{- if eq (int .Values.health.port) (int .Values.metrics.port) -}}
nasop: health.port and metrics.port must differ (both are {{ .Values.health.port }})
{{- end -}}
{{- end -}}

{{/*
Two operators at once without peering would both drive every experiment (double trials,
racing status writes): replicaCount > 1 or a RollingUpdate needs peering.enabled auto or true.
*/}}
{{- define "nasop.validateValues.peering" -}}
{{- if gt (int .Values.sharding.shards) 0 -}}
{{- if eq (toString .Values.peering.enabled) "true" -}}
nasop: sharding.shards={{ .Values.sharding.shards }} and peering.enabled=true exclude each other (with shards every replica drives its own share); set peering.enabled=auto, or sharding.shards=0
{{- end -}}
{{- else if not (include "nasop.peeringEnabled" .) -}}
{{- if gt (int .Values.replicaCount) 1 -}}
nasop: replicaCount={{ .Values.replicaCount }} needs kopf peering, else every replica drives every experiment; set peering.enabled=auto (or true), or replicaCount=1
{{- else if eq .Values.updateStrategy.type "RollingUpdate" -}}
nasop: updateStrategy.type=RollingUpdate runs the old and the new operator together during a rollout and needs kopf peering; set peering.enabled=auto (or true), or updateStrategy.type=Recreate
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The chart owns the peering variables: a second NASOP_PEERING or POD_ID in extraEnv would shadow
them, and one NASOP_PEERING_PRIORITY for all replicas makes kopf pause every one of them (it pauses
all peers of equal priority; without the variable each replica draws a random priority).
*/}}
{{- define "nasop.validateValues.peeringEnv" -}}
{{- $names := list -}}
{{- range .Values.extraEnv }}{{ $names = append $names .name }}{{ end -}}
{{- $lines := list -}}
{{- if include "nasop.peeringEnabled" . -}}
{{- $owned := dict "NASOP_PEERING" "set peering.name to name the peering object" "POD_ID" "the chart sets it to the pod name" -}}
{{- range $name := list "NASOP_PEERING" "POD_ID" -}}
{{- if has $name $names -}}
{{- $lines = append $lines (printf "nasop: extraEnv sets %s, which the chart sets when peering is on; remove it from extraEnv (%s)" $name (get $owned $name)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (gt (int .Values.replicaCount) 1) (has "NASOP_PEERING_PRIORITY" $names) -}}
{{- $lines = append $lines (printf "nasop: extraEnv sets NASOP_PEERING_PRIORITY with replicaCount=%v: every replica would get the same priority and kopf pauses all peers of equal priority; remove it (each replica then draws a random priority)" .Values.replicaCount) -}}
{{- end -}}
{{- join "\n" $lines -}}
{{- end -}}
