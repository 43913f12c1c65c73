"""Build the optional C accelerator ``signery._fastzip`` (OpenSSL's libcrypto, and libdeflate or zlib).

Everything else is in pyproject.toml. The extension is optional: where it cannot be built (no compiler or
headers), signery installs and works the same on its pure-Python reader, only slower on archives with many
entries. ``./scripts/test`` installs the headers, and the test suite insists on the accelerator under CI.
"""

from __future__ import annotations

import os
import sysconfig

from setuptools import Extension, setup


def _have_header(name: str) -> bool:
    dirs = ["/usr/include", "/usr/local/include", sysconfig.get_paths()["include"]]
    dirs += [d for d in os.environ.get("C_INCLUDE_PATH", "").split(os.pathsep) if d]
    return any(os.path.exists(os.path.join(d, name)) for d in dirs)


# libdeflate has a carry-less-multiply CRC-32. Inflation is zlib's in every build (the reference's own library):
# libdeflate's inflater accepts reserved deflate symbols that zlib refuses, and a verdict must not depend on the build.
_deflate = _have_header("libdeflate.h")

setup(
    ext_modules=[
        Extension(
            "signery._fastzip",
            ["src/signery/_fastzip.c"],
            libraries=["deflate", "crypto", "z"] if _deflate else ["crypto", "z"],
            define_macros=[("HAVE_LIBDEFLATE", "1")] if _deflate else [],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
            optional=True,
        )
    ]
)
