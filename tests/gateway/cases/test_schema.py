"""The Alembic revision 0002_cases creates exactly the schema gateway/cases/tables.py declares."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway.cases import tables
from gateway.storage import alembic_config, metadata

CASE_TABLES = {
    t.name for t in metadata.sorted_tables if t.name == "cases" or t.name.startswith("case_")
}


def _ours(diff: object) -> bool:
    """True when an autogenerate difference concerns one of the case tables."""
    items = diff if isinstance(diff, list) else [diff]
    for item in items:
        for part in item:
            table = getattr(part, "table", None)
            name = getattr(part, "name", None)
            if getattr(table, "name", None) in CASE_TABLES or name in CASE_TABLES:
                return True
            if isinstance(part, str) and part in CASE_TABLES:
                return True
    return False


def test_migration_matches_the_declared_tables(engine: sa.Engine) -> None:
    assert {"cases", "case_facts"} <= CASE_TABLES and tables.cases.name == "cases"
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = [d for d in compare_metadata(context, metadata) if _ours(d)]
    assert diffs == []
    inspector = sa.inspect(engine)
    assert set(inspector.get_table_names()) >= CASE_TABLES
    uniques = {u["name"] for u in inspector.get_unique_constraints("cases")}
    assert "uq_cases_referrer_org_id" in uniques
    assert {i["name"] for i in inspector.get_indexes("cases")} >= {
        "ix_cases_subject_pseudonym",
        "ix_cases_retain_until",
    }


def test_downgrade_and_upgrade_again(engine: sa.Engine) -> None:
    config = alembic_config(engine)
    command.downgrade(config, "0001_audit_log")
    assert not CASE_TABLES & set(sa.inspect(engine).get_table_names())
    command.upgrade(config, "head")
    assert set(sa.inspect(engine).get_table_names()) >= CASE_TABLES
