"""docker-compose.yml is for users (no Docker engine here): check it statically."""
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _compose():
    return yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))


def test_stack_has_the_services_users_need():
    services = _compose()["services"]
    assert {"postgres", "mailpit", "airflow-init", "airflow-api-server", "airflow-scheduler",
            "airflow-dag-processor", "airflow-triggerer"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:16")
    init = " ".join(services["airflow-init"]["command"])
    assert "db migrate" in init and "smtp_default" in init and "upgrade_schema" in init
    for name, service in services.items():
        if name.startswith("airflow"):
            env = service["environment"]
            assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
            assert env["VBP_WAREHOUSE_URL"].startswith("postgresql+psycopg2://")
            mounts = {v.split(":")[1] for v in service["volumes"]}
            assert {"/opt/vbp/dags", "/opt/vbp/plugins", "/opt/vbp/include"} <= mounts


def test_every_file_the_stack_references_exists():
    compose = _compose()
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            assert (REPO / build["context"]).is_dir(), name
            assert (REPO / build["context"] / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                path = REPO / source
                assert path.exists() or source == "./data", f"{name}: {source} missing"
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    for copied in ("pyproject.toml", "uv.lock"):
        assert copied in dockerfile and (REPO / copied).is_file()
