{{/* Chart name, truncated to the 63 characters of a label value. */}}
{{- define "clearance-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects. Kept to 50 characters so suffixes such as
"-metrics-reader" still fit the 63 characters of a label value.
*/}}
{{- define "clearance-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "clearance-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "clearance-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "clearance-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "clearance-operator.labels" -}}
helm.sh/chart: {{ include "clearance-operator.chart" . }}
{{ include "clearance-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: clearance-operator
{{- end }}

{{- define "clearance-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "clearance-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "clearance-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The manager's rules, taken from config/rbac/role.yaml (generated from the
controller's +kubebuilder:rbac markers and copied by hack/sync-chart.sh), so
the chart can never drift from what the code needs.
*/}}
{{/*
The namespace holding the connection Secrets of ClusterClearanceCredentials.
*/}}
{{- define "clearance-operator.clusterResourceNamespace" -}}
{{- default .Release.Namespace .Values.clusterCredentials.resourceNamespace }}
{{- end }}

{{- define "clearance-operator.managerRules" -}}
{{- $role := .Files.Get "files/rbac/manager-role.yaml" | fromYaml }}
{{- if not $role.rules }}
{{- fail "files/rbac/manager-role.yaml has no rules: run hack/sync-chart.sh" }}
{{- end }}
{{- toYaml $role.rules }}
{{- end }}

{{/*
The job label Prometheus gives the manager's metrics: the metrics Service's
name when scraped through the chart's ServiceMonitor; prometheusRule.job
overrides it for other scrape set-ups.
*/}}
{{- define "clearance-operator.metricsJob" -}}
{{- default (printf "%s-metrics" (include "clearance-operator.fullname" .)) .Values.prometheusRule.job }}
{{- end }}
