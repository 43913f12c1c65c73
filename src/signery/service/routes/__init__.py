"""One router per resource, mounted under ``/v1`` by :func:`signery.service.app.create_app`."""
