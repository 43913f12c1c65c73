"""balenaSign's API on signery against balenaSign's own request path, driven by the same client in the same run.

Starts ``signery server --workers 2`` on a fresh database (balena's keys made through ``/balena/bootstrap``) and,
beside it, ``bench/balena_reference_server.py --workers 2``: balenaSign's way of serving the same requests (the
base64 JSON body decoded to a file under /tmp, the reference tool run as a process on a key file, its output read
back and answered as base64 JSON). Then:

- a 64 MiB EFI image through ``POST /secureboot/efi`` and a 64 MiB kernel module through ``/kmod/sign``, each sent
  as meta-balena sends it (``curl -d @request`` of base64 JSON, the reply to a file) to both servers; the ratio of
  the two wall times, and the growth of the serving signery worker's resident memory (peak, VmHWM, over its size
  before). The tool alone (``sbsign`` / ``sign-file`` as a process on files, no HTTP) is an extra line;
- ``POST /cert/sign`` and ``/gpg/sign`` of 1 KiB driven by ``wrk`` over keep-alive connections against both servers
  (requests per second, p50/p99 latency); the signery audit rows are counted against wrk's successful requests.
  One ``openssl pkeyutl -sign`` / ``gpg --detach-sign`` process per signature, 2 at a time, is an extra line.

    .venv/bin/python bench/bench_balena.py
    .venv/bin/python bench/bench_balena.py --mib 64 --seconds 10
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "service"))

from servers import free_port, init_service, start_server  # noqa: E402

from signery.service.storage import AuditRow, Database  # noqa: E402

VECTORS = ROOT / "tests" / "vectors" / "balena"
REFERENCE = Path(__file__).with_name("balena_reference_server.py")
SIGN_FILE = Path("/usr/lib/linux-kbuild-6.1/scripts/sign-file")
CERT_ID = "balenaos-kmod"
BOOTSTRAP = {
    "gpg": {"name_real": "balenaOS", "name_email": "security@balena.io"},
    "certificates": {"kmod": {"cert_id": CERT_ID, "subject": "/CN=balenaOS kmod/", "key_length": 2048}},
}


@dataclass
class Reference:
    proc: subprocess.Popen[bytes]
    url: str
    token: str
    key: Path
    crt: Path
    gpg_home: Path
    gpg_fpr: str

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the uvicorn workers too
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        subprocess.run(["gpgconf", "--homedir", str(self.gpg_home), "--kill", "gpg-agent"], capture_output=True)


def start_reference(work: Path) -> Reference:
    """balenaSign's key layout (x509/<id>.key and .crt, a GnuPG homedir) and the reference server over it."""
    secrets = work / "ref-secrets"
    (secrets / "x509").mkdir(parents=True)
    key, crt = secrets / "x509" / f"{CERT_ID}.key", secrets / "x509" / f"{CERT_ID}.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-subj", "/CN=balenaOS kmod/",
         "-keyout", str(key), "-out", str(crt), "-days", "30"], check=True, capture_output=True,
    )  # fmt: skip
    home = secrets / "gpg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch"]
    uid = "balenaOS <security@balena.io>"
    subprocess.run(
        [*gpg, "--passphrase", "", "--quick-gen-key", uid, "rsa3072", "sign", "never"], check=True, capture_output=True
    )
    listing = subprocess.run([*gpg, "--with-colons", "--list-secret-keys"], check=True, capture_output=True, text=True)
    fpr = next(line.split(":")[9] for line in listing.stdout.splitlines() if line.startswith("fpr:"))
    token = base64.b16encode(os.urandom(16)).decode()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(REFERENCE), "--secrets", str(secrets), "--token", token, "--port", str(port),
         "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.post(f"{url}/cert/sign", json={}, timeout=2)
            break
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the reference server did not start") from None
            time.sleep(0.2)
    return Reference(proc, url, token, key, crt, home, fpr)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_hwm(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def _curl(url: str, token: str, request: Path, reply: Path) -> float:
    """meta-balena's call: ``curl --fail -d @request``, the reply to a file; its wall time."""
    t0 = time.perf_counter()
    subprocess.run(
        ["curl", "--fail", "-s", "-X", "POST", "-H", "Content-Type: application/json", "-H", f"X-API-Key: {token}",
         "-d", f"@{request}", "-o", str(reply), url], check=True,
    )  # fmt: skip
    return time.perf_counter() - t0


def _signed_size(reply: Path) -> int:
    """The size of the artifact in a ``{"signed": base64}`` reply (which must be one)."""
    doc = json.loads(reply.read_bytes())
    return len(base64.b64decode(doc["signed"], validate=True))


def large(api: str, token: str, ref: Reference, work: Path, mib: int, workers: list[int], rounds: int) -> None:
    efi, ko = work / "big.efi", work / "big.ko"
    filler = os.urandom(mib << 20)
    efi.write_bytes((VECTORS / "HelloWorld.efi").read_bytes() + filler)  # data after the last section
    ko.write_bytes((VECTORS / "signery_test.ko").read_bytes() + filler)
    del filler
    key, crt = str(ref.key), str(ref.crt)
    cases = [("efi", "/secureboot/efi", efi, ["sbsign", "--key", key, "--cert", crt, "--output", str(work / "r.efi"),
                                              str(efi)])]  # fmt: skip
    if SIGN_FILE.exists():
        tool_kmod = [str(SIGN_FILE), "sha512", key, crt, str(ko), str(work / "r.ko")]
    else:
        tool_kmod = ["openssl", "cms", "-sign", "-binary", "-noattr", "-nocerts", "-outform", "DER", "-md", "sha512",
                     "-signer", crt, "-inkey", key, "-in", str(ko), "-out", str(work / "r.p7")]  # fmt: skip
    cases.append(("kmod", "/kmod/sign", ko, tool_kmod))
    reply = work / "out.json"
    for label, path, subject, tool in cases:
        request = work / f"{label}.req"
        with request.open("wb") as fh:
            fh.write(f'{{"key_id": "{CERT_ID}", "payload": "'.encode())
            fh.write(base64.b64encode(subject.read_bytes()))
            fh.write(b'"}')
        size = subject.stat().st_size
        before = {p: _status(p, "VmRSS") for p in workers}
        for p in workers:
            _reset_hwm(p)
        mine, theirs = [], []
        for _ in range(rounds):  # interleaved, so that both meet the same page cache and the same neighbours
            mine.append(_curl(f"{api}{path}", token, request, reply))
            signed = _signed_size(reply)
            theirs.append(_curl(f"{ref.url}{path}", ref.token, request, reply))
            assert signed > size and _signed_size(reply) > size, "a reply without the signed artifact"
        growth = max(_status(p, "VmHWM") - before[p] for p in workers)
        alone = min(_timed(tool) for _ in range(rounds))
        m, t = min(mine), min(theirs)
        name = Path(tool[0]).name
        print(
            f"{label:5} {mib} MiB: signery {m:.2f} s, balenaSign's path (reference server, {name}) {t:.2f} s "
            f"(curl -d @request, reply to a file; best of {rounds}), ratio {m / t:.2f}x (target <= 0.5x); "
            f"signery worker peak RSS growth {growth / 2**20:.0f} MB (target <= 100 MB)"
        )
        print(f"{'':5} {name} alone (a process on files, no HTTP) {alone:.2f} s: signery / tool alone {m / alone:.2f}x")
        request.unlink()


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "{token}"
"""


@dataclass(frozen=True)
class Run:
    rate: float
    p50: float
    p99: float
    requests: int


def _drive(url: str, token: str, body: dict[str, str], *, seconds: float, connections: int) -> Run:
    """wrk over keep-alive connections; non-2xx answers fail the run."""
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(WRK_SCRIPT.format(body=json.dumps(body), token=token))
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, int(seconds))}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    script.unlink()
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(out)
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    lat = {m[0]: float(m[1]) * unit[m[2]] for m in re.findall(r"\s(50|99)%\s+([\d.]+)(us|ms|s)", out)}
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return Run(rate, lat["50"], lat["99"], requests)


def _per_process(cmds: list[list[str]], *, seconds: float, workers: int = 2) -> float:
    stop = time.monotonic() + seconds
    count = [0]
    lock = threading.Lock()

    def run(i: int) -> None:
        while time.monotonic() < stop:
            subprocess.run(cmds[i], check=True, capture_output=True)
            with lock:
                count[0] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return count[0] / (time.perf_counter() - t0)


def _audited(db: Database, action: str) -> int:
    with db.read_session() as s:
        stmt = select(func.count()).select_from(AuditRow).where(AuditRow.action == action, AuditRow.result == "ok")
        return s.scalar(stmt) or 0


def small(
    api: str, token: str, fpr: str, ref: Reference, db: Database, work: Path, seconds: float, connections: int
) -> None:
    payload = os.urandom(1024)
    (work / "p.bin").write_bytes(payload)
    digest = hashlib.sha256(payload).digest()
    (work / "d.bin").write_bytes(digest)
    payload64 = base64.b64encode(payload).decode()
    cases = [
        ("cert/sign", "balena.cert-sign", {"cert_id": CERT_ID, "digest": digest.hex()},
         {"cert_id": CERT_ID, "digest": digest.hex()},
         [["openssl", "pkeyutl", "-sign", "-inkey", str(ref.key), "-in", str(work / "d.bin"), "-out",
           str(work / f"s{i}")] for i in range(2)]),
        ("gpg/sign", "balena.gpg-sign", {"key_id": fpr, "payload": payload64},
         {"key_id": ref.gpg_fpr, "payload": payload64},
         [["gpg", "--homedir", str(ref.gpg_home), "--batch", "--yes", "--detach-sign", "-o", str(work / f"g{i}.sig"),
           str(work / "p.bin")] for i in range(2)]),
    ]  # fmt: skip
    for label, action, body, ref_body, cmds in cases:
        _drive(f"{api}/{label}", token, body, seconds=1, connections=connections)  # warm up
        _drive(f"{ref.url}/{label}", ref.token, ref_body, seconds=1, connections=connections)
        rows = _audited(db, action)
        mine = _drive(f"{api}/{label}", token, body, seconds=seconds, connections=connections)
        time.sleep(0.5)  # what wrk left in flight at its deadline is served (and audited) still
        audited = _audited(db, action) - rows
        theirs = _drive(f"{ref.url}/{label}", ref.token, ref_body, seconds=seconds, connections=connections)
        proc = _per_process(cmds, seconds=min(seconds, 5))
        print(
            f"{label:9} 1 KiB: signery {mine.rate:.0f}/s, p50 {mine.p50:.1f} ms, p99 {mine.p99:.1f} ms "
            f"(target <= 50 ms); balenaSign's path (reference server) {theirs.rate:.0f}/s, p50 {theirs.p50:.1f} ms, "
            f"p99 {theirs.p99:.1f} ms; ratio {mine.rate / theirs.rate:.1f}x (target >= 20x)"
        )
        print(
            f"{'':9} wrk: {connections} keep-alive connections, {seconds:.0f} s each; signery audited {audited} "
            f"signatures for {mine.requests} answered; one process per signature (no HTTP) {proc:.0f}/s: "
            f"signery / process {mine.rate / proc:.1f}x"
        )
        if not mine.requests <= audited <= mine.requests + connections:
            raise RuntimeError(f"{audited} audit rows for {mine.requests} signatures")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3, help="runs of each large request per server (best is shown)")
    ap.add_argument("--only", choices=("large", "small"), default=None)
    args = ap.parse_args()
    for tool in ("curl", "wrk", "sbsign", "openssl", "gpg"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")
    with tempfile.TemporaryDirectory(prefix="bench-balena-") as tmp:
        home = Path(tmp)
        url = f"sqlite:///{home / 'service.db'}"
        admin = init_service(home, url)
        server = start_server(home, url, workers=2)
        ref = start_reference(home)
        db = Database(url)
        try:
            api = f"{server.url}/balena"
            r = httpx.post(f"{api}/bootstrap", json=BOOTSTRAP, headers={"X-API-Key": admin}, timeout=120)
            r.raise_for_status()
            fpr = r.json()["gpg"]["fingerprint"]
            workers = _children(server.proc.pid) or [server.proc.pid]
            print(
                f"signery server --workers 2 (worker pids {workers}) and balena_reference_server.py --workers 2, "
                f"both on uvicorn; {os.cpu_count()} CPUs shared with the clients"
            )
            if args.only != "small":
                large(api, admin, ref, home, args.mib, workers, args.rounds)
            if args.only != "large":
                small(api, admin, fpr, ref, db, home, args.seconds, args.connections)
        finally:
            db.dispose()
            ref.stop()
            server.stop()


if __name__ == "__main__":
    main()
