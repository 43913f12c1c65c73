"""What each host verifies, and the signature form each protocol serves: Kibana, Mattermost, Dify.

One package is stored once; each protocol derives what its host reads from the same stored signatures:

- **Kibana** (``/elastic``) reads an *armored* ``.zip.sig`` and checks only its *first* signature packet
  (openpgp.js ``verify(...).signatures[0]``): :func:`elastic_signature` joins every OpenPGP packet of the version,
  the packets made by the key the operator configured for Kibana first, and armors them.
- **Mattermost** (``/mattermost``) base64-decodes ``signature`` and runs Go's legacy ``x/crypto/openpgp``
  ``CheckDetachedSignature``, which reads RSA only (EdDSA is "unsupported feature: public key type: 22"):
  :func:`mattermost_signature` keeps the RSA packets, binary.
- **Dify** (``/dify``) verifies the signature embedded in the ``.difypkg`` ZIP comment; the bytes are served as
  stored, and the identifier the daemon computes from them is :func:`dify_identifier`.

:func:`check_publishable` is the publish-time rule: a package whose signatures no host it is served to could
verify is refused (``policy-violation``) unless the publisher says otherwise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import MalformedError, PolicyViolationError, SigneryError

ELASTIC = "elastic"
MATTERMOST = "mattermost"
DIFY = "dify"
PROTOCOLS = (ELASTIC, MATTERMOST, DIFY)
# Which manifest kind (signery.package.ManifestKind) each protocol's host installs. Kibana installs zips with
# manifest.yml, Mattermost .tar.gz bundles with plugin.json, Dify .difypkg zips with manifest.yaml.
PROTOCOL_OF_KIND = {"elastic": ELASTIC, "mattermost": MATTERMOST, "dify": DIFY}
OPENPGP_SUFFIXES = (".sig", ".asc")
NATIVE_SUFFIX = ".signery.json"
RSA_ALGORITHMS = frozenset({1, 2, 3})  # what Go's legacy openpgp verifies (DSA and ECDSA too, but not EdDSA)
MAX_PACKETS = 64


@dataclass(frozen=True)
class PgpSignature:
    """One OpenPGP signature packet of a stored detached signature file."""

    packet: bytes  # the whole packet, framing included
    pk_algorithm: int
    issuer: str | None  # lower-case hex fingerprint or key id

    @property
    def rsa(self) -> bool:
        return self.pk_algorithm in RSA_ALGORITHMS


def openpgp_packets(data: bytes, *, source: str) -> list[PgpSignature]:
    """The signature packets of a detached OpenPGP signature file (binary or armored).

    Raises:
        MalformedError: not OpenPGP, or holding anything but signature (and marker) packets.
    """
    from ..openpgp._armor import dearmor, is_armored
    from ..openpgp._packets import TAG_MARKER, TAG_SIGNATURE, encode_packet, iter_packets
    from ..openpgp._signatures import parse_signature

    if is_armored(data):
        data, kinds = dearmor(data, source=source)
        if any(k != "SIGNATURE" for k in kinds):
            raise MalformedError(f"{source} is not an OpenPGP signature", subject=source)
    out: list[PgpSignature] = []
    for p in iter_packets(data, source=source, max_packets=MAX_PACKETS):
        if p.tag == TAG_MARKER:
            continue
        if p.tag != TAG_SIGNATURE:
            raise MalformedError(f"{source} holds an OpenPGP packet of tag {p.tag}, not a signature", subject=source)
        sig = parse_signature(p.body, source=source)
        issuer = sig.issuer.lower() if sig.issuer else None
        out.append(PgpSignature(encode_packet(TAG_SIGNATURE, p.body), sig.pk_algorithm, issuer))
    if not out:
        raise MalformedError(f"{source} holds no signature packet", subject=source)
    return out


def is_openpgp_file(filename: str) -> bool:
    return filename.endswith(OPENPGP_SUFFIXES)


def collect_packets(files: Iterable[tuple[str, bytes]]) -> list[PgpSignature]:
    """Every OpenPGP signature packet of the ``(filename, bytes)`` signature files, in order, each once.

    Files that are not OpenPGP by name, or do not parse, contribute nothing: the registry serves what hosts can
    read, and a file that is no signature is not one for any host.
    """
    seen: set[bytes] = set()
    out: list[PgpSignature] = []
    for filename, data in files:
        if not is_openpgp_file(filename):
            continue
        try:
            packets = openpgp_packets(data, source=filename)
        except SigneryError:
            continue
        for p in packets:
            if p.packet not in seen:
                seen.add(p.packet)
                out.append(p)
    return out


def issued_by(sig: PgpSignature, fingerprints: Iterable[str]) -> bool:
    """Whether ``sig`` names one of ``fingerprints`` (v4: a key id is a fingerprint's last 16 hex digits)."""
    if sig.issuer is None:
        return False
    return any(sig.issuer == f or f.endswith(sig.issuer) or sig.issuer.endswith(f) for f in fingerprints)


def _first_by(packets: Sequence[PgpSignature], fingerprints: frozenset[str]) -> list[PgpSignature]:
    if not fingerprints:
        return list(packets)
    mine = [p for p in packets if issued_by(p, fingerprints)]
    return mine + [p for p in packets if not issued_by(p, fingerprints)]


def elastic_signature(packets: Sequence[PgpSignature], kibana_keys: frozenset[str] = frozenset()) -> bytes | None:
    """The armored ``.zip.sig`` Kibana reads: every packet, those by ``kibana_keys`` first; ``None`` for none."""
    from ..openpgp._armor import armor

    if not packets:
        return None
    return armor(b"".join(p.packet for p in _first_by(packets, kibana_keys)), "SIGNATURE").encode()


def mattermost_signature(
    packets: Sequence[PgpSignature], mattermost_keys: frozenset[str] = frozenset()
) -> bytes | None:
    """The binary signature Mattermost's Go verifier reads: the RSA packets (configured keys first); or ``None``."""
    rsa = [p for p in packets if p.rsa]
    if not rsa:
        return None
    return b"".join(p.packet for p in _first_by(rsa, mattermost_keys))


def check_publishable(
    *,
    kind: str | None,
    ref: str,
    signatures: Sequence[tuple[str, bytes]],
    embedded: Sequence[str],
    protocols: Iterable[str],
    kibana_keys: frozenset[str] = frozenset(),
) -> None:
    """Refuse (``policy-violation``) a signed package whose signatures no host it is served to could verify.

    Each signature form goes to the host that reads it: OpenPGP signatures of an Elastic zip to Kibana (any
    packet; when the operator configured Kibana's key, one by that key, since Kibana checks only the first), of a
    Mattermost bundle to Mattermost (RSA only), Dify's embedded signature to Dify, native signatures
    (``.signery.json``, embedded) to signery's own client. A package with no signature at all is the business of
    ``--require-signatures``, not of this rule; nor is a format no host protocol here serves.
    """
    protocol = PROTOCOL_OF_KIND.get(kind or "")
    if protocol not in set(protocols) or protocol == DIFY:
        return  # Dify's signature is RSA by construction; the trust decision is the Dify host's
    pgp_files = [(f, d) for f, d in signatures if is_openpgp_file(f)]
    if not pgp_files:
        return
    if any(f.endswith(NATIVE_SUFFIX) for f, _ in signatures) or "native" in embedded:
        return  # signery's own client can verify those
    packets = collect_packets(pgp_files)
    if protocol == MATTERMOST:
        if any(p.rsa for p in packets):
            return
        algos = sorted({p.pk_algorithm for p in packets})
        why = (
            f"its OpenPGP signatures use public-key algorithm(s) {algos}, and Mattermost's verifier (Go x/crypto/"
            "openpgp) reads RSA only"
            if packets
            else "none of its signature files is an OpenPGP signature"
        )
        raise PolicyViolationError(
            f"{ref} is served to Mattermost, which could not verify it: {why}",
            subject=ref,
            hint="sign it with an RSA OpenPGP key (signery keygen NAME --format openpgp --algorithm rsa), or publish "
            "with --allow-unverifiable",
        )
    if not packets:
        raise PolicyViolationError(
            f"{ref} is served to Kibana, which could not verify it: none of its signature files is an OpenPGP "
            "signature",
            subject=ref,
            hint="publish with --allow-unverifiable to serve it anyway",
        )
    if kibana_keys and not any(issued_by(p, kibana_keys) for p in packets):
        raise PolicyViolationError(
            f"{ref} is served to Kibana, which trusts only {', '.join(sorted(kibana_keys))[:120]}; none of its "
            "OpenPGP signatures is by that key",
            subject=ref,
            hint="add a signature by the key Kibana is configured with, or publish with --allow-unverifiable",
        )


# -- Dify --------------------------------------------------------------------------------------------------------


def dify_checksum(path: Path) -> str:
    """The plugin daemon's ``CalculateChecksum``: SHA-256 over ``sha256(path) || sha256(content)`` of every file
    entry, sorted by path (Go byte order, which is code-point order), hex. The ZIP comment (the signature) is not
    covered; ``.verification.dify.json`` is."""
    from ..archive import ZipArchive

    with ZipArchive.open(Path(path)) as archive:
        digests = {e.name: d["sha256"] for e, d in archive.hash_files(["sha256"])}
    data = b"".join(hashlib.sha256(name.encode()).digest() + digests[name] for name in sorted(digests))
    return hashlib.sha256(data).hexdigest()


def dify_identifier(org: str, name: str, version: str, checksum: str) -> str:
    """``org/name:version@checksum``, the daemon's ``PluginUniqueIdentifier``."""
    return f"{org}/{name}:{version}@{checksum}"


__all__ = [
    "DIFY",
    "ELASTIC",
    "MATTERMOST",
    "PROTOCOLS",
    "PgpSignature",
    "check_publishable",
    "collect_packets",
    "dify_checksum",
    "dify_identifier",
    "elastic_signature",
    "issued_by",
    "mattermost_signature",
    "openpgp_packets",
]
