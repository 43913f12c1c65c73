"""Alembic migrations of the registry database, shipped inside the package (``script_location`` is this package)."""
