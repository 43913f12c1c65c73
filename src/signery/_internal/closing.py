"""``with x:`` for the objects that hold a resource until ``close``."""

from __future__ import annotations

from typing import Self


class Closing:
    """A context manager that closes the object (its own ``close``) when the block ends, by error or not."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
