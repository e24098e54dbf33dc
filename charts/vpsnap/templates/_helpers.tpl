{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "vpsnap.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects. A release named like the chart ("vpsnap") gets plain
"vpsnap", not "vpsnap-vpsnap".
*/}}
{{- define "vpsnap.fullname" -}}
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

{{- define "vpsnap.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "vpsnap.labels" -}}
helm.sh/chart: {{ include "vpsnap.chart" . }}
{{ include "vpsnap.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: vpsnap
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels: stable across upgrades (a Deployment's selector is immutable). */}}
{{- define "vpsnap.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vpsnap.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vpsnap.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vpsnap.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image reference: repository@digest, or repository:tag (tag defaults to appVersion). */}}
{{- define "vpsnap.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Whether to render the PodDisruptionBudget: explicit true/false, else only with replicas > 1. */}}
{{- define "vpsnap.pdbEnabled" -}}
{{- $enabled := gt (int .Values.replicas) 1 }}
{{- if kindIs "bool" .Values.podDisruptionBudget.enabled }}
{{- $enabled = .Values.podDisruptionBudget.enabled }}
{{- end }}
{{- if $enabled }}true{{ end }}
{{- end }}

{{/*
Checks that the schema cannot express; rendered (empty) by every template that depends on them.
*/}}
{{- define "vpsnap.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicas > 1 requires leaderElection.enabled=true: without a leader every replica would reconcile and call the provider" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "serviceMonitor.enabled=true requires metrics.service.enabled=true (the ServiceMonitor selects that Service)" }}
{{- end }}
{{- if and .Values.tests.enabled (not .Values.metrics.service.enabled) }}
{{- fail "tests.enabled=true requires metrics.service.enabled=true (helm test calls /readyz through that Service); or set tests.enabled=false" }}
{{- end }}
{{- if and (include "vpsnap.pdbEnabled" .) (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both (set the other to null)" }}
{{- end }}
{{- end }}

{{/*
The rules the controller needs on namespaced resources; the same list goes into the
ClusterRole (all namespaces) or the Role (watchNamespace).
*/}}
{{- define "vpsnap.rules" -}}
# Its own kinds: watch, write finalizers/annotations, never delete what users declared.
- apiGroups: ["vpsnap.dev"]
  resources: ["vpsproviders", "vpssnapshots", "vpsbackups", "vpssnapshotschedules", "vpsrestores"]
  verbs: ["get", "list", "watch", "patch", "update"]
# Schedules create and prune their VpsSnapshot/VpsBackup children; a restore may take a
# safety snapshot first.
- apiGroups: ["vpsnap.dev"]
  resources: ["vpssnapshots", "vpsbackups"]
  verbs: ["create", "delete"]
- apiGroups: ["vpsnap.dev"]
  resources: ["vpsproviders/status", "vpssnapshots/status", "vpsbackups/status", "vpssnapshotschedules/status", "vpsrestores/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["vpsnap.dev"]
  resources: ["vpsproviders/finalizers", "vpssnapshots/finalizers", "vpsbackups/finalizers", "vpssnapshotschedules/finalizers", "vpsrestores/finalizers"]
  verbs: ["update"]
# Per-server occupancy for `kubectl vpsnap servers`/`why` (VpsOccupancy): written by the
# operator alone, listed once per account after a start, never watched.
- apiGroups: ["vpsnap.dev"]
  resources: ["vpsoccupancies"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: ["vpsnap.dev"]
  resources: ["vpsoccupancies/status"]
  verbs: ["patch"]
# Provider credentials: read by name, rotation noticed by a metadata-only watch. Never written.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Name of the metrics Service. */}}
{{- define "vpsnap.metricsService" -}}
{{- printf "%s-metrics" (include "vpsnap.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
PromQL label matchers of this release's scrape target: the job prometheus-operator names after
the metrics Service, in the release namespace (override with prometheusRule.selector).
*/}}
{{- define "vpsnap.alertSelector" -}}
{{- if .Values.prometheusRule.selector }}
{{- .Values.prometheusRule.selector }}
{{- else }}
{{- printf "job=%q,namespace=%q" (include "vpsnap.metricsService" .) .Release.Namespace }}
{{- end }}
{{- end }}

{{/*
Labels of the `helm test` pod: deliberately not the selector labels, so neither the metrics
Service, the PodDisruptionBudget nor the NetworkPolicy of the operator select it.
*/}}
{{- define "vpsnap.testLabels" -}}
app.kubernetes.io/name: {{ include "vpsnap.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
{{- end }}
