"""Running the stack: the `oglog` server commands, the single-node supervisor, ingest workers, the demo."""
