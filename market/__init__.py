"""wattledger market package."""
