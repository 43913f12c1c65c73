"""balenaSign's request path, rebuilt for benchmarking: what ``bench_balena.py`` compares signery's ``/balena`` with.

Written from balenaSign's documented behaviour (``shared/research/signing_service.md`` section 1), not from its
code. balenaSign is Connexion/Flask on uvicorn workers; every signing request carries the whole artifact as base64
in JSON; the handler decodes it, writes it to a file under ``/tmp``, runs the reference tool as a process on a key
file (``sbsign``, the kernel's ``sign-file``, ``openssl pkeyutl -sign``, ``gpg --detach-sign``), reads the output
back and answers it as base64 in JSON. This server does exactly that, on uvicorn, with a raw ASGI app:

- ``POST /secureboot/efi`` ``{key_id, payload}`` -> ``{signed}`` (``sbsign --key --cert --output``)
- ``POST /kmod/sign`` ``{key_id, payload}`` -> ``{signed}`` (``sign-file sha512 key crt in out``; ``openssl cms``
  with sign-file's options where the kernel's script is not installed: the bench says which)
- ``POST /cert/sign`` ``{cert_id, digest}`` -> ``{signature}`` (the 32 digest bytes in a file, ``openssl pkeyutl``)
- ``POST /gpg/sign`` ``{key_id, payload}`` -> ``{signature}`` (``gpg --detach-sign``, binary, on the payload file)

Keys live as balenaSign keeps them: ``<secrets>/x509/<id>.key`` and ``.crt`` (unencrypted), and a GnuPG homedir
``<secrets>/gpg``. It is kind to balenaSign where it cannot be faithful: no Connexion request validation, and
``X-API-Key`` is compared with one token instead of the two balenaCloud API calls balenaSign makes per request.
So the numbers it yields are a lower bound on balenaSign's own.

    .venv/bin/python bench/balena_reference_server.py --secrets DIR --token T --port 8080 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hmac
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

SIGN_FILE = Path("/usr/lib/linux-kbuild-6.1/scripts/sign-file")
_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")  # balenaSign does not check ids; this bench refuses path tricks
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _secrets() -> Path:
    return Path(os.environ["BALENA_REF_SECRETS"])


def _x509(cert_id: object) -> tuple[Path, Path]:
    if not isinstance(cert_id, str) or not _ID.fullmatch(cert_id):
        raise Refused(400, "bad key id")
    key, crt = _secrets() / "x509" / f"{cert_id}.key", _secrets() / "x509" / f"{cert_id}.crt"
    if not key.exists():
        raise Refused(404, f"no certificate {cert_id}")
    return key, crt


def _run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(cmd, capture_output=True, check=False, **kw)
    if done.returncode != 0:
        raise Refused(500, done.stderr.decode(errors="replace")[-400:])
    return done


def _in_tmp(fn: Callable[[Path], dict[str, str]]) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="balenasign-") as tmp:  # under /tmp, as balenaSign's temp files
        return fn(Path(tmp))


def sign_efi(body: dict[str, Any]) -> dict[str, str]:
    key, crt = _x509(body.get("key_id"))

    def work(tmp: Path) -> dict[str, str]:
        src, out = tmp / "image.efi", tmp / "image.efi.signed"
        src.write_bytes(base64.b64decode(body["payload"]))
        _run(["sbsign", "--key", str(key), "--cert", str(crt), "--output", str(out), str(src)])
        return {"signed": base64.b64encode(out.read_bytes()).decode()}

    return _in_tmp(work)


def sign_kmod(body: dict[str, Any]) -> dict[str, str]:
    key, crt = _x509(body.get("key_id"))

    def work(tmp: Path) -> dict[str, str]:
        src, out = tmp / "module.ko", tmp / "module.ko.signed"
        src.write_bytes(base64.b64decode(body["payload"]))
        if SIGN_FILE.exists():
            _run([str(SIGN_FILE), "sha512", str(key), str(crt), str(src), str(out)])
            return {"signed": base64.b64encode(out.read_bytes()).decode()}
        sig = tmp / "module.p7"
        _run(["openssl", "cms", "-sign", "-binary", "-noattr", "-nocerts", "-outform", "DER", "-md", "sha512",
              "-signer", str(crt), "-inkey", str(key), "-in", str(src), "-out", str(sig)])  # fmt: skip
        return {"signed": base64.b64encode(src.read_bytes() + sig.read_bytes()).decode()}

    return _in_tmp(work)


def sign_cert(body: dict[str, Any]) -> dict[str, str]:
    key, _crt = _x509(body.get("cert_id"))
    digest = body.get("digest")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
        raise Refused(400, "digest must be 64 hex digits")

    def work(tmp: Path) -> dict[str, str]:
        src, out = tmp / "digest.bin", tmp / "digest.sig"
        src.write_bytes(bytes.fromhex(digest))
        _run(["openssl", "pkeyutl", "-sign", "-inkey", str(key), "-in", str(src), "-out", str(out)])
        return {"signature": base64.b64encode(out.read_bytes()).decode()}

    return _in_tmp(work)


def sign_gpg(body: dict[str, Any]) -> dict[str, str]:
    key_id = body.get("key_id")
    if not isinstance(key_id, str) or not re.fullmatch(r"[0-9a-fA-F]{16,40}", key_id):
        raise Refused(400, "bad key id")

    def work(tmp: Path) -> dict[str, str]:
        src, out = tmp / "payload", tmp / "payload.sig"
        src.write_bytes(base64.b64decode(body["payload"]))
        _run(["gpg", "--homedir", str(_secrets() / "gpg"), "--batch", "--no-tty", "--yes", "--local-user", key_id,
              "--detach-sign", "--output", str(out), str(src)])  # fmt: skip
        return {"signature": base64.b64encode(out.read_bytes()).decode()}

    return _in_tmp(work)


ROUTES: dict[str, Callable[[dict[str, Any]], dict[str, str]]] = {
    "/secureboot/efi": sign_efi,
    "/kmod/sign": sign_kmod,
    "/cert/sign": sign_cert,
    "/gpg/sign": sign_gpg,
}


async def _reply(send: Send, status: int, doc: dict[str, Any]) -> None:
    data = json.dumps(doc).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            event = (await receive())["type"]
            if event == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif event == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    handler = ROUTES.get(scope["path"]) if scope["method"] == "POST" else None
    chunks: list[bytes] = []
    while True:  # the whole body, as Flask's request.get_json() reads it
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    if handler is None:
        await _reply(send, 404, {"error": "not found"})
        return
    token = dict(scope["headers"]).get(b"x-api-key", b"")
    if not hmac.compare_digest(token, os.environ["BALENA_REF_TOKEN"].encode()):
        await _reply(send, 401, {"error": "unauthorized"})
        return
    try:
        body = json.loads(b"".join(chunks))
        del chunks
        if not isinstance(body, dict):
            raise Refused(400, "not a JSON object")
        # Flask runs a sync view in a worker thread; so does this.
        doc = await asyncio.to_thread(handler, body)
    except Refused as err:
        await _reply(send, err.status, {"error": str(err)})
        return
    except (ValueError, KeyError) as err:
        await _reply(send, 400, {"error": str(err)})
        return
    await _reply(send, 200, doc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--secrets", type=Path, required=True, help="holds x509/<id>.key, x509/<id>.crt and gpg/")
    ap.add_argument("--token", required=True, help="the X-API-Key callers must send")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    for tool in ("sbsign", "openssl", "gpg"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    os.environ["BALENA_REF_SECRETS"] = str(args.secrets.resolve())
    os.environ["BALENA_REF_TOKEN"] = args.token
    import uvicorn

    uvicorn.run(
        "balena_reference_server:app",
        app_dir=str(Path(__file__).resolve().parent),
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
