"""The recipe API in ``signery/__init__.py``, the README's Python example, and the server commands' extras."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import signery
from signery.keys import FileSigner, generate_private_key, save_key_pair
from signery.openpgp import OpenPGPSigner, generate_key
from signery.remote import RemoteSigner
from signery.trust import TrustStore, load_trusted_key_file

ROOT = Path(__file__).resolve().parents[2]


def _zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("manifest.yaml", "name: demo\nversion: 1.0.0\n")
        z.writestr("main.py", "print('hello')\n")
    return path


def _pem_pair(tmp: Path, name: str) -> tuple[Path, Path]:
    paths = save_key_pair(tmp / f"{name}.private.pem", tmp / f"{name}.public.pem", generate_private_key("ed25519"))
    return paths.private, paths.public


def _openpgp_pair(tmp: Path, name: str, *, passphrase: bytes | None = None) -> tuple[Path, Path]:
    key = generate_key(f"{name} <{name}@example.org>", algorithm="ed25519", passphrase=passphrase)
    secret, public = tmp / f"{name}.private.asc", tmp / f"{name}.public.asc"
    secret.write_text(key.secret_armored)
    public.write_text(key.public_armored)
    return secret, public


def test_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", readme, re.S | re.M)
    assert len(blocks) == 1, "the README has one ```python block, run here"
    assert len(blocks[0].strip().splitlines()) <= 5
    _zip(tmp_path / "plugin.zip")
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md", "exec"), {})  # noqa: S102 - our own README
    assert (tmp_path / "plugin.signed.zip").is_file()


_LOADED = "import sys, signery; print(sorted(m for m in sys.modules if m.startswith(('signery', 'cryptography'))))"


def test_import_is_cheap() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _LOADED],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert eval(out) == ["signery"]  # noqa: S307 - a list of names we printed
    import signery.errors
    import signery.trust

    assert signery.TrustSet is signery.trust.TrustSet  # lazily re-exported
    assert signery.SigneryError is signery.errors.SigneryError
    assert set(signery.__all__) <= set(dir(signery))
    with pytest.raises(AttributeError):
        _ = signery.no_such_name  # type: ignore[attr-defined]


def test_native_sign_and_verify(tmp_path: Path) -> None:
    private, public = _pem_pair(tmp_path, "alice")
    signer = signery.load_signer(private)
    assert isinstance(signer, FileSigner)
    _zip(tmp_path / "plugin.zip")
    signed = signery.sign(str(tmp_path / "plugin.zip"), signer, claims={"version": "1.0.0"})
    assert signed == tmp_path / "plugin.signed.zip"
    result = signery.verify(signed, trust=signery.load_trust(public))
    assert result.verified and result.reason is None
    assert result.raise_for_status() is result
    out = signery.sign(tmp_path / "plugin.zip", signer, output=tmp_path / "elsewhere.zip")
    assert out == tmp_path / "elsewhere.zip" and out.is_file()
    detached = signery.sign(tmp_path / "plugin.zip", signer, detached=True)
    assert detached.name == "plugin.zip.signery.json"


def test_openpgp_sign_through_sign(tmp_path: Path) -> None:
    secret, public = _openpgp_pair(tmp_path, "bob", passphrase=b"s3cret")
    signer = signery.load_signer(secret, passphrase="s3cret")
    assert isinstance(signer, OpenPGPSigner)
    subject = tmp_path / "plugin-1.0.0.tar.gz"
    subject.write_bytes(b"not really a tarball, but OpenPGP signs any file")
    sig = signery.sign(subject, signer, format="openpgp", armor=True)
    assert sig == subject.with_name(subject.name + ".sig")
    assert sig.read_bytes().startswith(b"-----BEGIN PGP SIGNATURE-----")
    result = signery.verify(subject, trust=signery.load_trust(public))
    assert result.verified
    # a plain PEM signer signs OpenPGP too, given its key creation time
    private, _ = _pem_pair(tmp_path, "carol")
    from datetime import UTC, datetime

    pem = signery.load_signer(private)
    other = signery.sign(subject, pem, format="openpgp", output=tmp_path / "carol.sig", created=datetime.now(UTC))
    assert other.is_file()


def test_sign_refuses_unknown_format_and_option(tmp_path: Path) -> None:
    private, _ = _pem_pair(tmp_path, "alice")
    signer = signery.load_signer(private)
    zipped = _zip(tmp_path / "plugin.zip")
    with pytest.raises(signery.UsageError, match="unknown signature format"):
        signery.sign(zipped, signer, format="nope")
    with pytest.raises(signery.UsageError, match=r"armor \(--armor\) does not apply to the native format") as info:
        signery.sign(zipped, signer, armor=True)
    assert info.value.subject == "armor"


def test_verify_returns_reasons(tmp_path: Path) -> None:
    private, public = _pem_pair(tmp_path, "alice")
    _, stranger = _pem_pair(tmp_path, "mallory")
    zipped = _zip(tmp_path / "plugin.zip")
    unsigned = signery.verify(zipped, trust=signery.load_trust(public))
    assert not unsigned.verified and unsigned.reason is signery.Reason.UNSIGNED
    signed = signery.sign(zipped, signery.load_signer(private))
    unknown = signery.verify(signed, trust=signery.load_trust(stranger))
    assert unknown.reason is signery.Reason.UNKNOWN_KEY
    with pytest.raises(signery.VerificationError) as info:
        unknown.raise_for_status()
    assert info.value.reason is signery.Reason.UNKNOWN_KEY
    assert signery.verify(signed, trust=signery.load_trust(public, stranger), threshold=2).reason is not None
    # a detached signature kept elsewhere
    sig = signery.sign(zipped, signery.load_signer(private), detached=True)
    moved = sig.rename(tmp_path / "kept-elsewhere.json")
    assert signery.verify(zipped, trust=signery.load_trust(public), signature=moved).verified


def test_load_signer_refuses_bad_references(tmp_path: Path) -> None:
    _, public = _pem_pair(tmp_path, "alice")
    with pytest.raises(signery.SigneryError):
        signery.load_signer(public)  # a public key cannot sign
    with pytest.raises(signery.UsageError):
        signery.load_signer(tmp_path / "missing.pem")
    encrypted = tmp_path / "enc.private.pem"
    save_key_pair(encrypted, tmp_path / "enc.public.pem", generate_private_key("ed25519"), passphrase=b"pw")
    with pytest.raises(signery.MalformedError, match="passphrase"):
        signery.load_signer(encrypted)
    assert isinstance(signery.load_signer(encrypted, passphrase=b"pw"), FileSigner)
    _, cert = _openpgp_pair(tmp_path, "dave")
    with pytest.raises(signery.UsageError, match="secret key"):
        signery.load_signer(cert)


def test_load_signer_remote() -> None:
    with pytest.raises(signery.UsageError, match="server"):
        signery.load_signer("remote:release")
    with pytest.raises(signery.UsageError, match="API key"):
        signery.load_signer("remote:release", server="http://127.0.0.1:9")
    signer = signery.load_signer("remote:release", server="http://127.0.0.1:9", api_key="sk-test")
    assert isinstance(signer, RemoteSigner) and signer.name == "release"  # nothing is sent until it signs
    assert "http://127.0.0.1:9" in repr(signer)
    # the CLI's settings, from an environment the caller passes in (the library never reads os.environ)
    env = {"SIGNERY_SERVER": "http://127.0.0.1:10", "SIGNERY_API_KEY": "sk-2"}
    from_env = signery.load_signer("remote:other", env=env)
    assert isinstance(from_env, RemoteSigner) and "127.0.0.1:10" in repr(from_env)
    with pytest.raises(signery.SigneryError):
        signery.load_signer("remote:../escape", env=env)  # the service's one name rule


def test_load_trust_from_files_and_store(tmp_path: Path) -> None:
    private_a, public_a = _pem_pair(tmp_path, "alice")
    _, public_b = _pem_pair(tmp_path, "bob")
    _, cert_c = _openpgp_pair(tmp_path, "carol")
    from_files = signery.load_trust(public_a, str(cert_c))
    assert len(from_files) == 2 and "openpgp" in {k.kind for k in from_files}
    store_dir = tmp_path / "store"
    TrustStore(store_dir).add(load_trusted_key_file(public_b).key)
    from_store = signery.load_trust(store_dir)
    assert len(from_store) == 1
    both = signery.load_trust(store_dir, public_a)
    assert len(both) == 2
    assert isinstance(both, signery.TrustSet)
    signed = signery.sign(_zip(tmp_path / "plugin.zip"), signery.load_signer(private_a))
    assert not signery.verify(signed, trust=from_store).verified
    assert signery.verify(signed, trust=both).verified
    (tmp_path / "new-store").mkdir()
    assert len(signery.load_trust(tmp_path / "new-store")) == 0  # an empty store trusts nothing
    with pytest.raises(signery.UsageError):
        signery.load_trust()
    with pytest.raises(signery.UsageError):
        signery.load_trust(tmp_path / "missing.pem")
    (store_dir / "trust.json").write_text("{not json")
    with pytest.raises(signery.ConfigError):
        signery.load_trust(store_dir)


# -- the server commands without their extras ----------------------------------------------------------------------

_RUN_WITHOUT = (
    "import sys; sys.modules.update(dict.fromkeys(sys.argv[1].split(',')));"
    " from signery.cli import main; main(sys.argv[2:])"
)


def _signery_without(modules: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the real entry point with ``modules`` unimportable (``None`` in sys.modules makes ``import`` fail)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "SIGNERY_HOME": str(cwd / "home")}
    return subprocess.run(
        [sys.executable, "-c", _RUN_WITHOUT, modules, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("missing", "args", "extra"),
    [
        ("fastapi,sqlalchemy,uvicorn", ["server", "init"], "service"),
        ("fastapi,sqlalchemy,uvicorn", ["registry", "serve"], "registry"),
    ],
)
def test_server_commands_name_their_extra(tmp_path: Path, missing: str, args: list[str], extra: str) -> None:
    _zip(tmp_path / "plugin.zip")
    done = _signery_without(missing, *args, cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"signery: {args[0]} needs the '{extra}' extra: pip install 'signery[{extra}]'"
    )
    assert "Traceback" not in done.stderr


def test_the_registry_client_needs_no_extra(tmp_path: Path) -> None:
    _zip(tmp_path / "plugin.zip")
    done = _signery_without(
        "sqlalchemy,fastapi", "publish", "plugin.zip", "--registry", "http://127.0.0.1:9", cwd=tmp_path
    )
    assert "extra" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.returncode in (2, 3)  # no token, or nothing listening: the client itself ran


def test_core_commands_need_no_extra(tmp_path: Path) -> None:
    private, public = _pem_pair(tmp_path, "alice")
    zipped = _zip(tmp_path / "plugin.zip")
    servers = "fastapi,starlette,pydantic,uvicorn,uvloop,httptools,sqlalchemy,alembic,psycopg"
    assert _signery_without(servers, "sign", str(zipped), "--key", str(private), cwd=tmp_path).returncode == 0
    done = _signery_without(servers, "verify", str(tmp_path / "plugin.signed.zip"), "--key", str(public), cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_a_missing_module_outside_the_extras_is_not_disguised(tmp_path: Path) -> None:
    done = _signery_without("yaml", "server", "init", cwd=tmp_path)
    assert "needs the" not in done.stderr
