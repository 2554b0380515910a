{{/* Chart name, overridable for forks. */}}
{{- define "gpumix.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified name of the operator's objects. The release name alone when it already contains
the chart name (`helm install gpumix ...` gives "gpumix", not "gpumix-gpumix").
*/}}
{{- define "gpumix.fullname" -}}
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

{{- define "gpumix.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: stable for the life of the release (Deployment selectors are immutable). */}}
{{- define "gpumix.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gpumix.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "gpumix.labels" -}}
{{ include "gpumix.selectorLabels" . }}
app.kubernetes.io/part-of: gpumix
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "gpumix.chart" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Labels the generated CRD templates add to their own (name and part-of come from the generator,
so they are left out here to avoid duplicate keys).
*/}}
{{- define "gpumix.crdLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "gpumix.chart" . }}
{{- end -}}

{{- define "gpumix.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gpumix.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository@digest when a digest is pinned, else repository:tag (tag defaults to appVersion). */}}
{{- define "gpumix.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* The operator's configuration file (prices, discovery labels, metrics, the routers' image:
the operator's own, which carries `gpumix router`), as YAML. */}}
{{- define "gpumix.config" -}}
pricing:
  defaults: {{- toYaml .Values.pricing.defaults | nindent 4 }}
discovery:
  gpuTypeLabels: {{- toYaml .Values.discovery.gpuTypeLabels | nindent 4 }}
  capacityTypeLabels: {{- toYaml .Values.discovery.capacityTypeLabels | nindent 4 }}
metrics:
  port: {{ .Values.metrics.port }}
api:
  enabled: {{ .Values.api.enabled }}
  port: {{ .Values.api.port }}
  whatifTimeLimitSeconds: {{ .Values.api.whatifTimeLimitSeconds }}
{{- with .Values.prometheus.url }}
prometheus:
  url: {{ . | quote }}
  intervalSeconds: {{ $.Values.prometheus.intervalSeconds }}
  timeoutSeconds: {{ $.Values.prometheus.timeoutSeconds }}
{{- end }}
calibration:
  enabled: {{ .Values.calibration.enabled }}
router:
  image: {{ include "gpumix.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  replicas: {{ .Values.router.replicas }}
{{- end -}}
