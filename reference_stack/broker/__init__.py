"""NATS JetStream: the connection and streams, the message format between roles, the bundled nats-server."""
