"""Orders and the clearing engine (pure), order intake and gate closure, the order store,
the ledger port, and the HTTP API (``market/http``)."""
