"""What a balenaOS build boots, signed and verified through `signery sign/verify --format ...` with a key file,
and checked by the real tools: sbverify (EFI), modinfo + openssl cms (kernel modules), openssl pkeyutl (raw RSA),
openssl dgst (the Raspberry Pi digest file)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from signery.cli import cli
from signery.policy import ENV_VARS
from support import VECTORS, require_tool


def run(*args: object) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, [str(a) for a in args], env=dict.fromkeys(ENV_VARS), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tool("openssl")
    d = tmp_path_factory.mktemp("pki")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "k.pem", "-out", "c.pem",
         "-days", "30", "-subj", "/CN=balenaOS kmod test", "-addext", "extendedKeyUsage=codeSigning"],
        cwd=d, check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(["openssl", "x509", "-in", "c.pem", "-pubkey", "-noout", "-out", "p.pem"], cwd=d, check=True)
    return d


def test_efi_image_signed_from_the_cli_passes_sbverify(pki: Path, tmp_path: Path, home: Path) -> None:
    require_tool("sbverify")
    efi = Path(shutil.copy(VECTORS / "balena" / "HelloWorld.efi", tmp_path / "HelloWorld.efi"))
    code, out, err = run(
        "sign", efi, "--format", "authenticode", "--key", pki / "k.pem", "--certificate", pki / "c.pem", "--json"
    )
    assert code == 0, err
    signed = Path(json.loads(out)["written"])
    done = subprocess.run(["sbverify", "--cert", pki / "c.pem", signed], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert run("verify", signed, "--format", "authenticode", "--key", pki / "p.pem")[0] == 0
    # an option another format takes is refused by name; a second signing never overwrites the first output
    code, _, err = run("sign", efi, "--format", "authenticode", "--key", pki / "k.pem", "--armor")
    assert code == 2 and "--armor" in err
    code, _, err = run("sign", efi, "--format", "authenticode", "--key", pki / "k.pem", "--certificate", pki / "c.pem")
    assert code == 2 and "--force" in err


def test_kernel_module_signed_from_the_cli_reads_in_modinfo(pki: Path, tmp_path: Path, home: Path) -> None:
    require_tool("modinfo")
    ko = Path(shutil.copy(VECTORS / "balena" / "signery_test.ko", tmp_path / "m.ko"))
    out_path = tmp_path / "signed.ko"  # modinfo wants a path ending in .ko
    code, _, err = run(
        "sign", ko, "--format", "kmod", "--key", pki / "k.pem", "--certificate", pki / "c.pem", "--output", out_path
    )
    assert code == 0, err
    info = subprocess.run(["modinfo", out_path], capture_output=True, text=True, check=True).stdout
    assert "sig_id:         PKCS#7" in info and "balenaOS kmod test" in info and "sha512" in info
    assert run("verify", out_path, "--format", "kmod", "--key", pki / "p.pem")[0] == 0
    data = bytearray(out_path.read_bytes())
    data[100] ^= 1
    out_path.write_bytes(bytes(data))
    code, out, _ = run("verify", out_path, "--format", "kmod", "--key", pki / "p.pem", "--json")
    assert code == 1 and json.loads(out)["reason"] == "tampered"


def test_raw_rsa_and_the_eeprom_digest_file_pass_openssl(pki: Path, tmp_path: Path, home: Path) -> None:
    img = tmp_path / "pieeprom.bin"
    img.write_bytes(bytes(range(256)) * 512)
    code, out, err = run("sign", img, "--format", "raw-rsa", "--key", pki / "k.pem", "--json")
    assert code == 0, err
    sig = Path(json.loads(out)["written"])
    digest = tmp_path / "digest.bin"
    subprocess.run(["openssl", "dgst", "-sha256", "-binary", "-out", digest, img], check=True)
    pkeyutl = ["openssl", "pkeyutl", "-verify", "-in", digest, "-certin", "-inkey", pki / "c.pem", "-sigfile", sig]
    assert subprocess.run(pkeyutl, capture_output=True).returncode == 0  # as balena's flasher checks it
    sig.unlink()
    code, out, err = run("sign", img, "--format", "rpi-eeprom", "--key", pki / "k.pem", "--json")
    assert code == 0, err
    lines = Path(json.loads(out)["written"]).read_text().splitlines()
    assert lines[0] == subprocess.run(["sha256sum", img], capture_output=True, text=True).stdout.split()[0]
    raw = tmp_path / "rsa2048.bin"
    raw.write_bytes(bytes.fromhex(lines[2].split(": ")[1]))
    check = ["openssl", "dgst", "-sha256", "-verify", pki / "p.pem", "-signature", raw, img]
    assert subprocess.run(check, capture_output=True).returncode == 0
