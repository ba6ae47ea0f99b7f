"""The contract's language, pure: units, records, EIP-712, codecs, Merkle trees, errors."""
