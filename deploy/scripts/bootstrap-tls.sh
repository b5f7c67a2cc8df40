#!/usr/bin/env bash
# TLS for skewwatch without cert-manager: a private CA and serving certificates for the injector
# Service's and the collector Service's DNS names, made with openssl, and the files the
# self-signed overlay reads:
#   OUT_DIR/ca.crt ca.key           the CA (keep ca.key secret; it signs what the API server and
#                                   the agents trust)
#   OUT_DIR/tls.crt tls.key         the injector's serving certificate and key (Secret
#                                   skewwatch-injector-tls)
#   OUT_DIR/collector.crt collector.key   the collector's gRPC serving certificate and key
#                                   (Secret skewwatch-collector-tls, with ca.crt: what each agent
#                                   namespace's skewwatch-agent-credentials gets)
#   OUT_DIR/cabundle-patch.yaml     a JSON patch putting ca.crt into both webhooks' caBundle
# Usage: deploy/scripts/bootstrap-tls.sh [OUT_DIR]   (default: deploy/overlays/self-signed/tls)
#   then: kubectl apply -k deploy/overlays/self-signed
# Environment: SKEWWATCH_NAMESPACE (skewwatch), SKEWWATCH_SERVICE (skewwatch-injector),
#   SKEWWATCH_COLLECTOR_SERVICE (skewwatch-collector), SKEWWATCH_CLUSTER_DOMAIN (cluster.local), SKEWWATCH_CERT_DAYS (365), SKEWWATCH_CA_DAYS (3650).
# An existing CA in OUT_DIR is reused (renewing the serving certificates keeps the caBundle and
# the agents' ca.crt); delete ca.crt and ca.key to make a new one. Every run renews both serving
# certificates, so running it again is how to renew them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../overlays/self-signed/tls}"
ns="${SKEWWATCH_NAMESPACE:-skewwatch}"
svc="${SKEWWATCH_SERVICE:-skewwatch-injector}"
collector_svc="${SKEWWATCH_COLLECTOR_SERVICE:-skewwatch-collector}"
domain="${SKEWWATCH_CLUSTER_DOMAIN:-cluster.local}"
days="${SKEWWATCH_CERT_DAYS:-365}"
ca_days="${SKEWWATCH_CA_DAYS:-3650}"
command -v openssl >/dev/null || { echo "bootstrap-tls.sh: openssl not found" >&2; exit 2; }
mkdir -p "$out"
umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [ ! -s "$out/ca.crt" ] || [ ! -s "$out/ca.key" ]; then
  openssl ecparam -name prime256v1 -genkey -noout -out "$out/ca.key"
  openssl req -x509 -new -key "$out/ca.key" -sha256 -days "$ca_days" \
    -subj "/CN=${svc}-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$out/ca.crt"
fi

# serve SERVICE NAME: OUT_DIR/NAME.key and NAME.crt, a serving certificate for SERVICE's DNS names.
# Written beside and then moved into place, so a failed run leaves the previous pair whole.
serve() {
  local service="$1" name="$2"
  openssl ecparam -name prime256v1 -genkey -noout -out "$work/$name.key"
  openssl req -new -key "$work/$name.key" -subj "/CN=${service}.${ns}.svc" -out "$work/$name.csr"
  cat > "$work/$name.cnf" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:${service},DNS:${service}.${ns},DNS:${service}.${ns}.svc,DNS:${service}.${ns}.svc.${domain}
EXT
  openssl x509 -req -in "$work/$name.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
    -CAcreateserial -CAserial "$work/ca.srl" -sha256 -days "$days" \
    -extfile "$work/$name.cnf" -out "$work/$name.crt" 2>/dev/null
  openssl verify -CAfile "$out/ca.crt" "$work/$name.crt" >/dev/null
  mv -f "$work/$name.key" "$out/$name.key"
  mv -f "$work/$name.crt" "$out/$name.crt"
}
serve "$svc" tls
serve "$collector_svc" collector

bundle="$(base64 < "$out/ca.crt" | tr -d '\n')"
{
  echo "# Written by deploy/scripts/bootstrap-tls.sh: the CA of tls.crt for both webhooks."
  for i in 0 1; do
    echo "- op: add"
    echo "  path: /webhooks/$i/clientConfig/caBundle"
    echo "  value: $bundle"
  done
} > "$out/cabundle-patch.yaml"
chmod 644 "$out/ca.crt" "$out/tls.crt" "$out/collector.crt" "$out/cabundle-patch.yaml"
echo "bootstrap-tls.sh: wrote $out (serving certificates for ${svc}.${ns}.svc and ${collector_svc}.${ns}.svc, $days days)"
