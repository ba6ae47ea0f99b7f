"""Local testnet simulation: agents, scenarios, the driver, and the run report."""
