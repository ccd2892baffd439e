{{/* The name of every object: the release name (certwright in the plain manifests). */}}
{{- define "certwright.name" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "certwright.labels" -}}
app.kubernetes.io/name: {{ include "certwright.name" . }}
{{- end -}}
