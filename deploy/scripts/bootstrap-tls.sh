#!/usr/bin/env bash
# TLS for the skewwatch injector without cert-manager: a private CA and a serving certificate for
# the injector Service's DNS names, made with openssl, and the files the self-signed overlay reads:
#   OUT_DIR/ca.crt ca.key           the CA (keep ca.key secret; it signs what the API server trusts)
#   OUT_DIR/tls.crt tls.key         the serving certificate and key (Secret skewwatch-injector-tls)
#   OUT_DIR/cabundle-patch.yaml     a JSON patch putting ca.crt into both webhooks' caBundle
# Usage: deploy/scripts/bootstrap-tls.sh [OUT_DIR]   (default: deploy/overlays/self-signed/tls)
#   then: kubectl apply -k deploy/overlays/self-signed
# Environment: SKEWWATCH_NAMESPACE (skewwatch), SKEWWATCH_SERVICE (skewwatch-injector),
#   SKEWWATCH_CLUSTER_DOMAIN (cluster.local), SKEWWATCH_CERT_DAYS (365), SKEWWATCH_CA_DAYS (3650).
# An existing CA in OUT_DIR is reused (renewing the serving certificate keeps the caBundle);
# delete ca.crt and ca.key to make a new one.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../overlays/self-signed/tls}"
ns="${SKEWWATCH_NAMESPACE:-skewwatch}"
svc="${SKEWWATCH_SERVICE:-skewwatch-injector}"
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

openssl ecparam -name prime256v1 -genkey -noout -out "$out/tls.key"
openssl req -new -key "$out/tls.key" -subj "/CN=${svc}.${ns}.svc" -out "$work/tls.csr"
cat > "$work/ext.cnf" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:${svc},DNS:${svc}.${ns},DNS:${svc}.${ns}.svc,DNS:${svc}.${ns}.svc.${domain}
EXT
openssl x509 -req -in "$work/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
  -CAcreateserial -CAserial "$work/ca.srl" -sha256 -days "$days" \
  -extfile "$work/ext.cnf" -out "$out/tls.crt" 2>/dev/null
openssl verify -CAfile "$out/ca.crt" "$out/tls.crt" >/dev/null

bundle="$(base64 < "$out/ca.crt" | tr -d '\n')"
{
  echo "# Written by deploy/scripts/bootstrap-tls.sh: the CA of tls.crt for both webhooks."
  for i in 0 1; do
    echo "- op: add"
    echo "  path: /webhooks/$i/clientConfig/caBundle"
    echo "  value: $bundle"
  done
} > "$out/cabundle-patch.yaml"
chmod 644 "$out/ca.crt" "$out/tls.crt" "$out/cabundle-patch.yaml"
echo "bootstrap-tls.sh: wrote $out (serving certificate for ${svc}.${ns}.svc, $days days)"
