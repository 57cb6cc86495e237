"""OTLP/HTTP logs receiver: decoding protobuf/JSON bodies and mapping log records onto wire entries."""
