{{/* Name of the chart, for labels. */}}
{{- define "clustertrust.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the objects: the release name, or release-chart when the release name lacks the chart's. */}}
{{- define "clustertrust.fullname" -}}
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

{{/* Selector labels: stable for the life of a release (a Deployment's selector cannot change). */}}
{{- define "clustertrust.selectorLabels" -}}
app.kubernetes.io/name: {{ include "clustertrust.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "clustertrust.labels" -}}
{{ include "clustertrust.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "clustertrust.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "clustertrust.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "clustertrust.servingSecret" -}}
{{- default (printf "%s-serving-cert" (include "clustertrust.fullname" .)) .Values.tls.secretName -}}
{{- end -}}

{{/* Which parts this release renders. */}}
{{- define "clustertrust.servedObjects" -}}
{{- if has .Values.install (list "all" "served") }}true{{ end -}}
{{- end -}}
{{- define "clustertrust.webhookObjects" -}}
{{- if has .Values.install (list "all" "webhook") }}true{{ end -}}
{{- end -}}

{{/* Namespace of the leader election Lease, in the cluster the webhook reads. */}}
{{- define "clustertrust.leaseNamespace" -}}
{{- if .Values.leaderElection.namespace -}}
{{- .Values.leaderElection.namespace -}}
{{- else if eq .Values.install "webhook" -}}
{{- .Values.hosted.servedNamespace -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/*
GOMEMLIMIT from resources.limits.memory: goMemLimitPercent of it, in MiB. Only whole quantities with a
binary or decimal suffix (or none) are understood; anything else, or a limit so small the GC would run
constantly, fails the render with the reason.
*/}}
{{- define "clustertrust.goMemLimit" -}}
{{- $raw := (.Values.resources.limits | default dict).memory -}}
{{- if $raw -}}
{{- $mem := kindIs "float64" $raw | ternary (printf "%.0f" $raw) (toString $raw) -}}
{{- $digits := regexFind "^[0-9]+" $mem -}}
{{- $unit := trimPrefix $digits $mem -}}
{{- $factors := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 -}}
{{- if or (not $digits) (not (hasKey $factors $unit)) -}}
{{- fail (printf "resources.limits.memory %q: GOMEMLIMIT is derived from it, so write a whole number with k, M, G, Ki, Mi, Gi or no suffix" $mem) -}}
{{- end -}}
{{- if gt (add (len $digits) (len (toString (index $factors $unit)))) 16 -}}
{{- fail (printf "resources.limits.memory %q is beyond any machine: GOMEMLIMIT is derived from it" $mem) -}}
{{- end -}}
{{- $percent := int64 (.Values.goMemLimitPercent | default 80) -}}
{{- $mib := div (mul (int64 $digits) (index $factors $unit) $percent) 104857600 -}}
{{- if lt $mib 32 -}}
{{- fail (printf "resources.limits.memory %s at goMemLimitPercent %d gives a GOMEMLIMIT of %dMiB: the webhook needs a limit of at least 64Mi" $mem $percent $mib) -}}
{{- end -}}
{{- printf "%dMiB" $mib -}}
{{- end -}}
{{- end -}}
