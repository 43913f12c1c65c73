"""The format registry: names, the cheap preconditions checked before a format is imported, and their agreement
with each format's own answer."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from signery.formats import FORMATS, _sniff, detect_formats, get_format, names


def test_every_registered_format_has_a_module_and_the_one_shape() -> None:
    from signery.formats._base import Format

    for name in names():
        fmt = get_format(name)
        assert isinstance(fmt, Format) and fmt.name == name, name
        assert fmt.summary, name


def test_the_preconditions_name_registered_formats_and_agree_with_ocm() -> None:
    from signery.ocm import _layout

    assert set(_sniff.PRECONDITIONS) <= set(FORMATS)
    assert (_sniff._OCM_DESCRIPTOR, _sniff._OCM_INDEX) == (_layout.DESCRIPTOR_FILE, _layout.CTF_INDEX)
    from signery.formats import kmod

    assert kmod.MAGIC == _sniff.KMOD_MAGIC


def test_a_precondition_never_hides_what_the_format_detects(tmp_path: Path) -> None:
    # whatever a format itself would say of these subjects, its precondition must not be stricter
    plain = tmp_path / "plugin.zip"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("a.txt", "x")
    for subject in (plain, tmp_path):
        for name, cheap in _sniff.PRECONDITIONS.items():
            if get_format(name).detect(subject):
                assert cheap(subject), (name, subject)


def test_verifying_a_plain_zip_imports_no_other_format(tmp_path: Path) -> None:
    plain = tmp_path / "plugin.zip"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("a.txt", "x")
    code = (
        "import sys; from pathlib import Path; from signery.formats import detect_formats; "
        f"print(detect_formats(Path({str(plain)!r}))); "
        "print(sorted(m for m in sys.modules"
        " if m.startswith('signery.formats.') and not m.split('.')[-1].startswith('_')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "[]"
    assert out[1] == "['signery.formats.native']"  # no Dify, OpenPGP, OCM, PE, CMS... for a plain ZIP
    assert detect_formats(plain) == []


def test_only_the_formats_listed_trust_keys_by_default() -> None:
    with_keys = {name for name in names() if len(get_format(name).default_trust()) > 0}
    assert with_keys == set(_sniff.WITH_DEFAULT_TRUST) == {"dify"}
    from signery.formats import default_trust

    assert {k.key_id for k in default_trust()} == {k.key_id for k in get_format("dify").default_trust()}
