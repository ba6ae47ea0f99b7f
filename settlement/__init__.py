"""wattledger settlement package."""
