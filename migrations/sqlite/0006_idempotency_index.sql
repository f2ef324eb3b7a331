-- PostgreSQL only (see the migration of the same name there): SQLite's planner always takes
-- the primary key for `WHERE id = ?1 AND ...`, and changing a table constraint would mean
-- rebuilding the table. Kept so both engines list the same migrations.
SELECT 1;
