"""Fuzz the OpenPGP reader: armor, packet framing, signature and key packets, certificates, secret keys, detached
signatures verified against trusted certificates, and trust-store key files.

Every input is read every way signery reads OpenPGP data from outside:

- dearmored (when armored) and split into packets; every signature and key packet is parsed; framing and armor
  must round-trip (``encode_packet``/``iter_packets``, ``armor``/``dearmor``);
- as a certificate or secret key (``parse_certificate``, ``inspect_certificate``, ``load_signer`` without a
  passphrase). A certificate accepted must read back from the public packets signery stores for it, to the same
  fingerprint, user IDs, subkeys and flags (the trust store keeps only those and parses them again at every
  verification); a secret key that loads must make signatures its certificate accepts;
- as a detached signature file over a fixed message, verified against fixed trusted certificates (Ed25519 with a
  signing subkey, RSA-2048: the signers of the seeds), which also runs ``read_signatures``;
- as a key file given to ``signery trust add`` (``load_trusted_key_file``: OpenPGP, PEM or X.509).

    .venv/bin/python fuzz/fuzz_openpgp.py -max_total_time=60 CORPUS_DIR
    .venv/bin/python fuzz/fuzz_openpgp.py crash-file
"""

from __future__ import annotations

import hashlib

import _harness
import atheris
import make_corpus

with atheris.instrument_imports(include=["signery"]):
    from signery import openpgp as pgp
    from signery.formats import openpgp as pgp_format
    from signery.trust import TrustSet, load_trusted_key_file

SCRATCH = _harness.scratch()
SUBJECT = SCRATCH / "subject.bin"
SUBJECT.write_bytes(_harness.MESSAGE)
INPUT = SCRATCH / "input.sig"
MAX_PACKETS = 64  # parse at most this many packets one by one (the framing itself is bounded by the reader)
TAG_SIGNATURE, KEY_TAGS = 2, (5, 6, 7, 14)  # signature; secret key, public key, secret subkey, public subkey


def _trust() -> TrustSet:
    seeds = make_corpus.openpgp_seeds()
    keys = []
    for name in ("cert-ed25519-subkey.asc", "cert-rsa.pgp"):
        path = SCRATCH / name
        path.write_bytes(seeds[name])
        keys.append(load_trusted_key_file(path, name=name.split(".")[0]).key)
    return TrustSet(keys)


TRUST = _trust()


def check_packets(data: bytes) -> None:
    binary = data
    if pgp.is_armored(data):
        decoded, _ = _harness.refused(pgp.dearmor, data, source="input")
        if decoded is None:
            return
        binary = decoded[0]
        again, _ = _harness.refused(pgp.dearmor, pgp.armor(binary, "MESSAGE").encode(), source="re-armored")
        if again is None or again[0] != binary:
            raise _harness.Disagreement("armor() wrote what dearmor() does not read back")
    packets, _ = _harness.refused(lambda: list(pgp.iter_packets(binary, source="input")))
    if packets is None:
        return
    for p in packets[:MAX_PACKETS]:
        if p.tag < 64:
            framed = pgp.encode_packet(p.tag, p.body)
            if list(pgp.iter_packets(framed, source="re-framed")) != [p]:
                raise _harness.Disagreement(f"encode_packet() framed a tag-{p.tag} packet that does not read back")
        if p.tag == TAG_SIGNATURE:
            _harness.refused(pgp.parse_signature, p.body, source="input")
        elif p.tag in KEY_TAGS:
            _harness.refused(pgp.parse_key_packet, p.body, source="input")


def _summary(cert: pgp.Certificate) -> tuple[object, ...]:
    comps = (cert.primary, *cert.subkeys)
    return (
        cert.fingerprint,
        tuple(cert.uids),
        cert.primary_uid,
        tuple((c.fingerprint, c.flags, c.key_expires_after, c.revoked, c.bound, c.can_sign) for c in comps),
    )


def check_certificate(data: bytes) -> None:
    cert, _ = _harness.refused(pgp.parse_certificate, data, source="input", now=_harness.NOW)
    _harness.refused(pgp.inspect_certificate, data, source="input")
    if cert is None:
        return
    stored, err = _harness.refused(pgp.parse_certificate, cert.public_packets, source="stored", now=_harness.NOW)
    if stored is None:
        raise _harness.Disagreement(f"the public packets of an accepted certificate do not read back: {err!r}")
    if _summary(stored) != _summary(cert):
        raise _harness.Disagreement(f"the stored certificate reads differently: {_summary(stored)} != {_summary(cert)}")
    signer, _ = _harness.refused(pgp.load_signer, data, source="input")
    if signer is None:
        return
    comp = cert.find(signer.fingerprint)
    if comp is None:
        raise _harness.Disagreement(f"load_signer chose key {signer.fingerprint}, which the certificate lacks")
    data_hash = hashlib.sha256(_harness.MESSAGE)
    packet = pgp.make_signature(signer, sig_type=pgp.SIG_BINARY, created=_harness.SIGNED_AT, data_hash=data_hash.copy())
    sig = pgp.parse_signature(next(pgp.iter_packets(packet, source="made")).body, source="made")
    h = data_hash.copy()
    h.update(sig.hashed_prefix)
    h.update(sig.trailer())
    if not pgp.check_signature_value(comp.key, sig, h.digest()):
        raise _harness.Disagreement(f"a signature by the loaded secret key {signer.fingerprint} does not verify")


def check_detached_signature(data: bytes) -> None:
    INPUT.write_bytes(data)
    _harness.refused(pgp_format.read_signatures, INPUT)
    _harness.refused(pgp_format.verify, SUBJECT, trust=TRUST, signature=INPUT, now=_harness.NOW)
    _harness.refused(load_trusted_key_file, INPUT)


def test_one_input(data: bytes) -> None:
    check_packets(data)
    check_certificate(data)
    check_detached_signature(data)


if __name__ == "__main__":
    _harness.fuzz(test_one_input)
