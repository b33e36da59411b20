"""Keycloak from Maven Central's Quarkus distribution, with realm ``mro`` imported from the repo.

``ensure_keycloak`` reuses ``MRO_KEYCLOAK_URL`` or a Keycloak already serving the realm on the
port; otherwise it starts ``kc.sh start-dev`` on loopback with ``keycloak/realm-export.json``
imported at startup. Test servers get a fresh H2 database under ``var/keycloak-data/<port>``;
the dev stack passes ``data_dir`` and keeps its database there across restarts: the realm is
imported when absent, and again (into a new database) when the realm file or the gateway URL
it was imported with changed. The client secrets and the bootstrap admin come from
``keycloak/dev-users.json`` (development credentials only); the dev users are created with the
fixed ids given there, so a new database gives them the same ids.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import httpx

from devstack import mailpit
from devstack.paths import CACHE, ROOT, VAR, ensure_dirs
from devstack.procs import Service, StackError, free_port, http_ok, port_open, start, wait_until

KEYCLOAK_VERSION = "26.5.6"
REALM = "mro"
GATEWAY_CLIENT_ID = "mro-gateway"
PLANNING_SYNC_CLIENT_ID = "mro-planning-sync"
CLI_CLIENT_ID = "mro-cli"
REALM_FILE = ROOT / "keycloak" / "realm-export.json"
DEV_USERS_FILE = ROOT / "keycloak" / "dev-users.json"
THEMES_DIR = ROOT / "keycloak" / "themes"
DATA_DIR = VAR / "keycloak-data"
IMPORT_DIR = VAR / "keycloak-import"
# The gateway the realm's client URLs point at: the realm file reads ${MRO_KC_GATEWAY_URL}
# (browsers' redirects), ${MRO_KC_GATEWAY_ALIAS_URL} (the same gateway as localhost) and
# ${MRO_KC_GATEWAY_INTERNAL_URL} (Keycloak's back-channel logout calls).
DEFAULT_GATEWAY_URL = "http://127.0.0.1:8000"
# Written next to a kept database: what realm file and gateway URL it was imported from.
REALM_STAMP = "realm-import.sha256"
# Environment variables the realm file's ``${...}`` placeholders read at import.
CLIENT_SECRET_ENV = {
    GATEWAY_CLIENT_ID: "MRO_KC_GATEWAY_CLIENT_SECRET",
    PLANNING_SYNC_CLIENT_ID: "MRO_KC_PLANNING_SYNC_CLIENT_SECRET",
}
# Mail goes to the dev stack's Mailpit (its SMTP port: devstack.mailpit.smtp_port()); the tests
# point the live realm at their own sink.
SMTP_DEFAULTS = {
    "MRO_KC_SMTP_HOST": mailpit.HOST,
    "MRO_KC_SMTP_FROM": "identity@mro.test",
}
MIN_JAVA = 17
READY_TIMEOUT = 120.0
_ARTIFACT = f"org.keycloak:keycloak-quarkus-dist:{KEYCLOAK_VERSION}:tar.gz"


def discovery_url(base_url: str, realm: str = REALM) -> str:
    """The realm's OpenID Connect discovery document."""
    return f"{base_url.rstrip('/')}/realms/{realm}/.well-known/openid-configuration"


def load_dev_credentials() -> dict[str, Any]:
    """The development users, client secrets and bootstrap admin of keycloak/dev-users.json."""
    data: dict[str, Any] = json.loads(DEV_USERS_FILE.read_text(encoding="utf-8"))
    return data


def client_secret(client_id: str, credentials: dict[str, Any] | None = None) -> str:
    """The dev secret of a confidential client; raises KeyError for an unknown client."""
    creds = credentials if credentials is not None else load_dev_credentials()
    for client in creds["clients"]:
        if client["client_id"] == client_id:
            return str(client["client_secret"])
    raise KeyError(client_id)


def admin_login(credentials: dict[str, Any] | None = None) -> tuple[str, str]:
    """Master-realm admin (MRO_KEYCLOAK_ADMIN_USERNAME/PASSWORD override the dev bootstrap one)."""
    creds = credentials if credentials is not None else load_dev_credentials()
    boot = creds["bootstrap_admin"]
    return (
        os.environ.get("MRO_KEYCLOAK_ADMIN_USERNAME", boot["username"]),
        os.environ.get("MRO_KEYCLOAK_ADMIN_PASSWORD", boot["password"]),
    )


def keycloak_env(
    credentials: dict[str, Any] | None = None, gateway_url: str | None = None
) -> dict[str, str]:
    """Environment for kc.sh: bootstrap admin, client secrets, gateway URL, SMTP placeholders."""
    creds = credentials if credentials is not None else load_dev_credentials()
    username, password = admin_login(creds)
    env = {"KC_BOOTSTRAP_ADMIN_USERNAME": username, "KC_BOOTSTRAP_ADMIN_PASSWORD": password}
    env |= gateway_url_env(gateway_url or DEFAULT_GATEWAY_URL)
    for client_id, name in CLIENT_SECRET_ENV.items():
        env[name] = os.environ.get(name, client_secret(client_id, creds))
    for name, default in {**SMTP_DEFAULTS, "MRO_KC_SMTP_PORT": str(mailpit.smtp_port())}.items():
        env[name] = os.environ.get(name, default)
    return env


def _maven_archive() -> Path:
    """The distribution tarball in the local Maven repository, fetched once through mvn."""
    version_dir = Path.home() / ".m2" / "repository" / "org" / "keycloak" / "keycloak-quarkus-dist"
    archive = version_dir / KEYCLOAK_VERSION / f"keycloak-quarkus-dist-{KEYCLOAK_VERSION}.tar.gz"
    if archive.is_file():
        return archive
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("mvn not found: install Maven to fetch Keycloak")
    result = subprocess.run(  # noqa: S603 - fixed argv
        [mvn, "-q", "dependency:get", f"-Dartifact={_ARTIFACT}", "-Dtransitive=false"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not archive.is_file():
        raise StackError(f"mvn could not fetch {_ARTIFACT}:\n{result.stdout[-2000:]}")
    return archive


def distribution() -> Path:
    """The unpacked Keycloak home under .cache/ (unpacked once, atomically)."""
    home = CACHE / f"keycloak-{KEYCLOAK_VERSION}"
    if (home / "bin" / "kc.sh").is_file():
        return home
    ensure_dirs()
    staging = CACHE / f".keycloak-{KEYCLOAK_VERSION}.unpacking-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tarfile.open(_maven_archive()) as tar:
        tar.extractall(staging, filter="data")
    unpacked = staging / f"keycloak-{KEYCLOAK_VERSION}"
    if not (unpacked / "bin" / "kc.sh").is_file():
        raise StackError(f"unexpected layout in the Keycloak archive: {sorted(staging.iterdir())}")
    try:
        unpacked.rename(home)
    except OSError:
        if not (home / "bin" / "kc.sh").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return home


def java_major(java: str) -> int:
    """The feature release of a java binary (0 when it does not run)."""
    try:
        result = subprocess.run(  # noqa: S603 - a java binary we located
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return 0
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match is None:
        return 0
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def find_java_home() -> Path:
    """A JDK able to run Keycloak: JAVA_HOME, then java on PATH, then the newest system JVM."""
    candidates: list[Path] = []
    if java_home := os.environ.get("JAVA_HOME"):
        candidates.append(Path(java_home) / "bin" / "java")
    if on_path := shutil.which("java"):
        candidates.append(Path(on_path).resolve())
    for java in candidates:
        if java.is_file() and java_major(str(java)) >= MIN_JAVA:
            return java.parent.parent
    system = [(java_major(str(p)), p) for p in Path("/usr/lib/jvm").glob("*/bin/java")]
    usable = sorted((m, p) for m, p in system if m >= MIN_JAVA)
    if not usable:
        raise StackError(f"no Java {MIN_JAVA}+ found: install a JDK (e.g. openjdk-17-jre-headless)")
    return usable[-1][1].parent.parent


def serves_realm(base_url: str) -> bool:
    """True when base_url serves realm mro's discovery document."""
    return http_ok(discovery_url(base_url), timeout=2.0)


def _answers_http(url: str) -> bool:
    """True when url answers HTTP at all (an error status counts; a silent socket does not)."""
    try:
        with urllib.request.urlopen(f"{url}/realms/master", timeout=2.0):  # noqa: S310 - loopback
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _becomes_ready(url: str, timeout: float) -> bool:
    """Wait for a Keycloak that is still starting to serve the realm."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if serves_realm(url):
            return True
        time.sleep(0.5)
    return False


def _fresh_data_dir(port: int) -> Path:
    """An empty state folder for the instance on port (instances on other ports keep theirs)."""
    data = DATA_DIR / str(port)
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    return data


def gateway_url_env(gateway_url: str) -> dict[str, str]:
    """The realm's gateway placeholders for a gateway on loopback at gateway_url."""
    url = gateway_url.rstrip("/")
    alias = url.replace("//127.0.0.1:", "//localhost:", 1)
    if alias == url:
        alias = url.replace("//localhost:", "//127.0.0.1:", 1)
    return {
        "MRO_KC_GATEWAY_URL": url,
        "MRO_KC_GATEWAY_ALIAS_URL": alias,
        "MRO_KC_GATEWAY_INTERNAL_URL": url,
    }


def realm_stamp(gateway_url: str) -> str:
    """The digest of what an import reads: the realm file and the gateway URL it fills in."""
    digest = hashlib.sha256(REALM_FILE.read_bytes())
    digest.update(gateway_url.rstrip("/").encode())
    return digest.hexdigest()


def _kept_data_dir(data: Path, stamp: str) -> Path:
    """data as it is when it holds the realm imported from stamp; else emptied for an import.

    Says so when a database imported from an older realm file is replaced.
    """
    stamp_file = data / REALM_STAMP
    if stamp_file.is_file() and stamp_file.read_text().strip() == stamp:
        return data
    if any(data.rglob("*.mv.db")):
        print(
            "keycloak/realm-export.json (or the gateway URL) changed since realm mro was "
            "imported: importing it again into a new Keycloak database. Reset: users who "
            "registered themselves, Keycloak sessions (everyone signs in again), changes made "
            "in the admin console. Kept: the dev users and their ids, conversations, API keys "
            "and everything else the gateway and orchestrator store.",
            flush=True,
        )
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    return data


def _stage_realm(home: Path) -> None:
    """Copy the realm file into var/ and point <home>/data/import (read by --import-realm) there.

    The copy is replaced atomically so a Keycloak starting on another port never reads half a file.
    """
    IMPORT_DIR.mkdir(parents=True, exist_ok=True)
    staged = IMPORT_DIR / f".realm-export.json.{os.getpid()}"
    shutil.copyfile(REALM_FILE, staged)
    staged.replace(IMPORT_DIR / "realm-export.json")
    link = home / "data" / "import"
    if link.is_symlink() and link.resolve() == IMPORT_DIR.resolve():
        return
    link.parent.mkdir(exist_ok=True)
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.symlink_to(IMPORT_DIR, target_is_directory=True)


def _link_themes(home: Path) -> None:
    """Link the repo's themes (realm mro's login theme) into <home>/themes, where Keycloak looks."""
    for theme in THEMES_DIR.iterdir():
        link = home / "themes" / theme.name
        if not link.is_symlink():
            with contextlib.suppress(FileExistsError):  # another start linked it meanwhile
                link.symlink_to(theme, target_is_directory=True)


def _java_options(data: Path) -> str:
    """C1-only JIT: startup needs about half the CPU time, which matters on small machines."""
    options = [
        "-XX:TieredStopAtLevel=1",
        f"-Dquarkus.transaction-manager.object-store.directory={data / 'transaction-logs'}",
    ]
    if extra := os.environ.get("JAVA_OPTS_APPEND"):
        options.append(extra)
    return " ".join(options)


def ensure_keycloak(
    port: int = 8080,
    management_port: int | None = None,
    host: str = "127.0.0.1",
    *,
    data_dir: Path | None = None,
    gateway_url: str | None = None,
) -> Service:
    """Reuse MRO_KEYCLOAK_URL or a Keycloak serving realm mro on port, else start one there.

    A server on the port that answers HTTP but not yet the realm (another stack starting it)
    is waited for and reused. Without data_dir the database is new; with it, it is kept there
    (see the module's docstring). gateway_url fills the realm's gateway client URLs.

    Raises StackError when the port is taken by something else, no JDK 17+ is found, the
    distribution cannot be fetched, or Keycloak does not serve the realm within two minutes.
    """
    if url := os.environ.get("MRO_KEYCLOAK_URL"):
        return Service(name="keycloak", url=url.rstrip("/"))
    url = f"http://{host}:{port}"
    if serves_realm(url):
        return Service(name="keycloak", url=url)
    if port_open(host, port):
        if _answers_http(url) and _becomes_ready(url, READY_TIMEOUT):
            return Service(name="keycloak", url=url)  # another stack was still starting it
        raise StackError(f"port {port} is taken by something that does not serve realm {REALM}")
    if management_port is None:
        # Keycloak's default 9000 clashes when several stacks start at once on one machine.
        management_port = free_port(host)
    home = distribution()
    java_home = find_java_home()
    gateway_url = (gateway_url or DEFAULT_GATEWAY_URL).rstrip("/")
    stamp = realm_stamp(gateway_url)
    data = _fresh_data_dir(port) if data_dir is None else _kept_data_dir(data_dir, stamp)
    _stage_realm(home)
    _link_themes(home)
    env = {
        **keycloak_env(gateway_url=gateway_url),
        "JAVA_HOME": str(java_home),
        "JAVA_OPTS_APPEND": _java_options(data),
    }
    argv = [
        str(home / "bin" / "kc.sh"),
        "start-dev",
        "--http-host",
        host,
        "--http-port",
        str(port),
        "--http-management-port",
        str(management_port),
        "--health-enabled=true",
        f"--db-url-path={data}",
        "--import-realm",
    ]
    service = start("keycloak", argv, url=url, env=env, cwd=home)
    wait_until(service, lambda: serves_realm(url), timeout=READY_TIMEOUT, interval=0.5)
    (data / REALM_STAMP).write_text(stamp + "\n")
    return service


def admin_token(client: httpx.Client, base_url: str) -> str:
    """A master-realm admin access token (password grant of the master realm's admin-cli)."""
    username, password = admin_login()
    resp = client.post(
        f"{base_url}/realms/master/protocol/openid-connect/token",
        data={
            "grant_type": "password",
            "client_id": "admin-cli",
            "username": username,
            "password": password,
        },
    )
    if resp.status_code != 200:
        raise StackError(f"Keycloak admin login failed ({resp.status_code})")
    return str(resp.json()["access_token"])


def _user_representation(user: dict[str, Any]) -> dict[str, Any]:
    """A dev user as Keycloak imports it: its fixed id (when given), exactly its roles."""
    rep: dict[str, Any] = {
        "username": user["username"],
        "email": user.get("email"),
        "emailVerified": True,
        "firstName": user.get("first_name"),
        "lastName": user.get("last_name"),
        "enabled": True,
        "attributes": {k: [v] for k, v in user.get("attributes", {}).items()},
        "credentials": [{"type": "password", "value": user["password"], "temporary": False}],
        "realmRoles": list(user["roles"]),
    }
    if "id" in user:
        rep["id"] = user["id"]
    return rep


def provision_dev_users(base_url: str) -> list[str]:
    """Create the dev users of dev-users.json with their ids and exactly their roles; skip
    existing ones (same username).

    One partial import: unlike a plain create it keeps the given ids, so a new database gives
    the dev users the ids their conversations are stored under, and it adds no default roles.
    Returns the usernames created. Raises StackError when the admin API refuses.
    """
    base_url = base_url.rstrip("/")
    users = [_user_representation(user) for user in load_dev_credentials()["users"]]
    try:
        with httpx.Client(timeout=30.0) as client:
            client.headers["Authorization"] = f"Bearer {admin_token(client, base_url)}"
            resp = client.post(
                f"{base_url}/admin/realms/{REALM}/partialImport",
                json={"ifResourceExists": "SKIP", "users": users},
            )
    except httpx.HTTPError as exc:
        raise StackError(f"Keycloak admin API failed: {exc}") from exc
    if resp.status_code != 200:
        raise StackError(f"importing the dev users failed: {resp.status_code} {resp.text}")
    return [
        str(result["resourceName"])
        for result in resp.json().get("results", [])
        if result.get("action") == "ADDED"
    ]
