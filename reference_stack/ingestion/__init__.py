"""Ingestion role: validate entries (`POST /log`, `POST /logs`, OTLP `POST /v1/logs`) against the wire
schema and publish them to JetStream."""
