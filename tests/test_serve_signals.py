"""`wattledger serve` shuts down cleanly on SIGTERM and on Ctrl-C (SIGINT).

A real anvil node and a real `wattledger serve` process (with its settlement service): after
the signal the process stops the settlement service, closes the order store and exits 0,
instead of being ended by the signal uvicorn re-raises after its own shutdown (exit -15).
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from test_serve_crash import start_serve, wait_healthy

from chain.anvil import free_port, running_anvil


@pytest.mark.anvil
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_settlement_closes_store_and_exits_0_on_signal(
    tmp_path: Path, sig: signal.Signals
) -> None:
    with running_anvil() as rpc_url:
        port = free_port()
        server = start_serve(rpc_url, tmp_path, port)
        try:
            wait_healthy(f"http://127.0.0.1:{port}", server)
            server.send_signal(sig)
            try:
                code = server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail(f"wattledger serve still running 60 s after {sig.name}")
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    log = b"".join(p.read_bytes() for p in tmp_path.glob("serve-*.log")).decode()
    assert code == 0, log
    assert server.poll() == 0  # the process is gone, reaped with exit status 0
    assert "settlement service:" in log  # it was running ...
    assert "stopped: settlement service stopped, order store closed" in log  # ... and stopped
