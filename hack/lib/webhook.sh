# The sidecar injector's MutatingWebhookConfiguration for a webhook served outside the
# cluster (url: clientConfig), as the harness and the local demo run it. Sourced.
# The operator writes the in-cluster equivalent (service: clientConfig) itself.
#
# render_webhook NAME URL CA_FILE FAILURE_POLICY  -> YAML on stdout
#
# Two entries, as Istio has: one for labelled namespaces (pods may opt out with
# nutshell.io/inject=false), one for pods that opt in (nutshell.io/inject=true) in
# namespaces that carry no label. System namespaces are excluded by name in both, so
# the API server never even calls the webhook for them.
render_webhook() {
  local name="$1" url="$2" ca policy="$4" entry
  ca="$(base64 -w0 <"$3")"
  echo "apiVersion: admissionregistration.k8s.io/v1"
  echo "kind: MutatingWebhookConfiguration"
  echo "metadata:"
  echo "  name: ${name}"
  echo "webhooks:"
  for entry in namespace object; do
    cat <<YAML
- name: ${entry}.sidecar.nutshell.io
  clientConfig: {url: "${url}", caBundle: "${ca}"}
  rules: [{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [pods]}]
  namespaceSelector:
    matchExpressions:
YAML
    if [ "${entry}" = namespace ]; then
      echo "    - {key: nutshell.io/inject, operator: In, values: [enabled]}"
    else
      echo "    - {key: nutshell.io/inject, operator: DoesNotExist}"
    fi
    cat <<YAML
    - {key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, kube-public, kube-node-lease, nutshell-system]}
  objectSelector:
    matchExpressions:
YAML
    if [ "${entry}" = namespace ]; then
      echo "    - {key: nutshell.io/inject, operator: NotIn, values: [\"false\"]}"
    else
      echo "    - {key: nutshell.io/inject, operator: In, values: [\"true\"]}"
    fi
    cat <<YAML
  sideEffects: None
  admissionReviewVersions: [v1]
  failurePolicy: ${policy}
  timeoutSeconds: 5
  reinvocationPolicy: Never
YAML
  done
}

# make_serving_cert DIR: a throwaway CA (DIR/ca.crt) and a certificate for IP
# 127.0.0.1 (DIR/tls.crt, DIR/tls.key), ECDSA P-256, valid one day... or `days`.
make_serving_cert() {
  local dir="$1" days="${2:-1}"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "${days}" \
    -subj /CN=nutshell-local-ca -keyout "${dir}/ca.key" -out "${dir}/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=nutshell-injector \
    -keyout "${dir}/tls.key" -out "${dir}/tls.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"${dir}/ext.cnf"
  openssl x509 -req -in "${dir}/tls.csr" -CA "${dir}/ca.crt" -CAkey "${dir}/ca.key" \
    -CAcreateserial -days "${days}" -extfile "${dir}/ext.cnf" -out "${dir}/tls.crt" 2>/dev/null
}
