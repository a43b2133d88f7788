{{/*
The ONE list of Kubernetes API calls the operator makes. rbac.yaml renders it into a
ClusterRole (rbac.scope=cluster) or into a Role per watched namespace (rbac.scope=namespaced).
tests/packaging/required_api_calls.yaml holds the same list, derived from the calls the operator
tests record; tests/packaging/test_rbac.py fails when they drift in either direction.
*/}}

{{/* Rules for namespaced resources: granted in every watched namespace, or cluster-wide. */}}
{{- define "nasop.rbac.namespacedRules" -}}
# NASExperiments: kopf lists/watches them; get checks one still exists after a failed write;
# patch only removes the finalizer older nasop builds added. The spec is never written.
- apiGroups: ["nasop.dev"]
  resources: ["nasexperiments"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["nasop.dev"]
  resources: ["nasexperiments/status"]
  verbs: ["patch"]
{{- if has "volcano" .Values.rbac.trialSchedulers }}
# Trials as Volcano jobs (spec.trial.scheduler: volcano): TorchX submits them; list finds a
# trial's job by label (adoption, cancellation on delete); list + watch keep the operator's one
# shared view of the trial jobs (each tick reads its trials' jobs from it); get asks for a job
# that view has not seen yet; delete cancels.
- apiGroups: ["batch.volcano.sh"]
  resources: ["jobs"]
  verbs: ["create", "get", "list", "watch", "delete"]
# A pending trial's PodGroup (named after its job): why Volcano does not admit or place it.
- apiGroups: ["scheduling.volcano.sh"]
  resources: ["podgroups"]
  verbs: ["get"]
{{- end }}
{{- if has "job" .Values.rbac.trialSchedulers }}
# Trials as batch/v1 Jobs (spec.trial.scheduler: job): the same calls as for Volcano jobs.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "list", "watch", "delete"]
# spec.trial.queue: the named Kueue LocalQueue must exist (checked when a search opens).
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["localqueues"]
  verbs: ["get"]
# A suspended trial Job's Workload (by its job-uid label): why Kueue does not admit it.
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["workloads"]
  verbs: ["list"]
# trial.replicas > 1: one headless Service per experiment names the trial pods in DNS for the
# rendezvous; created once (owned by the experiment, removed by garbage collection).
- apiGroups: [""]
  resources: ["services"]
  verbs: ["create"]
{{- end }}
# A trial's pods have generated names: list finds them by their job-name label, to read a
# trial's metrics (its pods' logs and termination messages), the log tail of a failed trial, and
# the reason a pending trial's pods wait (scheduling, image pull); list + watch keep the
# operator's one shared view of the trial pods, read by every tick. patch removes nasop's
# nasop.dev/harvest finalizer from a trial pod once its output is read and recorded (only that:
# a JSON patch that tests the finalizer's index).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "patch"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# The ConfigMap state store: per experiment a core (read, replaced with resourceVersion) and
# chunks of 100 ended trials (created once, read by name); all owned by the experiment and removed
# by garbage collection, so no list or delete.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create", "get", "update"]
# Events on NASExperiments (kopf posts core/v1 Events).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# Shard leases (sharding.shards > 0: replicas split the experiments, nasop/controller/shards.py),
# in the first watched namespace (or the release namespace when all are watched): list reads them
# all at once, create/update take and renew them with resourceVersion.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["list", "create", "update"]
# kopf peering in the watched namespaces (NASOP_PEERING with watched namespaces).
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["list", "watch", "patch"]
{{- end -}}

{{/* Rules that only a ClusterRole can grant: cluster-scoped resources. */}}
{{- define "nasop.rbac.clusterRules" -}}
# kopf watches CRDs to discover the resources it serves (when it watches all namespaces; with
# named namespaces nasop turns kopf's scanning off and needs nothing cluster-scoped). Namespaces
# themselves are never listed: kopf lists them only for name patterns, which nasop does not take.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
# kopf cluster-wide peering (NASOP_PEERING, all namespaces watched).
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["list", "watch", "patch"]
{{- end -}}
