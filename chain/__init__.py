"""Every byte to or from a node: connection, contract client, events, artifacts."""
