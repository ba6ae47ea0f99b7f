"""wattledger simulation package."""
