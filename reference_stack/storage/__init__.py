"""ClickHouse storage (chDB or a server): the `logs` table, its client and its versioned migrations."""
