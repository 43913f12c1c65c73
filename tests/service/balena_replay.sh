#!/usr/bin/env bash
# Replays every call a meta-balena build makes to balenaSign, with curl and jq as its bbclasses make them
# (written from the table in dropin.md 1.1, not copied from meta-balena), against SIGN_API, then checks each
# artifact with the tool that checks it on a device or in the build.
#
# Needs: SIGN_API (http://127.0.0.1:PORT/balena), SIGN_API_KEY, SIGN_GRUB_KEY_ID, SIGN_KMOD_KEY_ID,
# SIGN_EFI_PK_KEY_ID, SIGN_EFI_KEK_KEY_ID, SIGN_RSA_KEY_ID, VECTORS (tests/vectors/balena), WORK (an empty dir).
# Prints "ok <what>" per check; exits non-zero at the first failure.
set -euo pipefail
: "${SIGN_API:?}" "${SIGN_API_KEY:?}" "${SIGN_GRUB_KEY_ID:?}" "${SIGN_KMOD_KEY_ID:?}" "${SIGN_EFI_PK_KEY_ID:?}"
: "${SIGN_EFI_KEK_KEY_ID:?}" "${SIGN_RSA_KEY_ID:?}" "${VECTORS:?}" "${WORK:?}"
PY=${PYTHON:-python3}
cd "$WORK"
ok() { echo "ok $*"; }
fail() { echo "FAIL $*" >&2; exit 1; }
must_fail() { if "$@" >/dev/null 2>&1; then fail "accepted: $*"; fi; }
tamper() { cp "$1" "$2"; printf '\x55' | dd of="$2" bs=1 seek="$3" conv=notrunc status=none; }

# ---- public material (recipes-support/balena-keys: curl --fail, no key) ----------------------------------------
curl --fail -s "${SIGN_API}/kmod/cert/${SIGN_KMOD_KEY_ID}" | jq -r .cert > kmod.crt
openssl x509 -in kmod.crt -noout -subject | grep -q balenaOS || fail "kmod.crt subject lacks balenaOS"
curl --fail -s "${SIGN_API}/gpg/key/${SIGN_GRUB_KEY_ID}" | jq -r .key | gpg --dearmor > grub.gpg
curl --fail -s "${SIGN_API}/secureboot/pk/${SIGN_EFI_PK_KEY_ID}" > pk.json
jq -r .pk pk.json | base64 -d > PK.auth
jq -r .esl pk.json | base64 -d > PK.esl
curl --fail -s "${SIGN_API}/secureboot/kek/${SIGN_EFI_KEK_KEY_ID}" > kek.json
jq -r .kek kek.json | base64 -d > KEK.auth
jq -r .esl kek.json | base64 -d > KEK.esl
curl --fail -s "${SIGN_API}/secureboot/pk/${SIGN_EFI_PK_KEY_ID}" | jq -r .der[0] | base64 -d > pk.der
openssl x509 -inform DER -in pk.der -out pk.crt
curl --fail -s "${SIGN_API}/gpg/keys" | jq -e --arg k "${SIGN_GRUB_KEY_ID^^}" '.keys | index($k) != null' >/dev/null \
  || fail "/gpg/keys lacks the GRUB key"
curl --fail -s "${SIGN_API}/rsa/key/${SIGN_RSA_KEY_ID}" | jq -r .key > rsa.pub.pem
ok public material

post() {  # post PATH REQUEST-FILE [extra curl flags...]: the common POST of every sign-*.bbclass
  local path=$1 req=$2; shift 2
  curl -X POST -H "Content-Type: application/json" -H "X-API-Key: ${SIGN_API_KEY}" "$@" -d "@${req}" "${SIGN_API}${path}"
}

# ---- 1. sign-efi: POST /secureboot/efi (curl --fail --retry 5), then sbverify and osslsigncode --------------------
cp "${VECTORS}/SetNull.efi" kernel.efi
echo "{\"key_id\": \"${SIGN_KMOD_KEY_ID}\", \"payload\": \"$(base64 -w 0 kernel.efi)\"}" > efi.req
post /secureboot/efi efi.req --fail --retry 5 -s | jq -r .signed | base64 -d > kernel.efi.signed
sbverify --cert kmod.crt kernel.efi.signed 2>&1 | grep -q "Signature verification OK" || fail sbverify
osslsigncode verify -in kernel.efi.signed -CAfile kmod.crt 2>&1 | grep -q "Signature verification: ok" \
  || fail osslsigncode
size=$(stat -c %s kernel.efi.signed)
tamper kernel.efi.signed tampered.efi 200
must_fail sbverify --cert kmod.crt tampered.efi
if osslsigncode verify -in tampered.efi -CAfile kmod.crt 2>&1 | grep -q "Signature verification: ok"; then
  fail "osslsigncode accepted a tampered image"
fi
ok "efi ($size bytes): sbverify, osslsigncode; tampered refused"

# ---- 2. sign-gpg: POST /gpg/sign of the signed kernel (curl --retry 5 --fail), gpgv, sqv, GRUB's rules -------------
echo "{\"key_id\": \"${SIGN_GRUB_KEY_ID}\", \"payload\": \"$(base64 -w 0 kernel.efi.signed)\"}" > gpg.req
post /gpg/sign gpg.req --retry 5 --fail -s | jq -r .signature | base64 -d > kernel.efi.signed.sig
gpgv --keyring ./grub.gpg kernel.efi.signed.sig kernel.efi.signed 2>/dev/null || fail gpgv
sqv --keyring grub.gpg kernel.efi.signed.sig kernel.efi.signed >/dev/null || fail sqv
"$PY" - kernel.efi.signed.sig grub.gpg <<'PYEOF' || fail "GRUB packet rules"
import sys
sig, key = (open(p, "rb").read() for p in sys.argv[1:3])
def packet(b):  # first packet: (tag, body), old or new framing
    h = b[0]; assert h & 0x80, "not a packet"
    if h & 0x40:
        tag, l0 = h & 0x3F, b[1]
        if l0 < 192: return tag, b[2:2 + l0]
        if l0 < 224: n = ((l0 - 192) << 8) + b[2] + 192; return tag, b[3:3 + n]
        assert l0 == 255; n = int.from_bytes(b[2:6], "big"); return tag, b[6:6 + n]
    tag, lt = (h >> 2) & 0xF, h & 3
    w = {0: 1, 1: 2, 2: 4}[lt]; n = int.from_bytes(b[1:1 + w], "big"); return tag, b[1 + w:1 + w + n]
tag, body = packet(sig)
assert tag == 2, "first packet is not a signature"
assert body[0] == 4 and body[1] == 0x00, "not a v4 binary-document signature"
assert body[2] in (1, 3, 17), "public-key algorithm GRUB does not take"
assert body[3] in (8, 10), "hash GRUB's image does not build in"
hl = int.from_bytes(body[4:6], "big"); ul = int.from_bytes(body[6 + hl:8 + hl], "big")
assert ul <= 4096, "unhashed area too large"
area, pos, issuer = body[8 + hl:8 + hl + ul], 0, None
while pos < len(area):
    n = area[pos]; pos += 1
    if n >= 192: n = ((n - 192) << 8) + area[pos] + 192; pos += 1
    if area[pos] & 0x7F == 16: issuer = area[pos + 1:pos + n]
    pos += n
assert issuer is not None and len(issuer) == 8, "no issuer key id in the unhashed area"
ktag, kbody = packet(key)
import hashlib
fpr = hashlib.sha1(b"\x99" + len(kbody).to_bytes(2, "big") + kbody).digest()
assert ktag == 6 and fpr[-8:] == issuer, "issuer is not the GRUB key"
PYEOF
tamper kernel.efi.signed tampered.signed 100
must_fail gpgv --keyring ./grub.gpg kernel.efi.signed.sig tampered.signed
must_fail sqv --keyring grub.gpg kernel.efi.signed.sig tampered.signed
ok "gpg: gpgv, sqv, GRUB packet rules; tampered refused"

# ---- 3. sign-kmod: POST /kmod/sign (curl --retry 5 --fail --silent), modinfo, openssl cms -------------------------
cp "${VECTORS}/signery_test.ko" pcan.ko
echo "{\"key_id\": \"${SIGN_KMOD_KEY_ID}\", \"payload\": \"$(base64 -w 0 pcan.ko)\"}" > kmod.req
post /kmod/sign kmod.req --retry 5 --fail --silent | jq -r .signed | base64 -d > pcan.ko.signed
cp pcan.ko.signed signed.ko  # modinfo wants a name ending in .ko
modinfo signed.ko | grep -q "sig_id:.*PKCS#7" || fail "modinfo sig_id"
modinfo signed.ko | grep -q "sig_hashalgo:.*sha512" || fail "modinfo sig_hashalgo"
modinfo signed.ko | grep -q "signer:.*balenaOS" || fail "modinfo signer"
"$PY" - signed.ko <<'PYEOF'
import sys
data = open(sys.argv[1], "rb").read()
assert data.endswith(b"~Module signature appended~\n")
n = int.from_bytes(data[-28 - 4:-28], "big")
end = len(data) - 28 - 12
open("sig.der", "wb").write(data[end - n:end]); open("stripped.ko", "wb").write(data[:end - n])
PYEOF
cmp -s stripped.ko pcan.ko || fail "the signed module does not start with the module"
openssl cms -verify -binary -inform DER -in sig.der -content stripped.ko -certfile kmod.crt -nointern -noverify \
  -out /dev/null 2>/dev/null || fail "openssl cms (kmod)"
tamper stripped.ko tampered.ko 64
must_fail openssl cms -verify -binary -inform DER -in sig.der -content tampered.ko -certfile kmod.crt -nointern \
  -noverify -out /dev/null
ok "kmod: modinfo, openssl cms; tampered refused"

# ---- 4. image_types_balena: POST /cert/sign of a local digest (curl --retry 5 --fail --silent), pkeyutl ------------
head -c 100000 /dev/urandom > balena.balenaos-img
digest=$(openssl dgst -sha256 balena.balenaos-img | awk '{print $NF}')
echo "{\"cert_id\": \"${SIGN_KMOD_KEY_ID}\", \"digest\": \"${digest}\"}" > cert.req
post /cert/sign cert.req --retry 5 --fail --silent | jq -r .signature | base64 -d > balena.balenaos-img.sig
openssl dgst -sha256 -binary balena.balenaos-img > img.sha256
openssl pkeyutl -verify -in img.sha256 -certin -inkey kmod.crt -sigfile balena.balenaos-img.sig >/dev/null \
  || fail "pkeyutl -verify"
tamper img.sha256 tampered.sha256 3
must_fail openssl pkeyutl -verify -in tampered.sha256 -certin -inkey kmod.crt -sigfile balena.balenaos-img.sig
ok "cert/sign: openssl pkeyutl -verify -certin (the flasher's check); tampered refused"

# ---- 5. sign-rsa: POST /rsa/sign (no --fail: only 2xx may carry a body jq reads), rpi-eeprom-digest -v -------------
head -c 200000 /dev/urandom > pieeprom.bin
echo "{\"key_id\": \"${SIGN_RSA_KEY_ID}\", \"payload\": \"$(base64 -w 0 pieeprom.bin)\"}" > rsa.req
code=$(post /rsa/sign rsa.req --retry 5 --silent --show-error --max-time 120 -o rsa.json -w '%{http_code}')
[ "$code" = 200 ] || fail "/rsa/sign answered $code"
jq -r .signature rsa.json | base64 -d > pieeprom.sig
[ "$(sed -n 1p pieeprom.sig)" = "$(sha256sum pieeprom.bin | awk '{print $1}')" ] || fail "digest line"
grep -q '^ts: [0-9]\+$' pieeprom.sig || fail "ts line"
grep '^rsa2048: ' pieeprom.sig | cut -d' ' -f2 | xxd -r -p > eeprom.sig.bin
openssl dgst -sha256 -verify rsa.pub.pem -signature eeprom.sig.bin pieeprom.bin | grep -q "Verified OK" \
  || fail "openssl dgst -verify"
tamper pieeprom.bin tampered.bin 10
must_fail openssl dgst -sha256 -verify rsa.pub.pem -signature eeprom.sig.bin tampered.bin
ok "rsa/sign: rpi-eeprom digest file, openssl dgst -verify; tampered refused"

# ---- 6. balena-db-hashes: POST /secureboot/db and /dbx with a hash ESL (curl --fail), CMS over the signed bytes ---
kek_first=${SIGN_EFI_KEK_KEY_ID%%,*}
curl --fail -s "${SIGN_API}/cert/${kek_first}" | jq -r .cert > kek.crt
hash-to-efi-sig-list kernel.efi.signed db.esl >/dev/null
for var in db dbx; do
  echo "{\"signing_key_id\": \"${kek_first}\", \"esl\": \"$(base64 -w 0 db.esl)\", \"append\": true}" > "$var.req"
  post "/secureboot/$var" "$var.req" --fail -s | jq -r .auth | base64 -d > "$var.auth"
done
check_auth() {  # check_auth FILE.auth VARIABLE SIGNER.crt: the signed bytes rebuilt, the PKCS#7 checked
  "$PY" - "$1" "$2" <<'PYEOF' || return 1
import struct, sys, uuid
data, var = open(sys.argv[1], "rb").read(), sys.argv[2]
length, rev, ctype = struct.unpack_from("<IHH", data, 16)
assert (rev, ctype) == (0x0200, 0x0EF1) and data[24:40] == uuid.UUID("4aafd29d-68df-49ee-8aa9-347d375665a7").bytes_le
p7, esl = data[40:16 + length], data[16 + length:]
guid = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c" if var in ("PK", "KEK") else "d719b2cb-3d3a-4596-a3bc-dad00e67656f")
append = var in ("db", "dbx")
attrs = 0x67 if append else 0x27
signable = var.encode("utf-16-le") + guid.bytes_le + struct.pack("<I", attrs) + data[:16] + esl
def der_len(n): return bytes([n]) if n < 128 else bytes([0x80 | len(n.to_bytes((n.bit_length() + 7) // 8, "big"))]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
oid = bytes.fromhex("06092a864886f70d010702")
inner = b"\xa0" + der_len(len(p7)) + p7
ci = b"\x30" + der_len(len(oid) + len(inner)) + oid + inner
open("auth.p7", "wb").write(ci); open("auth.signable", "wb").write(signable); open("auth.esl", "wb").write(esl)
PYEOF
  openssl cms -verify -binary -inform DER -in auth.p7 -content auth.signable -CAfile "$3" -purpose any \
    -out /dev/null 2>/dev/null
}
check_auth db.auth db kek.crt || fail "db.auth"
check_auth dbx.auth dbx kek.crt || fail "dbx.auth"
if check_auth db.auth dbx kek.crt; then fail "db.auth verified as dbx"; fi
check_auth_replace() {
  "$PY" - "$1" "$2" <<'PYEOF' || return 1
import struct, sys, uuid
data, var = open(sys.argv[1], "rb").read(), sys.argv[2]
length = struct.unpack_from("<I", data, 16)[0]
p7, esl = data[40:16 + length], data[16 + length:]
guid = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
signable = var.encode("utf-16-le") + guid.bytes_le + struct.pack("<I", 0x27) + data[:16] + esl
def der_len(n): return bytes([n]) if n < 128 else bytes([0x80 | len(n.to_bytes((n.bit_length() + 7) // 8, "big"))]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
oid = bytes.fromhex("06092a864886f70d010702")
inner = b"\xa0" + der_len(len(p7)) + p7
ci = b"\x30" + der_len(len(oid) + len(inner)) + oid + inner
open("auth.p7", "wb").write(ci); open("auth.signable", "wb").write(signable); open("auth.esl", "wb").write(esl)
PYEOF
  openssl cms -verify -binary -inform DER -in auth.p7 -content auth.signable -CAfile "$3" -purpose any \
    -out /dev/null 2>/dev/null
}
check_auth_replace PK.auth PK pk.crt || fail "PK.auth (self-signed by PK)"
cmp -s auth.esl PK.esl || fail "PK.auth carries another ESL than PK.esl"
check_auth_replace KEK.auth KEK pk.crt || fail "KEK.auth (signed by PK)"
cmp -s auth.esl KEK.esl || fail "KEK.auth carries another ESL than KEK.esl"
if check_auth_replace KEK.auth PK pk.crt; then fail "KEK.auth verified as PK"; fi
sig-list-to-certs KEK.esl kekesl >/dev/null && openssl x509 -inform DER -in kekesl-0.der -noout \
  || fail "sig-list-to-certs KEK.esl"
cmp -s <(openssl x509 -inform DER -in kekesl-0.der -outform PEM) <(openssl x509 -in kek.crt) || fail "KEK.esl cert"
tamper db.auth tampered.auth $(( $(stat -c %s db.auth) - 5 ))
if check_auth tampered.auth db kek.crt; then fail "a tampered db.auth verified"; fi
# Served again, byte for byte: PK.auth and KEK.auth are made once per list.
curl --fail -s "${SIGN_API}/secureboot/kek/${SIGN_EFI_KEK_KEY_ID}" | jq -r .kek | base64 -d | cmp -s - KEK.auth \
  || fail "KEK.auth changed between GETs"
ok "secureboot: db/dbx .auth (CMS over the signed bytes), db.auth refused as dbx, PK/KEK.auth, sig-list-to-certs"

# ---- negative: a wrong API key is 401 and curl --fail exits 22 ---------------------------------------------------
set +e
curl -X POST -H "Content-Type: application/json" -H "X-API-Key: sgy_0000000000000000_wrongwrongwrongwrongwrongwrongwrongwrong123" \
  --fail -s -o /dev/null -d @cert.req "${SIGN_API}/cert/sign"
rc=$?
set -e
[ "$rc" = 22 ] || fail "curl --fail with a wrong key exited $rc"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Content-Type: application/json" -H "X-API-Key: nope" \
  -d @cert.req "${SIGN_API}/cert/sign")
[ "$code" = 401 ] || fail "wrong key answered $code"
ok "wrong API key: 401, curl --fail exits 22"
echo "replay complete"
