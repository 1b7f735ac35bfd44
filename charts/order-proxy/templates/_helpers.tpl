{{/* The chart name, or nameOverride. */}}
{{- define "order-proxy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of the objects: the release name when it already says order-proxy. */}}
{{- define "order-proxy.fullname" -}}
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

{{/* Labels on every object. */}}
{{- define "order-proxy.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "order-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: order-proxy
{{- end }}

{{/* The gateway pods' selector. */}}
{{- define "order-proxy.gatewaySelector" -}}
app.kubernetes.io/name: {{ include "order-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "order-proxy.serviceAccountName" -}}
{{- default (include "order-proxy.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{- define "order-proxy.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "order-proxy.envConfigMap" -}}
{{- printf "%s-env" (include "order-proxy.fullname" .) }}
{{- end }}

{{- define "order-proxy.configConfigMap" -}}
{{- printf "%s-config" (include "order-proxy.fullname" .) }}
{{- end }}

{{/* Environment of the proxy container, gateway or sidecar ("host", "internalHost"). */}}
{{- define "order-proxy.env" -}}
- name: PROXY_HOST
  value: {{ .host | quote }}
- name: PROXY_PORT
  value: {{ .root.Values.ports.http | quote }}
- name: PROXY_INTERNAL_PORT
  value: {{ .root.Values.ports.internal | quote }}
{{- if .internalHost }}
- name: PROXY_INTERNAL_HOST
  value: {{ .internalHost | quote }}
{{- end }}
- name: PROXY_CONFIG_FILE
  value: /etc/order-proxy/config.toml
- name: JUSPAY_API_KEY_FILE
  value: {{ printf "/var/run/secrets/order-proxy/%s" .root.Values.secrets.apiKeyKey }}
{{- if .root.Values.secrets.webhookPasswordKey }}
- name: JUSPAY_WEBHOOK_PASSWORD_FILE
  value: {{ printf "/var/run/secrets/order-proxy/%s" .root.Values.secrets.webhookPasswordKey }}
{{- end }}
{{- if .root.Values.redis.enabled }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ default .root.Values.secrets.name .root.Values.redis.urlSecret.name }}
      key: {{ .root.Values.redis.urlSecret.key }}
      {{- if .root.Values.redis.urlSecret.optional }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}

{{/* The hardened container securityContext, shared by gateway and sidecar. */}}
{{- define "order-proxy.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* The pod securityContext: uid/gid 10001, as the image's user. */}}
{{- define "order-proxy.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Probes on the internal port (by name): startup, readiness, liveness. */}}
{{- define "order-proxy.probes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  periodSeconds: 2
  timeoutSeconds: 2
  failureThreshold: 15
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
  periodSeconds: {{ .readiness }}
  timeoutSeconds: 2
  failureThreshold: 2
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  periodSeconds: {{ .liveness }}
  timeoutSeconds: 2
  failureThreshold: 3
{{- end }}

{{/* A checksum of the settings, so that changing one rolls the pods (as kustomize's
     hashed ConfigMap names do). */}}
{{- define "order-proxy.settingsChecksum" -}}
{{- printf "%s\n%s" (toYaml .Values.settings) .Values.configToml | sha256sum }}
{{- end }}
