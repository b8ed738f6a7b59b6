"""`persona-runner cleanup`: the catalog's personas leave a served product, and only they do."""

from __future__ import annotations

from pathlib import Path

import httpx2

from tests.cli_helpers import ADMIN, cli, one_line_error, served_product
from tests.foreign_servers import write_catalog


def persona_emails(url: str) -> set[str]:
    answer = httpx2.get(f"{url}/api/v1/admin/personas", headers={"X-Admin-Token": ADMIN}, timeout=10)
    return {persona["email"] for persona in answer.json()["personas"]}


def test_cleanup_deletes_the_catalogs_personas_and_no_one_else(tmp_path: Path) -> None:
    ours = write_catalog(
        tmp_path / "ours.json", [{"name": "ada", "moduleMix": {"todo": 1}}, {"name": "bo", "moduleMix": {"notes": 1}}]
    )
    theirs = write_catalog(tmp_path / "theirs.json", [{"name": "cy", "moduleMix": {"todo": 1}}])
    db = str(tmp_path / "results.db")
    with served_product(tmp_path) as (url, _):
        for catalog in (ours, theirs):
            assert (
                cli("seed", "--target", url, "--admin-token", ADMIN, "--catalog", str(catalog), "--db", db).returncode
                == 0
            )
        flags = ("--target", url, "--admin-token", ADMIN, "--catalog", str(ours))

        dry = cli("cleanup", *flags, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "persona ada: would delete" in dry.stdout and "would delete 2 personas" in dry.stdout
        assert persona_emails(url) == {"ada@personas.test", "bo@personas.test", "cy@personas.test"}

        done = cli("cleanup", *flags)
        assert done.returncode == 0, done.stderr
        assert f"deleted 2 personas from {url}" in done.stdout
        assert persona_emails(url) == {"cy@personas.test"}
        refused = cli("run", "--target", url, "--catalog", str(ours), "--db", db)
        assert refused.returncode == 1 and "login refused for ada@personas.test" in refused.stderr

        again = cli("cleanup", *flags)
        assert again.returncode == 0
        assert "persona ada: no persona account in the product" in again.stdout
        assert "deleted 0 personas" in again.stdout

        unauthorised = cli("cleanup", "--target", url, "--admin-token", "wrong", "--catalog", str(ours))
        assert unauthorised.returncode == 1
        assert "admin" in one_line_error(unauthorised.stderr).lower()
