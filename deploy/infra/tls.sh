#!/usr/bin/env bash
# A throw-away CA and a server certificate for 127.0.0.1 and localhost: tls.sh DIR.
# For local TLS brokers and databases (tests, trying SASL_SSL out); never for production.
# Writes ca.pem (trust this), server.key + server.crt, and server.pem (key then certificate,
# the PEM keystore Kafka reads). Idempotent: an existing, still valid set is reused.
set -euo pipefail
DIR=${1:?usage: $0 DIR}
say() { echo "[tls] $*"; }
command -v openssl >/dev/null || { echo "[tls] ERROR: openssl is needed: apt-get install -y openssl" >&2; exit 1; }
mkdir -p "$DIR"
cd "$DIR"
if [[ -f ca.pem && -f server.pem ]] && openssl x509 -checkend 86400 -noout -in server.crt >/dev/null; then
  say "reusing the CA and server certificate in $DIR"
  exit 0
fi
say "making a CA and a server certificate for 127.0.0.1/localhost in $DIR"
umask 077
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=leadrouter local CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "extendedKeyUsage=serverAuth" \
  "keyUsage=critical,digitalSignature,keyEncipherment" >server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
  -extfile server.ext -out server.crt 2>/dev/null
cat server.key server.crt >server.pem
chmod 644 ca.pem server.crt
rm -f server.csr server.ext
