{{/*
order-proxy as a native sidecar (an init container with restartPolicy: Always), for other
charts to include with this chart as a dependency:

  spec:
    initContainers:
      {{- include "order-proxy.sidecar.container" . | nindent 6 }}
    volumes:
      {{- include "order-proxy.sidecar.volumes" . | nindent 6 }}

The API listens on 127.0.0.1 (callers in the pod need no client key); the internal port is
on the pod IP for the kubelet and Prometheus (PodMonitor: metrics.podMonitor).
*/}}
{{- define "order-proxy.sidecar.container" -}}
{{- $root := . }}
{{- $prefix := .Values.sidecar.volumePrefix }}
- name: order-proxy
  restartPolicy: Always
  image: {{ include "order-proxy.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["order-proxy"]
  args: ["serve"]
  ports:
    - name: {{ .Values.sidecar.portName }}
      containerPort: {{ .Values.ports.internal }}
      protocol: TCP
  env:
    {{- include "order-proxy.env" (dict "root" $root "host" "127.0.0.1" "internalHost" "0.0.0.0") | nindent 4 }}
  envFrom:
    - configMapRef:
        name: {{ include "order-proxy.envConfigMap" . }}
  resources:
    {{- toYaml .Values.sidecar.resources | nindent 4 }}
  securityContext:
    {{- include "order-proxy.containerSecurityContext" . | nindent 4 }}
  {{- include "order-proxy.probes" (dict "port" .Values.sidecar.portName "readiness" .Values.sidecar.readinessPeriodSeconds "liveness" .Values.sidecar.livenessPeriodSeconds) | nindent 2 }}
  volumeMounts:
    - name: {{ $prefix }}-tmp
      mountPath: /tmp
    - name: {{ $prefix }}-config
      mountPath: /etc/order-proxy
      readOnly: true
    - name: {{ $prefix }}-secrets
      mountPath: /var/run/secrets/order-proxy
      readOnly: true
{{- end }}

{{- define "order-proxy.sidecar.volumes" -}}
{{- $prefix := .Values.sidecar.volumePrefix }}
- name: {{ $prefix }}-tmp
  emptyDir:
    sizeLimit: 64Mi
- name: {{ $prefix }}-config
  configMap:
    name: {{ include "order-proxy.configConfigMap" . }}
- name: {{ $prefix }}-secrets
  secret:
    secretName: {{ .Values.secrets.name }}
    defaultMode: 0440
{{- end }}
