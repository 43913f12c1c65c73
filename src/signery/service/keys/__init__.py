"""The service's key store: named, versioned keys sealed at rest.

- :mod:`.models`: the values - :class:`~.models.Key` and its :class:`~.models.KeyVersion` (public key included),
  what to create (:class:`~.models.KeySpec`) and what to sign (:class:`~.models.SignItem`).
- :mod:`.lifecycle`: create (with X.509 or OpenPGP certificates), rotate, configure, delete, bootstrap.
- :mod:`.signing`: sign, verify, OpenPGP signing, and the sign request both front ends answer.
- :mod:`.cache`: per process, recently read keys and unsealed private keys.

No function here returns private key material; the only way out of the key store for a private key is a signature.
"""
