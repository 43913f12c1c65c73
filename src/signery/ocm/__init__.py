"""Open Component Model: component descriptors, their normalisations and digests, component and transport
archives, and component-version signatures (RSA keys, or X.509 chains in the PEM form).

Example::

    cv, repo = open_component_version(Path("my-component-archive"))
    sign_component_version(cv, FileSigner(load_private_key_file(Path("acme.priv"))), name="acme")
    result = verify_component_version(cv, signature="acme", public_key=load_public_key_file(Path("acme.pub")))
"""

from __future__ import annotations

from .archive import (
    DirectoryComponentArchive,
    TarComponentArchive,
    TransportArchive,
    open_component_version,
    open_repository,
    write_component_archive,
    write_transport_archive,
)
from .descriptor import Descriptor, load_descriptor, parse_descriptor
from .digests import descriptor_digest
from .normalise import ALGORITHMS, normalise
from .signing import (
    MEDIA_PEM,
    MEDIA_RSA,
    MEDIA_RSA_PSS,
    SIGNING_ALGORITHMS,
    digest_component_version,
    sign_component_version,
    verify_component_version,
)

__all__ = [
    "ALGORITHMS",
    "MEDIA_PEM",
    "MEDIA_RSA",
    "MEDIA_RSA_PSS",
    "SIGNING_ALGORITHMS",
    "Descriptor",
    "DirectoryComponentArchive",
    "TarComponentArchive",
    "TransportArchive",
    "descriptor_digest",
    "digest_component_version",
    "load_descriptor",
    "normalise",
    "open_component_version",
    "open_repository",
    "parse_descriptor",
    "sign_component_version",
    "verify_component_version",
    "write_component_archive",
    "write_transport_archive",
]
