"""Nobody in where they don't belong: no secret in the repository, secrets of the compose
stack only from the environment/.env, nothing but the UI published beyond the host, and the
UI of scripts/ui.sh behind a login with roles (viewer cannot trigger, operator can).

The last test starts what scripts/ui.sh starts (`airflow standalone` with its settings) in a
temporary AIRFLOW_HOME on a free port and prints its start-up time and memory.
"""
from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import time
from pathlib import Path

import jwt
import pytest
import yaml

from reliability.processes import REPO, Component, free_port, http, ui_settings, wait_until

SELF = Path(__file__).resolve().relative_to(REPO).as_posix()

# what a secret looks like in a file (each pattern is proven by test_scanner_finds_planted_secrets)
SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "credentials in a URL": re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]*:(?!\$\{)[^@\s'\"/]+@"),
    "secret assigned a literal (env/YAML)": re.compile(
        r"(?im)^[\s-]*(?:export\s+)?[\"']?[A-Z0-9_]*(?:PASSWORD|PASSWD|SECRET|FERNET_KEY|API_KEY|TOKEN)"
        r"[A-Z0-9_]*(?<!_FILE)[\"']?\s*[:=]\s*[\"']?(?![$\"'\s])[^\s\"'#\\]{4,}(?=[\s\"']|$)"),
    "secret assigned a literal (airflow.cfg)": re.compile(
        r"(?im)^\s*(?:fernet_key|secret_key|jwt_secret|password|sql_alchemy_conn)\s*=\s*(?![$\s])\S+"),
    "default value for a secret": re.compile(
        r"\$\{[A-Z0-9_]*(?:PASSWORD|SECRET|KEY|TOKEN)[A-Z0-9_]*:?-[^}]+\}"),
    "everyone an admin": re.compile(r"(?i)SIMPLE_AUTH_MANAGER_ALL_ADMINS[\"']?\s*[:=]\s*[\"']?true"),
    "access token": re.compile(r"\b(?:AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}|xox[abposr]-[A-Za-z0-9-]{10,}"
                               r"|eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})"),
}
# in Python a name on the right is code, not a secret: only a string literal assigned counts
PYTHON_LITERAL_SECRET = re.compile(
    r"(?i)[\"']?\w*(?:PASSWORD|PASSWD|SECRET|FERNET_KEY|API_KEY|TOKEN)\w*[\"']?\s*[:=]\s*[\"'](?![$\s])[^\"'\s\\]{4,}[\"']")
FERNET_CANDIDATE = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}=")
FORBIDDEN_PATHS = re.compile(r"(^|/)(\.env(\..*)?|airflow\.cfg|[^/]*\.(db|sqlite|pem|key|generated)|\.airflow/.*)$")


def find_secrets(text: str, python: bool = False) -> list[str]:
    patterns = dict(SECRET_PATTERNS)
    if python:
        patterns["secret assigned a literal (env/YAML)"] = PYTHON_LITERAL_SECRET
    found = [f"{name}: {match.group(0)[:60]}" for name, pattern in patterns.items()
             for match in pattern.finditer(text)]
    for match in FERNET_CANDIDATE.finditer(text):
        if len(base64.urlsafe_b64decode(match.group(0))) == 32:
            found.append(f"Fernet key: {match.group(0)[:8]}…")
    return found


def repository_files() -> list[str]:
    """Files git tracks or would add (not ignored): what a commit can contain."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, check=True).stdout.decode()
    return sorted(path for path in set(out.split("\0")) if path and (REPO / path).is_file())


# ---------------------------------------------------------------- the repository

def test_scanner_finds_planted_secrets():
    planted = {
        "POSTGRES_PASSWORD: airflow": "secret assigned a literal (env/YAML)",
        "  AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS: \"True\"": "everyone an admin",
        "export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True": "everyone an admin",
        "AIRFLOW__API_AUTH__JWT_SECRET: ${VBP_JWT_SECRET:-change-me-vbp-monitor}": "default value for a secret",
        "sql: postgresql+psycopg2://airflow:airflow@postgres:5432/airflow": "credentials in a URL",
        "jwt_secret = 3kJ9xQ0bYw": "secret assigned a literal (airflow.cfg)",
        "secret_key = 3kJ9xQ0bYw==": "secret assigned a literal (airflow.cfg)",
        "-----BEGIN OPENSSH PRIVATE KEY-----": "private key",
        "VBP_API_SECRET_KEY=n-WuA_WpDl8grgrYAeZy9Pz": "secret assigned a literal (env/YAML)",
        "token = 'ghp_" + "a" * 36 + "'": "access token",
    }
    for line, kind in planted.items():
        assert any(hit.startswith(kind) for hit in find_secrets(line)), (line, find_secrets(line))
    assert find_secrets('PASSWORD = "airflow"', python=True)
    assert find_secrets('env = {"VBP_JWT_SECRET": "3kJ9xQ0bYwZZ"}', python=True)
    assert not find_secrets('"AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex * 3,', python=True)
    assert not find_secrets('NULL_TOKEN = "\\u2205"', python=True)
    fernet = base64.urlsafe_b64encode(os.urandom(32)).decode()
    assert any(hit.startswith("Fernet key") for hit in find_secrets(f"key: {fernet}"))
    # references to the environment are not secrets
    for line in ("AIRFLOW__API_AUTH__JWT_SECRET: ${VBP_JWT_SECRET:?run scripts/make_secrets.sh}",
                 'export AIRFLOW__CORE__FERNET_KEY="$VBP_FERNET_KEY"',
                 "url: postgresql+psycopg2://airflow:${VBP_POSTGRES_PASSWORD:?x}@postgres:5432/vbp",
                 "PG_ADMIN_URL = 'postgresql+psycopg2://postgres@127.0.0.1:5432/postgres'",
                 "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE: /opt/airflow/auth/passwords.json"):
        assert find_secrets(line) == [], line


def test_no_secret_in_the_repository():
    files = repository_files()
    assert "docker-compose.yml" in files and "scripts/ui.sh" in files
    assert not [path for path in files if FORBIDDEN_PATHS.search(path)]
    findings = []
    for path in files:
        if path == SELF:
            continue
        text = (REPO / path).read_bytes().decode("utf-8", errors="replace")
        findings += [f"{path}: {hit}" for hit in find_secrets(text, python=path.endswith(".py"))]
    assert findings == []


def test_secret_files_and_airflow_home_are_ignored_by_git():
    probes = [".env", ".airflow/airflow.cfg", ".airflow/airflow.db",
              ".airflow/simple_auth_manager_passwords.json.generated", "data/warehouse.db"]
    out = subprocess.run(["git", "check-ignore", *probes], cwd=REPO, capture_output=True, text=True)
    assert sorted(out.stdout.split()) == sorted(probes)


def test_make_secrets_writes_a_private_env_once(tmp_path):
    target = tmp_path / ".env"
    subprocess.run(["bash", "scripts/make_secrets.sh", str(target)], cwd=REPO, check=True, capture_output=True)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    values = dict(line.split("=", 1) for line in target.read_text().splitlines() if line and line[0] != "#")
    assert set(values) == {"VBP_FERNET_KEY", "VBP_JWT_SECRET", "VBP_API_SECRET_KEY", "VBP_POSTGRES_PASSWORD",
                           "VBP_REDIS_PASSWORD"}
    from cryptography.fernet import Fernet

    Fernet(values["VBP_FERNET_KEY"].encode())  # a valid key
    assert len(values["VBP_JWT_SECRET"]) >= 64
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{24,}={0,2}", value) for value in values.values())
    # a second run keeps the existing secrets; another installation gets others
    before = target.read_text()
    subprocess.run(["bash", "scripts/make_secrets.sh", str(target)], cwd=REPO, check=True, capture_output=True)
    assert target.read_text() == before
    other = tmp_path / "other.env"
    subprocess.run(["bash", "scripts/make_secrets.sh", str(other)], cwd=REPO, check=True, capture_output=True)
    assert set(other.read_text().splitlines()[2:]).isdisjoint(before.splitlines()[2:])


# ---------------------------------------------------------------- the compose stack

def _compose():
    return yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))


SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|_KEY$|TOKEN|SQL_ALCHEMY_CONN|BROKER_URL|RESULT_BACKEND|_URL$")


def test_compose_takes_every_secret_from_the_environment():
    services = _compose()["services"]
    checked = 0
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if not SECRET_NAME.search(key) or key.endswith("_FILE") or key == "AIRFLOW__CORE__EXECUTION_API_SERVER_URL":
                continue
            value = str(value)
            if "://" in value and "@" not in value:
                continue  # a URL without credentials
            assert re.search(r"\$\{VBP_[A-Z_]+:\?[^}]*\}", value), f"{name}: {key} is not required from the environment"
            assert not re.search(r"\$\{[A-Z_]+:-", value.split("@")[0]), f"{name}: {key} has a default secret"
            checked += 1
    assert checked >= 12  # jwt, api key, fernet, database, broker, result backend, warehouse… in each service


def test_compose_requires_a_login_with_roles():
    services = _compose()["services"]
    for name, service in services.items():
        env = service.get("environment") or {}
        assert not any("ALL_ADMINS" in key for key in env), name
        if name.startswith("airflow"):
            assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")
            users = env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]
            roles = dict(user.split(":")[:2] for user in re.sub(r"^\$\{[A-Z_]+:-(.*)\}$", r"\1", users).split(","))
            assert roles == {"admin": "admin", "operator": "user", "viewer": "viewer"}


def _published(port: str | dict) -> tuple[str, str]:
    """(host address, container port) of a compose port entry; '' for every address."""
    if isinstance(port, dict):
        return port.get("host_ip", ""), str(port["target"])
    parts = re.split(r":(?![^{]*\})", str(port))  # colons outside ${…}
    host = parts[0] if len(parts) == 3 else ""
    return host, parts[-1]


def test_compose_publishes_only_the_ui_beyond_the_host():
    services = _compose()["services"]
    beyond = []
    for name, service in services.items():
        for port in service.get("ports", []):
            host, container_port = _published(port)
            if host not in ("127.0.0.1", "${VBP_PUBLISH_HOST:-127.0.0.1}"):
                beyond.append((name, host or "0.0.0.0", container_port))
    assert beyond == [("airflow-api-server", "0.0.0.0", "8080")]
    assert services["redis"]["command"][-1].count("--requirepass") == 1
    assert "5432" in str(services["postgres"]["ports"])  # reachable from this host (backups, psql)


def test_ui_sh_requires_a_login():
    text = (REPO / "scripts" / "ui.sh").read_text()
    assert "SIMPLE_AUTH_MANAGER_ALL_ADMINS=False" in text
    assert "make_secrets.sh" in text


# ---------------------------------------------------------------- the running UI

def _token(base: str, username: str, password: str) -> str | None:
    status, body, _ = http("POST", f"{base}/auth/token", json_body={"username": username, "password": password})
    return body.get("access_token") if status == 201 and isinstance(body, dict) else None


@pytest.mark.e2e
def test_ui_sh_requires_login_and_roles(tmp_path):
    port = free_port()
    home = tmp_path / "airflow_home"
    env = ui_settings(home, tmp_path / ".env", port, VBP_WAREHOUSE_URL=f"sqlite:///{tmp_path / 'wh.db'}",
                      VBP_LANDING_DIR=str(tmp_path / "landing"), VBP_OUTPUT_DIR=str(tmp_path / "output"))
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    ui = Component("standalone", ["standalone"], env, tmp_path)
    try:
        wait_until(lambda: http("GET", f"{base}/api/v2/monitor/health")[0] == 200, 300, "the api-server", watch=[ui])
        api_ready = time.monotonic() - started
        health = wait_until(lambda: _all_healthy(base), 300, "scheduler, dag-processor and triggerer", watch=[ui])
        all_ready = time.monotonic() - started
        rss, pss = ui.memory()
        print(f"\nscripts/ui.sh (airflow standalone, SQLite): api-server answers after {api_ready:.1f} s, "
              f"all components healthy after {all_ready:.1f} s; memory of the process group "
              f"RSS {rss / 2**20:.0f} MiB, PSS {pss / 2**20:.0f} MiB")
        assert set(health) >= {"scheduler", "dag_processor", "triggerer"}

        # without credentials: no API, no token, the UI sends to the login page
        for path in ("/api/v2/dags", "/api/v2/connections", "/api/v2/variables", "/api/v2/config"):
            assert http("GET", base + path)[0] in (401, 403), path
        assert http("POST", f"{base}/api/v2/dags/vbp_ingest/dagRuns", json_body={"logical_date": None})[0] in (401, 403)
        status, body, _ = http("GET", f"{base}/auth/token")  # the all-admins door is shut
        assert status == 403 and "access_token" not in str(body)
        assert _token(base, "admin", "admin") is None and _token(base, "viewer", "") is None
        assert http("POST", f"{base}/auth/token", json_body={"username": "admin", "password": "wrong"})[0] == 401
        status, _, headers = http("GET", f"{base}/api/v2/auth/login", follow=False)
        assert status in (302, 303, 307) and "/auth/login" in headers["location"]
        forged = jwt.encode({"sub": "admin", "role": "ADMIN", "aud": "apache-airflow", "exp": time.time() + 600},
                            "not-the-secret-" * 5, algorithm="HS512")
        assert http("GET", f"{base}/api/v2/dags", token=forged)[0] in (401, 403)  # not accepted as admin

        # the generated passwords: one per named user, readable by the owner only
        password_file = home / "simple_auth_manager_passwords.json.generated"
        passwords = json.loads(password_file.read_text())
        assert set(passwords) == {"admin", "operator", "viewer"}
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        tokens = {user: _token(base, user, password) for user, password in passwords.items()}
        assert all(tokens.values())

        # the DAG shows once the dag-processor parsed it
        wait_until(lambda: http("GET", f"{base}/api/v2/dags/vbp_ingest", token=tokens["viewer"])[0] == 200, 240,
                   "vbp_ingest parsed", watch=[ui])
        trigger = f"{base}/api/v2/dags/vbp_ingest/dagRuns"
        assert http("POST", trigger, token=tokens["viewer"], json_body={"logical_date": None})[0] == 403
        assert http("GET", f"{base}/api/v2/connections", token=tokens["viewer"])[0] == 403
        backfill = {"dag_id": "vbp_ingest", "from_date": "2025-03-01T00:00:00Z", "to_date": "2025-03-02T00:00:00Z",
                    "reprocess_behavior": "none"}
        assert http("POST", f"{base}/api/v2/backfills/dry_run", token=tokens["viewer"], json_body=backfill)[0] == 403
        status, run, _ = http("POST", trigger, token=tokens["operator"], json_body={"logical_date": None})
        assert status == 200 and run["dag_id"] == "vbp_ingest", run
        assert http("POST", f"{base}/api/v2/backfills/dry_run", token=tokens["operator"], json_body=backfill)[0] == 200
        # connections and variables (SMTP credentials) only for the admin
        assert http("GET", f"{base}/api/v2/connections", token=tokens["operator"])[0] == 403
        assert http("GET", f"{base}/api/v2/connections", token=tokens["admin"])[0] == 200
        assert ui.alive
    finally:
        ui.stop()


def _all_healthy(base: str) -> dict | None:
    status, body, _ = http("GET", f"{base}/api/v2/monitor/health")
    if status != 200 or not isinstance(body, dict):
        return None
    components = {name: value for name, value in body.items() if isinstance(value, dict)}
    wanted = ("scheduler", "dag_processor", "triggerer")
    if all(components.get(name, {}).get("status") == "healthy" for name in wanted):
        return components
    return None
