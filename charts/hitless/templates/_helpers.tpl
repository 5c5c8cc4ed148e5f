{{/* The controller's name, labels and image. */}}
{{- define "hitless.name" -}}hitless-controller{{- end }}

{{- define "hitless.selectorLabels" -}}
app.kubernetes.io/name: hitless-controller
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hitless.labels" -}}
{{ include "hitless.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "hitless.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/* The journal, the lock and the election live in hitless-system. */}}
{{- define "hitless.namespace" -}}
{{- if ne .Release.Namespace "hitless-system" -}}
{{- fail "install the hitless chart in namespace hitless-system (helm install --namespace hitless-system --create-namespace): its journal, lock and leader election live there" -}}
{{- end -}}
hitless-system
{{- end }}
