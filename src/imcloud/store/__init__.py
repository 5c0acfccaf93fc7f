"""Storage: tables, the database handle, migrations. SQL lives here and in services."""
