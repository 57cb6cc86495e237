"""The OgLogStream reference stack: ingestion, processing, query and live tail (install `oglogstream[stack]`)."""
