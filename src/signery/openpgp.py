"""OpenPGP keys and certificates (placeholder: filled in by the OpenPGP work, issue 4)."""
