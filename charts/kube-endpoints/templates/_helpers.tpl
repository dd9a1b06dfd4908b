{{/* Chart name, overridable. */}}
{{- define "kube-endpoints.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart>, or the release name when it already contains
the chart name. Truncated to 63 characters (a DNS label) because it names the
Service, the Lease and the RBAC objects.
*/}}
{{- define "kube-endpoints.fullname" -}}
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

{{- define "kube-endpoints.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "kube-endpoints.labels" -}}
helm.sh/chart: {{ include "kube-endpoints.chart" . }}
{{ include "kube-endpoints.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kube-endpoints
{{- end }}

{{/* Selector labels: must never change between upgrades (Deployment selectors are immutable). */}}
{{- define "kube-endpoints.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kube-endpoints.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kube-endpoints.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kube-endpoints.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kube-endpoints.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $ref .Values.image.digest }}
{{- else }}
{{- $ref }}
{{- end }}
{{- end }}

{{/* The Lease the replicas elect a leader on (in the release namespace). */}}
{{- define "kube-endpoints.leaseName" -}}
{{- include "kube-endpoints.fullname" . }}
{{- end }}

{{/*
What the controller does to the objects of the namespaces it watches, derived
from crates/controller/src/{run,reconcile}.rs:
- ClusterEndpoints: list+watch (the informer), get; status is written with
  server-side apply (patch; update for clients that PUT status); finalizers
  update is what the OwnerReferencesPermissionEnforcement admission plugin
  requires to set blockOwnerDeletion on the owned objects. The controller
  never creates, updates or deletes ClusterEndpoints themselves.
- Services: watched (cache), created/updated by server-side apply (patch;
  create for the first apply), ports of adopted Services pruned with a merge
  patch. Never deleted: owner references let the garbage collector do that.
- Endpoints and EndpointSlices: the same, plus delete (stale slices, and the
  compatibility Endpoints when --compat-endpoints=false).
- Events (events.k8s.io/v1): created, and patched when a series repeats.
*/}}
{{- define "kube-endpoints.namespacedRules" -}}
{{- range $group := .Values.groups }}
- apiGroups: [{{ $group | quote }}]
  resources: [clusterendpoints]
  verbs: [get, list, watch]
- apiGroups: [{{ $group | quote }}]
  resources: [clusterendpoints/status]
  verbs: [get, patch, update]
- apiGroups: [{{ $group | quote }}]
  resources: [clusterendpoints/finalizers]
  verbs: [update]
{{- end }}
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [endpoints]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- if .Values.probeCredentials.enabled }}
{{- /* Probe credentials: the controller lists and watches only objects
labelled kube-endpoints.io/probe-credentials=true (RBAC cannot say so);
it never gets one by name. */}}
- apiGroups: [""]
  resources: [secrets, configmaps]
  verbs: [list, watch]
{{- end }}
{{- end }}

{{/* A CIDR from a CIDR or a single address (its /32 or /128). */}}
{{- define "kube-endpoints.cidr" -}}
{{- if contains "/" . }}{{ . }}{{- else if contains ":" . }}{{ . }}/128{{- else }}{{ . }}/32{{- end }}
{{- end }}
