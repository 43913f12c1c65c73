"""One manner for every command: the JSON envelope, usage errors as JSON, an example in every --help."""

from __future__ import annotations

import json
import shlex
import zipfile
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from signery.cli import cli
from signery.policy import ENV_VARS

ENVELOPE = ("ok", "reason", "message")


def run(*args: object, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    clean: dict[str, str | None] = dict.fromkeys(ENV_VARS)
    clean.update(SIGNERY_REGISTRY_TOKEN=None, SIGNERY_API_KEY=None, SIGNERY_SERVER=None, **(env or {}))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        r = CliRunner().invoke(cli, [str(a) for a in args], env=clean, catch_exceptions=False)
    doc = json.loads(r.stdout)  # exactly one JSON document
    assert isinstance(doc, dict)
    return r.exit_code, doc


def assert_envelope(doc: dict[str, object], *, ok: bool) -> None:
    assert list(doc)[:3] == list(ENVELOPE), doc
    assert doc["ok"] is ok and isinstance(doc["message"], str) and doc["message"], doc
    if ok:
        assert doc["reason"] is None, doc
    else:
        assert isinstance(doc["reason"], str) and doc["reason"], doc


def unsigned_plugin(d: Path) -> Path:
    src = d / "hello-1.0.0.difypkg"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("manifest.yaml", "version: 1.0.0\nauthor: acme\nname: hello\n")
        zf.writestr("main.py", "print('hi')\n")
    return src


@pytest.fixture()
def work(tmp_path: Path, home: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    assert run("keygen", "alice", "--json", cwd=d)[0] == 0
    unsigned_plugin(d)
    (d / "hello.zip").write_bytes((d / "hello-1.0.0.difypkg").read_bytes())
    return d


# (group, success command line, failure command line, failure exit code, failure reason)
CASES = [
    ("keygen", ["keygen", "bob"], ["keygen", "a/b"], 2, "malformed"),
    ("sign", ["sign", "hello.zip", "--key", "alice.private.pem"], ["sign", "hello.zip"], 2, "malformed"),
    ("verify", ["verify", "hello.signed.zip", "--key", "alice.public.pem"], ["verify", "hello.zip"], 1, "unsigned"),
    ("inspect", ["inspect", "hello.signed.zip"], ["inspect", "missing.zip"], 2, "malformed"),
    ("trust", ["trust", "add", "alice.public.pem"], ["trust", "remove", "nobody"], 2, "malformed"),
    (
        "ca",
        ["ca", "create-root", "--subject", "/CN=Root", "--out", "root"],
        ["ca", "issue", "--ca", "missing", "--subject", "/CN=x", "--out", "x"],
        2,
        "malformed",
    ),
    ("ocm", ["ocm", "keygen", "acme"], ["ocm", "digest", "missing.yaml"], 2, "malformed"),
    (
        "install",
        ["install", "hello-1.0.0.difypkg", "--plugins-dir", "plugins", "--allow-unverified"],
        ["install", "hello-1.0.0.difypkg", "--plugins-dir", "plugins"],
        1,
        "unsigned",
    ),
    (
        "plugins",
        ["plugins", "list", "--plugins-dir", "plugins"],
        ["plugins", "remove", "nothing", "--plugins-dir", "plugins"],
        2,
        "malformed",
    ),
    (
        "registry",
        ["registry", "token", "list", "--data", "reg"],
        ["registry", "token", "revoke", "nobody", "--data", "reg"],
        2,
        "malformed",
    ),
    ("publish", None, ["publish", "hello.zip", "--registry", "http://127.0.0.1:9"], 2, "malformed"),
    ("mirror", None, ["mirror", "import", "hello.zip", "--registry", "http://127.0.0.1:9"], 2, "malformed"),
    ("remote", None, ["remote", "keys", "--server", "http://127.0.0.1:9"], 2, "malformed"),
    ("server", None, ["server", "api-key", "list", "--database-url", "sqlite:///fresh.db"], 3, "config-error"),
]


@pytest.mark.parametrize(("group", "good", "bad", "code", "reason"), CASES, ids=[c[0] for c in CASES])
def test_every_group_speaks_the_envelope(
    work: Path, group: str, good: list[str] | None, bad: list[str], code: int, reason: str
) -> None:
    if group in ("verify", "inspect"):
        assert run("sign", "hello.zip", "--key", "alice.private.pem", "--json", cwd=work)[0] == 0
    if good is not None:
        env = {"FORCE_VERIFYING_SIGNATURE": "false"} if group == "install" else None
        rc, doc = run(*good, "--json", cwd=work, env=env)
        assert rc == 0, doc
        assert_envelope(doc, ok=True)
    rc, doc = run(*bad, "--json", cwd=work)
    assert rc == code, doc
    assert_envelope(doc, ok=False)
    assert doc["reason"] == reason
    if "error" in doc:  # an error (not a verification result): the older member, kept for scripts
        assert doc["error"] == {"reason": doc["reason"], "message": doc["message"], "subject": doc["subject"]}


def test_command_data_stays_where_it_was(work: Path) -> None:
    rc, doc = run("sign", "hello.zip", "--key", "alice.private.pem", "--json", cwd=work)
    assert rc == 0 and doc["written"] == "hello.signed.zip" and doc["format"] == "native"
    rc, doc = run("verify", "hello.signed.zip", "--key", "alice.public.pem", "--json", cwd=work)
    assert rc == 0 and doc["verified"] is True and doc["signatures"]


@pytest.mark.parametrize(
    "argv",
    [
        ["keygen", "--bogus", "x", "--json"],  # unknown option
        ["trust", "add", "--json"],  # missing argument
        ["verify", "--json", "--threshold", "zero", "x"],  # bad value
        ["trust", "bogus", "--json"],  # unknown subcommand of a group
        ["server", "init", "--json"],  # a command without --json: still the envelope
    ],
)
def test_usage_errors_with_json_are_the_envelope(work: Path, argv: list[str]) -> None:
    rc, doc = run(*argv, cwd=work)
    assert rc == 2
    assert_envelope(doc, ok=False)
    assert doc["reason"] == "malformed"


def test_usage_errors_without_json_stay_text(work: Path) -> None:
    r = CliRunner().invoke(cli, ["keygen", "--bogus"])
    assert r.exit_code == 2 and "No such option" in r.stderr and not r.stdout


def test_refused_install_names_the_users_package(tmp_path: Path, home: Path) -> None:
    pkg = unsigned_plugin(tmp_path)
    bad = tmp_path / "broken.difypkg"
    bad.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    for given, reason in ((pkg, "unsigned"), (bad, "malformed")):
        rc, doc = run("install", given, "--plugins-dir", tmp_path / "plugins", "--json", cwd=tmp_path)
        assert rc in (1, 2) and doc["reason"] == reason, doc
        text = json.dumps(doc)
        assert str(given.name) in str(doc["message"]) and "staging-" not in text and ".signery" not in text, doc
        r = CliRunner().invoke(cli, ["install", str(given), "--plugins-dir", str(tmp_path / "plugins")])
        assert str(given) in r.stderr and "staging-" not in r.stderr, r.stderr


def walk(cmd: click.Command, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, cmd
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None
            yield from walk(sub, (*path, name))


COMMANDS = list(walk(cli, ()))  # the root group too


def examples(help_text: str) -> list[str]:
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Examples:")
    out: list[str] = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        out.append(line.strip())
    return out


def resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    cmd: click.Command = cli
    while isinstance(cmd, click.Group) and words and not words[0].startswith("-"):
        sub = cmd.get_command(click.Context(cmd), words[0])
        if sub is None:
            break
        cmd, words = sub, words[1:]
    return cmd, words


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_help_ends_with_examples(path: tuple[str, ...], cmd: click.Command) -> None:
    r = CliRunner().invoke(cli, [*path, "--help"])
    assert r.exit_code == 0, r.output
    assert "Examples:" in r.output, f"signery {' '.join(path)} --help has no Examples:"
    assert r.output.count("Examples:") == 1, r.output
    found = examples(r.output)
    assert 1 <= len(found) <= 5, found  # a few, not a manual
    for line in found:
        assert line.startswith("signery "), line
        # a real invocation: the command exists and takes these options (values are not checked)
        words = shlex.split(line.split(" > ")[0], comments=True)[1:]
        target, rest = resolve(words)
        target.make_context(target.name, rest, resilient_parsing=True)
