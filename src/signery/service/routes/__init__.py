"""One router per resource, mounted under ``/v1`` by :func:`signery.service.app.create_app`; ``balena`` is mounted
under ``/balena`` instead (balenaSign's API, for meta-balena builds)."""
