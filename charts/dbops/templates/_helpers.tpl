{{- define "dbops.name" -}}dbops{{- end -}}

{{- define "dbops.fullname" -}}
{{- if contains "dbops" .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-dbops" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "dbops.labels" -}}
app.kubernetes.io/name: dbops
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "dbops.selectorLabels" -}}
app.kubernetes.io/name: dbops
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The emulator's own name label: the operator's selectors never match its pods. */}}
{{- define "dbops.emulatorSelectorLabels" -}}
app.kubernetes.io/name: dbops-emulator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dbops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "dbops.fullname" .) .Values.serviceAccount.name }}{{- else -}}{{ default "default" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}

{{/* Rules on the namespaced dbops kinds and the Secrets they use. */}}
{{- define "dbops.namespacedRules" -}}
- apiGroups: ["dbops.dev"]
  resources: [databaseprojects, databasebranches, databasesnapshots, byokcredentials, databaseroles, databasesnapshotschedules]
  verbs: [get, list, watch, patch]
- apiGroups: ["dbops.dev"]
  resources: [databaseprojects/status, databasebranches/status, databasesnapshots/status, byokcredentials/status, databaseroles/status, databasesnapshotschedules/status]
  verbs: [patch]
# A DatabaseSnapshotSchedule makes its snapshots, and prunes them.
- apiGroups: ["dbops.dev"]
  resources: [databasesnapshots]
  verbs: [create, delete]
# A DatabaseBranch past its spec.expireAfter, and the DatabaseRoles of a
# project or branch being deleted: the operator deletes them.
- apiGroups: ["dbops.dev"]
  resources: [databasebranches, databaseroles]
  verbs: [delete]
# Secrets: the operator reads the Secrets resources name (credentials), writes
# the connection Secrets it owns, and watches only Secrets carrying its labels
# (label selectors cannot be expressed in RBAC; see the chart README).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: ["events.k8s.io"]
  resources: [events]
  verbs: [create, patch]
{{- if .Values.rollout.enabled }}
# rollout.enabled: a DatabaseRole's Alternate rotation restarts the
# Deployments and StatefulSets named in credentialRotation.rollout (only
# those whose pod template uses the role's Secret), as `kubectl rollout
# restart` does, and waits for them.
- apiGroups: ["apps"]
  resources: [deployments, statefulsets]
  verbs: [get, patch]
{{- end }}
{{- end -}}
