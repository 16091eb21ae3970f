"""The cloud-init user-data for a VM per learner (vagrant/cloud-init-user-data.sh), rendered and read back.

What it embeds must decode to the repository's own scripts, byte for byte; its settings must survive any URL;
bad input must stop it with a message that says what to give. cloud-init's own schema check runs when
cloud-init can be had cheaply: its command if installed, else Debian's packages unpacked (not installed)
into a temporary directory and run with this interpreter. Booting the user-data is vagrant/nocloud-check.sh's
job, by hand (a TCG guest takes about 20 minutes): docs/vm-per-learner.md has its runs.
"""

from __future__ import annotations

import base64
import glob
import gzip
import hashlib
import os
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import REPO

SCRIPT = os.path.join(REPO, "vagrant", "cloud-init-user-data.sh")
GUEST_DIR = "/opt/minicontainer/cloud-init"
TARBALL = "http://10.0.2.2:8000/minicontainer.tar.gz"


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory) -> str:
    assert shutil.which("ssh-keygen"), "ssh-keygen is missing: apt install openssh-client"
    path = tmp_path_factory.mktemp("key") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "learner's key", "-f", str(path)],
                   check=True)
    return str(path) + ".pub"


def render(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([SCRIPT, *args], input=stdin, capture_output=True, text=True, timeout=60)


def rendered(*args: str) -> tuple[str, dict]:
    out = render(*args)
    assert out.returncode == 0, out.stderr
    return out.stdout, yaml.safe_load(out.stdout)


def files(config: dict) -> dict:
    """write_files, decoded: path -> bytes."""
    decoded = {}
    for entry in config["write_files"]:
        raw = base64.b64decode(entry["content"], validate=True)
        if entry["encoding"] == "gz+b64":
            raw = gzip.decompress(raw)
        else:
            assert entry["encoding"] == "b64"
        decoded[entry["path"]] = raw
    return decoded


def settings(config: dict, tmp_path) -> dict:
    """settings.env as the VM's bash reads it (it is sourced there)."""
    path = tmp_path / "settings.env"
    path.write_bytes(files(config)[f"{GUEST_DIR}/settings.env"])
    names = ["SOURCE_GIT", "SOURCE_REF", "SOURCE_TARBALL", "MINICONTAINER_USER", "MINICONTAINER_EXTRAS",
             "PROVISION_SHA256"]
    script = f". {path}; " + "; ".join(f'printf "%s\\0" "${n}"' for n in names)
    out = subprocess.run(["bash", "-c", script], capture_output=True, check=True)
    return dict(zip(names, out.stdout.decode().split("\0")[:-1], strict=True))


def test_renders_cloud_config_with_the_learner_and_the_first_boot(ssh_key):
    text, config = rendered("--tarball", TARBALL, "--ssh-key", ssh_key)
    assert text.startswith("#cloud-config\n")
    assert isinstance(config, dict)
    assert config["users"][0] == "default"
    learner = config["users"][1]
    assert learner["name"] == "learner" and learner["sudo"] == "ALL=(ALL) NOPASSWD:ALL"
    with open(ssh_key) as f:
        assert learner["ssh_authorized_keys"] == [f.read().strip()]
    assert "hashed_passwd" not in learner and "ssh_pwauth" not in config  # no password given: keys only
    assert config["runcmd"] == [[f"{GUEST_DIR}/first-boot.sh", f"{GUEST_DIR}/settings.env"]]
    assert {e["path"]: e["permissions"] for e in config["write_files"]} == {
        f"{GUEST_DIR}/provision.sh": "0755", f"{GUEST_DIR}/first-boot.sh": "0755", f"{GUEST_DIR}/settings.env": "0600"}
    assert "ca_certs" not in config
    # Fits EC2's 16 KB of user data with room for a CA certificate (about 2 KB).
    assert len(text.encode()) < 14 * 1024, len(text.encode())


def test_the_embedded_scripts_are_the_repositorys_byte_for_byte(ssh_key, tmp_path):
    _, config = rendered("--tarball", TARBALL, "--ssh-key", ssh_key)
    decoded = files(config)
    for name, guest in (("provision.sh", "provision.sh"), ("cloud-first-boot.sh", "first-boot.sh")):
        with open(os.path.join(REPO, "vagrant", name), "rb") as f:
            assert decoded[f"{GUEST_DIR}/{guest}"] == f.read(), name
    with open(os.path.join(REPO, "vagrant", "provision.sh"), "rb") as f:
        assert settings(config, tmp_path)["PROVISION_SHA256"] == hashlib.sha256(f.read()).hexdigest()


def test_the_source_and_account_reach_the_vm_whatever_their_characters(ssh_key, tmp_path):
    url = "https://git.example.org/a/minicontainer.git?x=1&y='$(reboot)'"
    _, config = rendered("--git", url, "--ref", "v1.0", "--user", "ada", "--extras", "lab,notebooks",
                         "--ssh-key", ssh_key)
    assert settings(config, tmp_path) | {"PROVISION_SHA256": ""} == {
        "SOURCE_GIT": url, "SOURCE_REF": "v1.0", "SOURCE_TARBALL": "", "MINICONTAINER_USER": "ada",
        "MINICONTAINER_EXTRAS": "lab,notebooks", "PROVISION_SHA256": ""}
    assert config["users"][1]["name"] == "ada"
    _, config = rendered("--git", url, "--ssh-key", ssh_key)
    assert settings(config, tmp_path)["SOURCE_REF"] == "HEAD"


def test_a_password_goes_in_hashed_and_turns_on_ssh_password_logins(tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("openssl is missing (the script hashes the password with it)")
    (tmp_path / "pw").write_text("correct horse battery\n")
    text, config = rendered("--tarball", TARBALL, "--password-file", str(tmp_path / "pw"))
    assert "correct horse" not in text
    learner = config["users"][1]
    hashed = learner["hashed_passwd"]
    assert hashed.startswith("$6$") and learner["lock_passwd"] is False and config["ssh_pwauth"] is True
    salt = hashed.split("$")[2]
    again = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input="correct horse battery\n",
                           capture_output=True, text=True, check=True).stdout.strip()
    assert again == hashed
    _, config = rendered("--tarball", TARBALL, "--password-hash", hashed)  # or the hash itself
    assert config["users"][1]["hashed_passwd"] == hashed
    out = render("--tarball", TARBALL, "--password-file", "-", stdin="from stdin\n")  # or stdin
    assert out.returncode == 0 and "from stdin" not in out.stdout, out.stderr
    assert yaml.safe_load(out.stdout)["users"][1]["hashed_passwd"].startswith("$6$")


def test_ca_certificates_are_trusted_through_ca_certs(ssh_key, tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("openssl is missing (to make a certificate)")
    crt = tmp_path / "proxy.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "key"),
                    "-out", str(crt), "-days", "1", "-subj", "/CN=a proxy that inspects TLS"],
                   check=True, capture_output=True)
    _, config = rendered("--tarball", TARBALL, "--ssh-key", ssh_key, "--ca-cert", str(crt), "--ca-cert", str(crt))
    assert config["ca_certs"]["trusted"] == [crt.read_text()] * 2


@pytest.mark.parametrize(("args", "message"), [
    ([], "usage: "),
    (["--ssh-key", "KEY"], "where does the VM get the checkout? give --git URL [--ref REF] or --tarball URL"),
    (["--tarball", TARBALL], "the learner could not log in: give --ssh-key, --password-file or --password-hash"),
    (["--git", "https://x/y.git", "--tarball", TARBALL, "--ssh-key", "KEY"], "give --git or --tarball, not both"),
    (["--tarball", "ftp://x/y.tar.gz", "--ssh-key", "KEY"], "is not an http(s) URL"),
    (["--tarball", "http://x/a b.tar.gz", "--ssh-key", "KEY"], "has spaces or control characters"),
    (["--tarball", TARBALL, "--ref", "main", "--ssh-key", "KEY"], "--ref goes with --git"),
    (["--git", "https://x/y.git", "--ref", "--force", "--ssh-key", "KEY"], "is not a branch, tag or commit"),
    (["--tarball", TARBALL, "--ssh-key", "not a key"], "is neither an ssh public key"),
    (["--tarball", TARBALL, "--ssh-key", "KEY", "--user", "Ada"], "is not a user name"),
    (["--tarball", TARBALL, "--ssh-key", "KEY", "--user", "root"], "is a system account"),
    (["--tarball", TARBALL, "--ssh-key", "KEY", "--ca-cert", "/etc/hostname"], "is not a PEM certificate"),
    (["--tarball", TARBALL, "--ssh-key", "KEY", "--ca-cert", "/nonexistent.crt"], "cannot read /nonexistent.crt"),
    (["--tarball", TARBALL, "--password-hash", "hunter2"], "is not a crypt(3) hash"),
    (["--tarball", TARBALL, "--password-file", "/dev/null"], "is empty"),
    (["--tarball", TARBALL, "--ssh-key", "KEY", "--extras", "lab notebooks"], "is not a list of pip extras"),
    (["--tarball"], "--tarball needs a value"),
    (["--tarbal", TARBALL], "unknown argument '--tarbal'"),
])
def test_bad_input_stops_with_what_to_give(ssh_key, args, message):
    out = render(*[ssh_key if a == "KEY" else a for a in args])
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr and out.stdout == "", out.stderr


def test_help_goes_to_stdout():
    out = render("--help")
    assert out.returncode == 0 and "--tarball URL" in out.stdout and "--ca-cert FILE" in out.stdout


# --- cloud-init's own check --------------------------------------------------------------------------

# Debian's cloud-init and the pure-Python modules it imports that a venv lacks; the rest (yaml, jsonschema,
# jinja2, requests, oauthlib) come from the lab's venv.
CLOUD_INIT_DEBS = ["cloud-init", "python3-configobj", "python3-jsonpatch", "python3-json-pointer"]


@pytest.fixture(scope="module")
def cloud_init_schema(tmp_path_factory) -> list:
    """The command that checks a cloud-config file: `cloud-init schema --config-file`."""
    if shutil.which("cloud-init"):
        return ["cloud-init", "schema", "--config-file"]
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        pytest.skip("no cloud-init here, and no apt-get to fetch Debian's: apt install cloud-init to run this check "
                    "(vagrant/nocloud-check.sh runs it in its guest)")
    work = tmp_path_factory.mktemp("cloud-init")
    work.chmod(0o755)  # apt-get download drops to _apt where it can
    got = subprocess.run(["apt-get", "download", "-q", *CLOUD_INIT_DEBS], cwd=work, capture_output=True, text=True,
                         timeout=120)
    if got.returncode != 0:
        pytest.skip("cannot fetch Debian's cloud-init (apt install cloud-init to run this check here): "
                    + got.stderr.strip()[-300:])
    root = work / "root"
    for deb in glob.glob(str(work / "*.deb")):
        subprocess.run(["dpkg-deb", "-x", deb, str(root)], check=True)
    env_path = str(root / "usr/lib/python3/dist-packages")
    probe = subprocess.run([sys.executable, "-c", "import cloudinit.cmd.main"], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=env_path))
    if probe.returncode != 0:
        pytest.skip("Debian's cloud-init does not import in this interpreter: " + probe.stderr.strip()[-300:])
    return ["env", f"PYTHONPATH={env_path}", sys.executable, str(root / "usr/bin/cloud-init"), "schema",
            "--config-file"]


@pytest.mark.timeout(240)
def test_cloud_init_schema_accepts_it(cloud_init_schema, ssh_key, tmp_path):
    (tmp_path / "pw").write_text("a password\n")
    for name, args in {
        "keys": ["--tarball", TARBALL, "--ssh-key", ssh_key],
        "everything": ["--git", "https://example.org/m.git", "--ref", "main", "--ssh-key", ssh_key,
                       "--password-file", str(tmp_path / "pw"), "--user", "ada"],
    }.items():
        out = render(*args)
        assert out.returncode == 0, out.stderr
        (tmp_path / name).write_text(out.stdout)
        check = subprocess.run([*cloud_init_schema, str(tmp_path / name)], capture_output=True, text=True, timeout=120)
        assert check.returncode == 0 and "Valid" in check.stdout, check.stdout + check.stderr
        assert "deprecated" not in (check.stdout + check.stderr).lower(), check.stdout  # no key on its way out


@pytest.mark.timeout(240)
def test_cloud_init_schema_check_can_fail(cloud_init_schema, ssh_key, tmp_path):
    """The counterfactual: a key cloud-init does not know, in a place its schema checks, is refused."""
    out = render("--tarball", TARBALL, "--ssh-key", ssh_key)
    (tmp_path / "bad").write_text(out.stdout.replace("encoding: gz+b64", "encoding: gzip64", 1))
    check = subprocess.run([*cloud_init_schema, str(tmp_path / "bad")], capture_output=True, text=True, timeout=120)
    assert check.returncode != 0 and "gzip64" in check.stdout + check.stderr, check.stdout + check.stderr
