{{/* Names, labels and the image reference shared by every template. */}}

{{- define "memorywatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "memorywatch.fullname" -}}
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

{{- define "memorywatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "memorywatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "memorywatch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "memorywatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: memorywatch
{{- end }}

{{- define "memorywatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "memorywatch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository:tag@digest when a digest is pinned. */}}
{{- define "memorywatch.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The PVC holding captures: an existing claim or the chart's own. */}}
{{- define "memorywatch.claimName" -}}
{{- default (printf "%s-captures" (include "memorywatch.fullname" .)) .Values.store.persistence.existingClaim }}
{{- end }}

{{/* Fail early on value combinations the schema cannot express. */}}
{{- define "memorywatch.validate" -}}
{{- if and (eq .Values.rbac.scope "namespaces") (empty .Values.watchNamespaces) }}
{{- fail "watchNamespaces must list at least one namespace when rbac.scope is namespaces" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.ha.enabled) (not .Values.sharding.enabled) }}
{{- fail "replicaCount above 1 needs ha.enabled=true (kopf peering, one active replica) or sharding.enabled=true (the replicas share the pods): kopf replicas without either would all scrape every pod" }}
{{- end }}
{{- if and .Values.ha.enabled .Values.sharding.enabled }}
{{- fail "ha.enabled and sharding.enabled exclude each other: with kopf peering only one replica runs the handlers and the pods the others own would not be scraped; keep sharding.enabled and set ha.enabled=false" }}
{{- end }}
{{- if and (not .Values.store.persistence.enabled) .Values.store.persistence.existingClaim }}
{{- fail "store.persistence.existingClaim is set but store.persistence.enabled is false; enable persistence to use the claim" }}
{{- end }}
{{- end }}

{{/* The namespaces whose Roles the operator needs in namespaces mode, de-duplicated and sorted. */}}
{{- define "memorywatch.watchNamespaces" -}}
{{- .Values.watchNamespaces | uniq | sortAlpha | toJson }}
{{- end }}

{{/* Sharding takes effect only with more than one replica: a single replica stays exactly as without it. */}}
{{- define "memorywatch.sharding" -}}
{{- if and .Values.sharding.enabled (gt (int .Values.replicaCount) 1) }}true{{- end }}
{{- end }}
