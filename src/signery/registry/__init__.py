"""Package registry: a server that stores and serves packages with their detached signatures, and its client.

The registry is never trusted. It checks that uploads are well-formed and that versions stay immutable, but what
it serves is verified by the client against keys obtained elsewhere (the local trust store), never against anything
the registry says. See ``docs/registry.md``.

Example::

    from signery.registry.client import fetch_package
    fetched = fetch_package("http://127.0.0.1:8080", "demo", None, Path("downloads"))
    # then verify fetched.path (with fetched.signatures) against the local trust store
"""

from __future__ import annotations
