"""The OgLogStream reference stack: ingestion, processing, query, live tail (`oglogstream[stack]`)."""
