"""The help desk behind the `ticket_desk` agent: its tables (`tables`), their Alembic
migrations (`migrations`, own version table), the database (`db`), the deterministic sample
data linked to the shop's orders (`sample`) and the reads and writes the tools make
(`store`)."""
