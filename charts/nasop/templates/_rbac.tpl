{{/*
The ONE list of Kubernetes API calls the operator makes. rbac.yaml renders it into a
ClusterRole (rbac.scope=cluster) or into a Role per watched namespace (rbac.scope=namespaced).
tests/packaging/required_api_calls.yaml holds the same list; tests/packaging/test_rbac.py fails
when the two drift in either direction (a missing grant or an extra one).
*/}}

{{/* Rules for namespaced resources: granted in every watched namespace, or cluster-wide. */}}
{{- define "nasop.rbac.namespacedRules" -}}
# NASExperiments: kopf watches them and patches finalizers/annotations; spec is never edited.
- apiGroups: ["nasop.dev"]
  resources: ["nasexperiments"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["nasop.dev"]
  resources: ["nasexperiments/status"]
  verbs: ["get", "patch", "update"]
# Trials: TorchX's kubernetes scheduler submits, polls and cancels Volcano jobs.
- apiGroups: ["batch.volcano.sh"]
  resources: ["jobs"]
  verbs: ["create", "get", "list", "watch", "delete", "patch"]
# Trial pods and their logs (failure messages for status and Events).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# The ConfigMap state store (one ConfigMap per experiment, owned by it).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create", "get", "list", "watch", "update", "patch", "delete"]
# Events on NASExperiments (kopf posts core Events; events.k8s.io for newer clients).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
# kopf peering in the watched namespaces (used when the kopf peering CRDs are installed).
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end -}}

{{/* Rules that only a ClusterRole can grant: cluster-scoped resources. */}}
{{- define "nasop.rbac.clusterRules" -}}
# kopf discovers namespaces when it watches all of them.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
# kopf watches CRDs to discover the resources it serves (seen in the operator tests' recorded calls).
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
# kopf cluster-wide peering.
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end -}}
