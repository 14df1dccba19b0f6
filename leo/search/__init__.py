"""Points that decide questions without proofs: witnesses, attacks, region walks."""
