"""wattledger deploy package."""
