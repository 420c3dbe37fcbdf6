{{/*
Names and labels shared by every template.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "nutshell.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every name: fullnameOverride, else the release name when it already
contains the chart name ("nutshell"), else "<release>-<chart>". Cut to 46 characters so
that the longest suffix ("-operator-metrics") still fits a 63-character DNS label.
*/}}
{{- define "nutshell.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 46 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 46 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 46 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "nutshell.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of everything the chart makes. Call with (dict "ctx" $ "component" "operator"). */}}
{{- define "nutshell.labels" -}}
helm.sh/chart: {{ include "nutshell.chart" .ctx }}
{{ include "nutshell.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: nutshell
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- end -}}

{{/* The subset that selects pods: it must never change across upgrades. */}}
{{- define "nutshell.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nutshell.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The operator's ServiceAccount. */}}
{{- define "nutshell.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (printf "%s-operator" (include "nutshell.fullname" .)) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* An image reference from {repository, tag, digest}. Call with (dict "image" X "ctx" $). */}}
{{- define "nutshell.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/*
The Mesh's spec: mesh.spec with the images filled in from images.* where the spec does
not set them.
*/}}
{{- define "nutshell.meshSpec" -}}
{{- $spec := deepCopy .Values.mesh.spec -}}
{{- $proxy := default (dict) $spec.proxy -}}
{{- if not $proxy.image -}}
{{- $_ := set $proxy "image" (include "nutshell.image" (dict "image" .Values.images.proxy "ctx" .)) -}}
{{- end -}}
{{- if not $proxy.imagePullPolicy -}}
{{- $_ := set $proxy "imagePullPolicy" .Values.images.proxy.pullPolicy -}}
{{- end -}}
{{- $_ := set $spec "proxy" $proxy -}}
{{- $injector := default (dict) $spec.injector -}}
{{- if not $injector.image -}}
{{- $_ := set $injector "image" (include "nutshell.image" (dict "image" .Values.images.injector "ctx" .)) -}}
{{- end -}}
{{- $_ := set $spec "injector" $injector -}}
{{- /* An empty resources map means "the defaults": leave it out. */ -}}
{{- range $part := list "proxy" "init" "injector" -}}
{{- $p := get $spec $part -}}
{{- if and (kindIs "map" $p) (hasKey $p "resources") (empty (get $p "resources")) -}}
{{- $_ := unset $p "resources" -}}
{{- end -}}
{{- end -}}
{{- toYaml $spec -}}
{{- end -}}
