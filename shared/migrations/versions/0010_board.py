"""Board: a NOTIFY on the leadrouter_board channel whenever handoffs, reps or the funnel change.

Postgres delivers a notification only when its transaction commits, so the board's live
feed sees committed changes and nothing else, whichever code path made them.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TABLES = ("handoffs", "reps", "funnel_events")


def upgrade() -> None:
    # Statement-level: one notification per statement, and Postgres folds identical
    # payloads within a transaction, so a 500-row batch costs a handful of notifications.
    op.execute(
        """
        CREATE FUNCTION leadrouter_board_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM pg_notify('leadrouter_board', TG_TABLE_NAME);
          RETURN NULL;
        END $$
        """
    )
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_board_notify AFTER INSERT OR UPDATE OR DELETE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION leadrouter_board_notify()"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_board_notify ON {table}")
    op.execute("DROP FUNCTION IF EXISTS leadrouter_board_notify()")
